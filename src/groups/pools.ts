import type { RedisClient as Redis } from "../infra/redis.js";
import type { PoolMember, ResolvedLink } from "../config/links.js";
import { channelKeys } from "../core/keys.js";

/**
 * A join link's pool: its groups and the state each is in for a visitor. The gateway judges a
 * group at each visit (`gateway/link-store.ts`, with what its memory holds); `status` and the
 * participant poll read the same facts straight from Redis. Both classify with `poolState`.
 */

/** A pool group's state: has room, full (participants ≥ capacity), mid-rotation, or no link. */
export type PoolState = "room" | "full" | "rotating" | "no-link";

/** What decides a group's state. */
export interface PoolFacts {
  readonly link: string | undefined;
  readonly rotating: boolean;
  readonly participants: number;
}

export function poolState(facts: PoolFacts, capacity: number): PoolState {
  if (facts.rotating) return "rotating";
  if (facts.link === undefined) return "no-link";
  return facts.participants >= capacity ? "full" : "room";
}

/** Zero of every state. */
export function emptyPoolCounts(): Record<PoolState, number> {
  return { room: 0, full: 0, rotating: 0, "no-link": 0 };
}

/**
 * The pool of `link`: its listed groups, or for `policy: <name>` of a `groups: all` policy every
 * group that policy has published on its channel (read from C:latest), sorted.
 */
export async function readPoolMembers(redis: Redis, link: ResolvedLink): Promise<PoolMember[]> {
  if (link.members.length > 0 || link.policy === undefined || link.policyChannel === undefined)
    return [...link.members];
  const channel = link.policyChannel;
  const latest = await redis.hgetall(channelKeys(channel).latest);
  const ids: string[] = [];
  for (const [groupId, raw] of Object.entries(latest)) {
    if (policyOf(raw) === link.policy) ids.push(groupId);
  }
  return ids.sort().map((groupId) => ({ groupId, channel }));
}

/** A stored count as a whole number ≥ 0 (absent or unreadable: 0). */
export function participantCount(raw: string | null | undefined): number {
  const n = Number(raw ?? 0);
  return Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

function policyOf(raw: string): unknown {
  try {
    return (JSON.parse(raw) as { policy?: unknown }).policy;
  } catch {
    return undefined;
  }
}
