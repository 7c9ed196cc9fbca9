/**
 * Tolerant readers of Graph's success bodies. Each returns the value, or a string saying what is
 * wrong (the client turns that into GRAPH_BAD_RESPONSE). The v23.0 reference page shows mangled
 * samples (`"success": "\"true\""`, `"invite_link": "\"https:\\/\\/chat.whatsapp.com\\/ID\""`);
 * real responses may carry `true` or `"true"`: all of these are accepted, anything else is not.
 */

import { isGroupId } from "../core/group-id.js";
import { INVITE_LINK_FORM, isInviteLink } from "../core/invite-link.js";

/** A group as the list and info calls return it. */
export interface GraphGroup {
  id: string;
  subject?: string;
}

/** One page of `GET /{version}/{phone_number_id}/groups`. */
export interface GroupsPage {
  groups: GraphGroup[];
  /** The cursor of the next page; undefined on the last page. */
  after?: string;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const bad = <T>(problem: string): Parsed<T> => ({ ok: false, problem });

/** Strips the stray quotes and `\/` escapes of the reference page's samples. */
function unmangle(text: string): string {
  let out = text.trim();
  for (let i = 0; i < 3; i++) {
    out = out.replace(/\\+\//g, "/").replace(/\\+"/g, '"');
    if (out.length >= 2 && out.startsWith('"') && out.endsWith('"')) out = out.slice(1, -1).trim();
    else break;
  }
  return out;
}

function field(body: unknown, name: string): unknown {
  return body !== null && typeof body === "object" ? (body as Record<string, unknown>)[name] : undefined;
}

/** DELETE …/invite_link: `success` must be true (boolean, "true", or the mangled "\"true\""). */
export function parseDeleteResponse(body: unknown): Parsed<void> {
  const success = field(body, "success");
  if (success === true) return ok(undefined);
  if (typeof success === "string" && unmangle(success).toLowerCase() === "true") return ok(undefined);
  return bad(success === undefined ? "no success field" : `success is ${JSON.stringify(success)}`);
}

/**
 * POST/GET …/invite_link: `invite_link` must be of the contract's form (core/invite-link.ts). The
 * problem names the form and the length only: the text itself may be huge or carry anything.
 */
export function parseInviteLinkResponse(body: unknown): Parsed<string> {
  const raw = field(body, "invite_link");
  if (typeof raw !== "string")
    return bad(raw === undefined ? "no invite_link field" : "invite_link is not a string");
  // Only a short text is worth unmangling; a long one is garbled whatever its quotes.
  const link = raw.length <= 200 ? unmangle(raw) : raw;
  if (!isInviteLink(link)) {
    return bad(`invite_link (${raw.length} characters) is not ${INVITE_LINK_FORM}`);
  }
  return ok(link);
}

/**
 * GET …/invite_link: the group's current link, or undefined when Graph answers with an object that
 * has none (the link was deleted). A link that is there must look right, as for POST.
 */
export function parseCurrentLinkResponse(body: unknown): Parsed<string | undefined> {
  if (
    body !== null &&
    typeof body === "object" &&
    !Array.isArray(body) &&
    field(body, "invite_link") === undefined
  ) {
    return ok(undefined);
  }
  return parseInviteLinkResponse(body);
}

function groupOf(value: unknown): GraphGroup | undefined {
  const id = field(value, "id");
  if (typeof id !== "string" && typeof id !== "number") return undefined;
  if (!isGroupId(String(id))) return undefined;
  const subject = field(value, "subject");
  return typeof subject === "string" ? { id: String(id), subject } : { id: String(id) };
}

/** GET /{version}/{group_id}?fields=subject */
export function parseGroupResponse(body: unknown): Parsed<GraphGroup> {
  const group = groupOf(body);
  return group ? ok(group) : bad("no group id");
}

/**
 * GET /{version}/{group_id}?fields=total_participant_count: the group's participant count, a
 * whole number ≥ 0 (a numeric string is accepted, as Graph sometimes quotes numbers).
 */
export function parseParticipantCount(body: unknown): Parsed<number> {
  const raw = field(body, "total_participant_count");
  const n = typeof raw === "string" && /^\d+$/.test(raw.trim()) ? Number(raw) : raw;
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0
    ? ok(n)
    : bad("no total_participant_count");
}

/**
 * GET /{version}/{phone_number_id}/groups: `{data:{groups:[…]}, paging:{cursors:{after}, next}}`.
 * Also accepts the classic Graph shape `{data:[…]}`. A next page exists only when `paging.next`
 * is present (Graph's rule); its cursor is `paging.cursors.after` or the `after` of `next`.
 */
export function parseGroupsPage(body: unknown): Parsed<GroupsPage> {
  const data = field(body, "data");
  const list = Array.isArray(data) ? data : field(data, "groups");
  if (!Array.isArray(list)) return bad("no data.groups array");
  const groups: GraphGroup[] = [];
  for (const item of list) {
    const group = groupOf(item);
    if (!group) return bad("a group without an id, or with one that breaks the group-id rule");
    groups.push(group);
  }
  const paging = field(body, "paging");
  const next = field(paging, "next");
  if (typeof next !== "string" || next === "") return ok({ groups });
  const after = field(field(paging, "cursors"), "after") ?? afterOfUrl(next);
  if (typeof after !== "string" || after === "") return bad("paging.next without an after cursor");
  return ok({ groups, after });
}

function afterOfUrl(url: string): string | undefined {
  try {
    return new URL(url).searchParams.get("after") ?? undefined;
  } catch {
    return undefined;
  }
}
