import type { ConfigIssue } from "../core/errors.js";
import { DEFAULT_CHANNEL } from "../core/keys.js";
import { checkGroupId, type AddIssue } from "./checks.js";
import type { RawLink } from "./policy-file.js";

/**
 * The `links:` section: stable join URLs over pools of groups (served by the `gateway` command).
 * The schema checks each field; this checks what spans fields and policies (unique slugs, one of
 * `groups` / `policy`, known policies) and resolves each link's pool and channel.
 */

/** Participants per group before it counts as full: the Cloud API maximum. */
export const DEFAULT_CAPACITY = 8;

/** One group of a pool and the channel its links are published on. */
export interface PoolMember {
  readonly groupId: string;
  readonly channel: string;
}

/** A join link with every default applied. */
export interface ResolvedLink {
  readonly slug: string;
  /**
   * The pool's groups, each with its channel. For `policy: <name>` of a `groups: all` policy the
   * list is empty and `policy` names it: the pool is every group that policy has published.
   */
  readonly members: readonly PoolMember[];
  /** Set for `policy: <name>` links. */
  readonly policy?: string | undefined;
  /** The channel of `policy` (for a `groups: all` policy, where the pool is found). */
  readonly policyChannel?: string | undefined;
  readonly capacity: number;
  readonly signed: boolean;
  /** How often the worker reads `total_participant_count` of each pool group; 0 = never. */
  readonly participantsPollMs: number;
}

interface PolicyView {
  readonly name: string;
  readonly channel: string;
  readonly groups: readonly string[] | "all";
}

type Raw = Record<string, unknown>;

/** Cross-field checks of the raw `links` list; reports through `add` like the policy checks. */
export function checkLinks(document: Raw, add: AddIssue): void {
  const links = document["links"];
  if (!Array.isArray(links)) return;
  const policies = Array.isArray(document["policies"]) ? (document["policies"] as unknown[]) : [];
  const policyNames = new Set(
    policies.flatMap((p) => (isRecord(p) && typeof p["name"] === "string" ? [p["name"]] : [])),
  );
  const slugs = new Map<string, number>();
  links.forEach((link, i) => {
    if (!isRecord(link)) return;
    const slug = link["slug"];
    if (typeof slug === "string") {
      const first = slugs.get(slug);
      if (first === undefined) slugs.set(slug, i);
      else add(["links", i, "slug"], `duplicate slug "${slug}" (also links[${first}].slug)`);
    }
    const hasGroups = link["groups"] !== undefined;
    const policy = link["policy"];
    if (hasGroups === (policy !== undefined)) {
      add(["links", i], "name the pool with either groups (a list of group ids) or policy (a policy name)");
    }
    if (typeof policy === "string" && policy !== "" && !policyNames.has(policy)) {
      add(["links", i, "policy"], `unknown policy "${policy}"`);
    }
    const groups = link["groups"];
    if (!Array.isArray(groups)) return;
    const seen = new Map<string, number>();
    groups.forEach((item, j) => {
      const id = checkGroupId(item);
      if (typeof id !== "string") return add(["links", i, "groups", j], id.error);
      const other = seen.get(id);
      if (other !== undefined)
        add(["links", i, "groups", j], `group ${id} is listed twice (also groups[${other}])`);
      else seen.set(id, j);
    });
  });
}

/**
 * Resolves the (checked) links. A listed group takes its policy's channel; a group in no listed
 * policy the default channel, with a warning (it rotates only by `rotate` or a `groups: all` policy).
 */
export function resolveLinks(
  links: readonly RawLink[],
  policies: readonly PolicyView[],
  policyByGroup: ReadonlyMap<string, PolicyView>,
  warnings: string[],
): ResolvedLink[] {
  const hasAll = policies.some((p) => p.groups === "all");
  return links.map((raw) => {
    const base = {
      slug: raw.slug,
      capacity: raw.capacity ?? DEFAULT_CAPACITY,
      signed: raw.signed ?? false,
      participantsPollMs: raw.participants_poll ?? 0,
    };
    if (raw.policy !== undefined) {
      const policy = policies.find((p) => p.name === raw.policy)!;
      const members =
        policy.groups === "all" ? [] : policy.groups.map((groupId) => ({ groupId, channel: policy.channel }));
      return Object.freeze({
        ...base,
        members: Object.freeze(members),
        policy: policy.name,
        policyChannel: policy.channel,
      });
    }
    const members = (raw.groups ?? []).map((item) => {
      const groupId = checkGroupId(item) as string;
      const policy = policyByGroup.get(groupId);
      if (!policy && !hasAll) {
        warnings.push(`link ${raw.slug}: group ${groupId} is in no policy, so it rotates only by rotate`);
      }
      return { groupId, channel: policy?.channel ?? DEFAULT_CHANNEL };
    });
    return Object.freeze({ ...base, members: Object.freeze(members) });
  });
}

/**
 * Links with `signed: true` while ROTATOR_LINK_SECRET is unset: one issue each, at its `signed`
 * path. Such a link admits no visit at all (every URL is 403), so the `gateway` refuses to start
 * with one (exit 2) and a reload that brings one in is rejected; `validate` reports it as it
 * reports a missing token.
 */
export function unsignableLinks(
  links: readonly ResolvedLink[],
  linkSecret: string | undefined,
): ConfigIssue[] {
  if (linkSecret !== undefined) return [];
  return links.flatMap((link, index) =>
    link.signed
      ? [
          {
            path: `links[${index}].signed`,
            message:
              `link ${link.slug} is signed, but ROTATOR_LINK_SECRET is not set: it would answer 403 to ` +
              "every visit (set it to the value `link` signs with)",
          },
        ]
      : [],
  );
}

function isRecord(value: unknown): value is Raw {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
