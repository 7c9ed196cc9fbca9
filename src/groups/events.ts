import { isGroupId } from "../core/group-id.js";

/**
 * What a WhatsApp webhook delivery says about groups, read from Meta's payload: `entry[].changes[]`
 * with `field` `group_participants_update` (also spelled `group_participant_update` in Meta's
 * OpenAPI spec), `group_status_update` or `group_lifecycle_update`, each with `value.groups[]`.
 * Everything else (messages, settings, join requests, failed operations) is ignored, not refused.
 *
 * Participants are keyed on `user_id` (the business-scoped user id of 2026) when present, else on
 * `wa_id`, else on `input` (what a business removal names).
 */
export type GroupEvent =
  | {
      readonly kind: "joined";
      readonly groupId: string;
      /** When WhatsApp says it happened, epoch ms (second precision). */
      readonly at: number;
      readonly members: readonly string[];
      /** `reason: invite_link`: joined through the group's invite link. */
      readonly viaInviteLink: boolean;
    }
  | {
      readonly kind: "left";
      readonly groupId: string;
      readonly at: number;
      readonly members: readonly string[];
    }
  | { readonly kind: "suspended"; readonly groupId: string; readonly at: number }
  | { readonly kind: "suspension_cleared"; readonly groupId: string; readonly at: number }
  | { readonly kind: "deleted"; readonly groupId: string; readonly at: number };

export interface ReadDelivery {
  readonly events: GroupEvent[];
  /** Changes or group entries this project does not act on (other fields, other types, failures). */
  readonly ignored: number;
  /** Group entries that name no usable group id or participant. */
  readonly invalid: number;
}

const PARTICIPANT_FIELDS = new Set(["group_participants_update", "group_participant_update"]);
const GROUP_FIELDS = new Set([...PARTICIPANT_FIELDS, "group_status_update", "group_lifecycle_update"]);

/**
 * Reads a delivery's body (already verified and known to be a JSON object with `entry`). `receivedAt`
 * stands in for an entry's missing or unreadable timestamp.
 */
export function readDelivery(body: unknown, receivedAt: number): ReadDelivery {
  const events: GroupEvent[] = [];
  let ignored = 0;
  let invalid = 0;
  for (const entry of list((body as { entry?: unknown } | null)?.entry)) {
    for (const change of list((entry as { changes?: unknown } | null)?.changes)) {
      const { field, value } = (change ?? {}) as { field?: unknown; value?: unknown };
      if (typeof field !== "string" || !GROUP_FIELDS.has(field)) {
        ignored++;
        continue;
      }
      for (const item of list((value as { groups?: unknown } | null)?.groups)) {
        const read = readGroupItem(PARTICIPANT_FIELDS.has(field) ? "participants" : field, item, receivedAt);
        if (read === "ignored") ignored++;
        else if (read === "invalid") invalid++;
        else events.push(read);
      }
    }
  }
  return { events, ignored, invalid };
}

function readGroupItem(field: string, raw: unknown, receivedAt: number): GroupEvent | "ignored" | "invalid" {
  if (typeof raw !== "object" || raw === null) return "invalid";
  const item = raw as Record<string, unknown>;
  const groupId = item.group_id;
  if (!isGroupId(groupId)) return "invalid";
  // A failed operation (a delete that did not happen) changes nothing.
  if (Array.isArray(item.errors) && item.errors.length > 0 && item.type !== "group_participants_remove") {
    return "ignored";
  }
  const at = timestampMs(item.timestamp) ?? receivedAt;
  switch (`${field}/${String(item.type)}`) {
    case "participants/group_participants_add": {
      const members = memberIds(item.added_participants);
      if (members.length === 0) return "invalid";
      return { kind: "joined", groupId, at, members, viaInviteLink: item.reason === "invite_link" };
    }
    case "participants/group_participants_remove": {
      const members = memberIds(item.removed_participants);
      // A removal that failed for everyone names only failed_participants: nothing changed.
      if (members.length === 0) return Array.isArray(item.removed_participants) ? "invalid" : "ignored";
      return { kind: "left", groupId, at, members };
    }
    case "group_status_update/group_suspend":
      return { kind: "suspended", groupId, at };
    case "group_status_update/group_suspend_cleared":
      return { kind: "suspension_cleared", groupId, at };
    case "group_lifecycle_update/group_delete":
      return { kind: "deleted", groupId, at };
    default:
      return "ignored";
  }
}

/** A participant's key: `user_id` when present, else `wa_id`, else `input`. */
function memberIds(value: unknown): string[] {
  const ids: string[] = [];
  for (const raw of list(value)) {
    const p = (raw ?? {}) as Record<string, unknown>;
    const id = [p.user_id, p.wa_id, p.input].find(
      (v): v is string => typeof v === "string" && v.trim() !== "",
    );
    if (id !== undefined && id.length <= 256) ids.push(id.trim());
  }
  return ids;
}

/** Meta sends seconds, as a string or a number. */
function timestampMs(value: unknown): number | undefined {
  const n =
    typeof value === "number"
      ? value
      : typeof value === "string" && /^\d{1,12}$/.test(value)
        ? Number(value)
        : NaN;
  return Number.isSafeInteger(n) && n > 0 ? n * 1000 : undefined;
}

function list(value: unknown): readonly unknown[] {
  return Array.isArray(value) ? value : [];
}
