import type { RedisClient as Redis } from "../infra/redis.js";
import type { PoolMember, ResolvedLink } from "../config/links.js";
import { isInviteLink } from "../core/invite-link.js";
import { channelKeys, type Keys } from "../core/keys.js";

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
 * group that policy has published on its channel (read from C:latest), sorted. A group whose newest
 * message is a manual rotation's (`policy: null`) counts when the policy's last fire listed it.
 */
export async function readPoolMembers(redis: Redis, keys: Keys, link: ResolvedLink): Promise<PoolMember[]> {
  if (link.members.length > 0 || link.policy === undefined || link.policyChannel === undefined)
    return [...link.members];
  const channel = link.policyChannel;
  const [latest, listed] = await Promise.all([
    redis.hgetall(channelKeys(channel).latest),
    redis.smembers(keys.policyGroups(link.policy)),
  ]);
  const fired = new Set(listed);
  const ids: string[] = [];
  for (const [groupId, raw] of Object.entries(latest)) {
    const policy = policyOf(raw);
    if (policy === link.policy || (policy === null && fired.has(groupId))) ids.push(groupId);
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

/** One pool group as `status` shows it. */
export interface PoolGroupStatus {
  readonly group_id: string;
  readonly state: PoolState;
  readonly participants: number;
}

/** One join link's pool as `status` shows it. */
export interface PoolStatus {
  readonly slug: string;
  readonly capacity: number;
  readonly signed: boolean;
  readonly groups: readonly PoolGroupStatus[];
  /** Groups per state; `room` is how many a visitor may be sent to now. */
  readonly counts: Readonly<Record<PoolState, number>>;
}

/**
 * Every link's pool as Redis holds it now, judged as the gateway judges a visit: a group whose
 * rotation lock is held or that is in the without-link set is `rotating`; one WhatsApp suspended or
 * deleted, or without a published link, is `no-link`; else `full` at `capacity` participants, or
 * `room`. The project's keys in one pipeline and each channel's C:latest apart (a Cluster keeps
 * them in different slots).
 */
export async function readPoolStatuses(
  redis: Redis,
  keys: Keys,
  links: readonly ResolvedLink[],
): Promise<PoolStatus[]> {
  const pools: PoolStatus[] = [];
  for (const link of links) {
    const members = await readPoolMembers(redis, keys, link);
    const counts = emptyPoolCounts();
    if (members.length === 0) {
      pools.push({ slug: link.slug, capacity: link.capacity, signed: link.signed, groups: [], counts });
      continue;
    }
    const ids = members.map((m) => m.groupId);
    const pipeline = redis.pipeline();
    for (const id of ids) pipeline.exists(keys.groupLock(id));
    pipeline.smismember(keys.withoutLinkIndex, ...ids);
    pipeline.hmget(keys.groupParticipants, ...ids);
    pipeline.smismember(keys.groupsUnavailable, ...ids);
    const channels = [...new Set(members.map((m) => m.channel))];
    const [results, ...perChannel] = await Promise.all([
      pipeline.exec(),
      ...channels.map((channel) =>
        redis.hmget(
          channelKeys(channel).latest,
          ...members.filter((m) => m.channel === channel).map((m) => m.groupId),
        ),
      ),
    ]);
    for (const [error] of results ?? []) if (error) throw error;
    const values = (results ?? []).map(([, value]) => value);
    const locked = values.slice(0, ids.length) as number[];
    const withoutLink = values[ids.length] as number[];
    const participants = values[ids.length + 1] as (string | null)[];
    const unavailable = values[ids.length + 2] as number[];
    const latest = new Map<string, string | null>();
    channels.forEach((channel, c) => {
      members
        .filter((m) => m.channel === channel)
        .forEach((m, i) => latest.set(`${channel}\n${m.groupId}`, perChannel[c]?.[i] ?? null));
    });
    const groups = members.map((member, i): PoolGroupStatus => {
      const closed = unavailable[i] === 1;
      const raw = latest.get(`${member.channel}\n${member.groupId}`) ?? null;
      const facts = {
        rotating: !closed && (locked[i] === 1 || withoutLink[i] === 1),
        link: closed ? undefined : linkOf(raw),
        participants: participantCount(participants[i]),
      };
      const state = poolState(facts, link.capacity);
      counts[state]++;
      return { group_id: member.groupId, state, participants: facts.participants };
    });
    pools.push({ slug: link.slug, capacity: link.capacity, signed: link.signed, groups, counts });
  }
  return pools;
}

function linkOf(raw: string | null): string | undefined {
  if (raw === null) return undefined;
  try {
    const link = (JSON.parse(raw) as { invite_link?: unknown }).invite_link;
    return typeof link === "string" && isInviteLink(link) ? link : undefined;
  } catch {
    return undefined;
  }
}
