import type { RedisClient } from "../infra/redis.js";
import { toError } from "../core/errors.js";
import { luaScript } from "../infra/scripts.js";
import { isInviteLink } from "../core/invite-link.js";
import type { RotationMessage } from "../core/interfaces.js";
import { channelKeys, type Keys } from "../core/keys.js";
import type { Logger } from "../infra/logger.js";
import { subscribe, type Subscription } from "../publish/subscriber.js";
import type { PoolMember, ResolvedLink } from "../config/links.js";
import { participantCount } from "../groups/pools.js";

/**
 * What the gateway knows of the published links: every group's newest message on each channel it
 * serves, kept by the project's own subscriber (C:latest on connect and every reconnect, then the
 * channel), signature-checked when ROTATOR_SIGNING_SECRET is set.
 *
 * Before a visit is sent anywhere, `inspect` asks Redis, in one round trip, what memory cannot
 * know for sure: whether a rotation of the group is under way (its lock is held: the DELETE may
 * already have happened; or it is in the without-link index), whether memory still holds the newest
 * published message (C:latest), and the group's participant count. A group whose newest message
 * has not reached memory yet counts as rotating for that moment, so no visit ever gets a link older
 * than the newest published one.
 */

/** One group of a pool at the moment of a visit. */
export interface GroupView {
  readonly groupId: string;
  /** The current invite link, when published, verified and not being rotated. */
  readonly link: string | undefined;
  /** A rotation is under way (or its newest link has not reached this process yet). */
  readonly rotating: boolean;
  /** Known participants; 0 when nothing is known. */
  readonly participants: number;
}

export interface LinkStore {
  /** Subscribes to every channel the links use. Resolves once each has read C:latest. */
  start(): Promise<void>;
  /**
   * A reloaded policy file's links: subscribes to the channels they add (resolves once each has
   * read C:latest). Channels no link uses any more stay subscribed (cheap; a later reload may
   * bring them back).
   */
  update(links: readonly ResolvedLink[]): Promise<void>;
  stop(): Promise<void>;
  /**
   * The pool of a link right now. A `groups: all` policy's pool is the groups it has published: a
   * group whose newest message is a manual rotation's (`policy: null`) stays in it when an earlier
   * message of this process named the policy or, failing that, when the policy's last fire listed
   * it (`keys.policyGroups`, read at start and on each reload).
   */
  members(link: ResolvedLink): PoolMember[];
  /** The pool's groups as Redis and memory see them now, in pool order. */
  inspect(members: readonly PoolMember[]): Promise<GroupView[]>;
  /** Resolves on the next message stored, or after `ms`. */
  changed(ms: number): Promise<void>;
  /** Messages held, for tests and status. */
  message(channel: string, groupId: string): RotationMessage | undefined;
}

export interface LinkStoreOptions {
  /** A command connection (not in subscriber mode); the subscriptions duplicate it. */
  redis: RedisClient;
  keys: Keys;
  links: readonly ResolvedLink[];
  /** ROTATOR_SIGNING_SECRET: messages badly signed are never served. */
  signingSecret?: string | undefined;
  logger: Logger;
}

interface Held {
  readonly message: RotationMessage;
  /** The policy of the newest message that named one (a manual rotation's names none). */
  readonly policy: string | null;
  /** The last C:latest text a visit found to be this message (saves parsing it again). */
  raw?: string;
}

export function createLinkStore(options: LinkStoreOptions): LinkStore {
  const { redis, keys, logger } = options;
  const log = logger.child({ component: "link-store" });
  const byChannel = new Map<string, Map<string, Held>>();
  const subscriptions: Subscription[] = [];
  let waiters: (() => void)[] = [];
  let started = false;
  let links = options.links;
  /** Per `groups: all` policy of a link: the groups its last fire listed. */
  const listedBy = new Map<string, ReadonlySet<string>>();
  const channelsOf = (links: readonly ResolvedLink[]) => {
    const channels = new Set<string>();
    for (const link of links) {
      for (const member of link.members) channels.add(member.channel);
      if (link.policyChannel !== undefined) channels.add(link.policyChannel);
    }
    return channels;
  };

  const store = (channel: string, message: RotationMessage) => {
    const groups = byChannel.get(channel)!;
    const policy = message.policy ?? groups.get(message.group_id)?.policy ?? null;
    groups.set(message.group_id, { message, policy });
    const woken = waiters;
    waiters = [];
    for (const wake of woken) wake();
  };

  const follow = async (channel: string) => {
    byChannel.set(channel, new Map());
    const subscription = await subscribe({
      redis,
      channel,
      ...(options.signingSecret !== undefined ? { secret: options.signingSecret } : {}),
      onMessage: (message) => store(channel, message),
      onInvalid: (error) =>
        log.warn({ channel, err: { message: error.message } }, "published message ignored"),
      onError: (error) => log.warn({ channel, err: { message: error.message } }, "subscription error"),
    });
    subscriptions.push(subscription);
  };

  const readListed = async () => {
    const policies = new Set(links.flatMap((l) => (l.members.length === 0 && l.policy ? [l.policy] : [])));
    for (const policy of policies)
      listedBy.set(policy, new Set(await redis.smembers(keys.policyGroups(policy))));
  };

  return {
    async start() {
      started = true;
      for (const channel of channelsOf(links)) if (!byChannel.has(channel)) await follow(channel);
      await readListed();
    },
    async update(next) {
      links = next;
      if (!started) return;
      for (const channel of channelsOf(links)) if (!byChannel.has(channel)) await follow(channel);
      await readListed();
    },
    async stop() {
      await Promise.all(subscriptions.splice(0).map((s) => s.close()));
      for (const wake of waiters.splice(0)) wake();
    },
    members(link) {
      if (link.members.length > 0 || link.policy === undefined) return [...link.members];
      const channel = link.policyChannel!;
      const held = byChannel.get(channel) ?? new Map<string, Held>();
      const listed = listedBy.get(link.policy);
      return [...held.values()]
        .filter((h) => (h.policy ?? (listed?.has(h.message.group_id) ? link.policy : null)) === link.policy)
        .map((h) => ({ groupId: h.message.group_id, channel }))
        .sort((a, b) => (a.groupId < b.groupId ? -1 : a.groupId > b.groupId ? 1 : 0));
    },
    async inspect(members) {
      if (members.length === 0) return [];
      const state = redis.isCluster
        ? await readApart(redis, keys, members)
        : await readTogether(redis, keys, members);
      return members.map((member, i) => {
        const held = byChannel.get(member.channel)?.get(member.groupId);
        const raw = state.latest[i] ?? null;
        // Memory behind Redis: the newest message is on its way (or was refused); not servable now.
        const current = held !== undefined && raw !== null && isHeld(held, raw);
        const busy = state.locked[i] === 1 || state.withoutLink[i] === 1 || (raw !== null && !current);
        // WhatsApp suspended or deleted the group (webhooks): never offered, not worth a wait.
        const closed = state.unavailable[i] === 1;
        const link =
          current && !busy && !closed && isInviteLink(held.message.invite_link)
            ? held.message.invite_link
            : undefined;
        return {
          groupId: member.groupId,
          link,
          rotating: busy && !closed,
          participants: participantCount(state.counts[i] ?? null),
        };
      });
    },
    changed(ms) {
      return new Promise<void>((resolve) => {
        const timer = setTimeout(done, ms);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        waiters.push(done);
      });
    },
    message(channel, groupId) {
      return byChannel.get(channel)?.get(groupId)?.message;
    },
  };
}

/** What Redis holds for each member of a pool at a visit, in pool order. */
interface PoolState {
  /** 1: the group's lock is held (a rotation is under way). */
  readonly locked: readonly number[];
  /** 1: in the without-link index (old link deleted, new one not published). */
  readonly withoutLink: readonly number[];
  readonly counts: readonly (string | null)[];
  /** 1: suspended or deleted (WhatsApp's webhooks). */
  readonly unavailable: readonly number[];
  /** The group's field of its channel's C:latest: the newest published message's text. */
  readonly latest: readonly (string | null)[];
}

/**
 * One node (or a Sentinel's master): the whole pool in one script call, one command and one reply
 * per visit (a pipeline of seven commands cost ioredis 7 KB of garbage and most of a visit's CPU).
 * KEYS: each member's lock, the without-link index, the participant counts, the unavailable set,
 * then each channel's C:latest; ARGV: the member count, then per member its group id and the index
 * (1-based) of its channel's C:latest among those keys.
 */
const INSPECT_POOL = luaScript<(number | string | null)[]>(
  "waRotatorInspectPool",
  "any",
  `
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  local id = ARGV[2 * i]
  out[#out + 1] = redis.call('EXISTS', KEYS[i])
  out[#out + 1] = redis.call('SISMEMBER', KEYS[n + 1], id)
  out[#out + 1] = redis.call('HGET', KEYS[n + 2], id)
  out[#out + 1] = redis.call('SISMEMBER', KEYS[n + 3], id)
  out[#out + 1] = redis.call('HGET', KEYS[n + 3 + tonumber(ARGV[2 * i + 1])], id)
end
return out
`,
);

async function readTogether(
  redis: RedisClient,
  keys: Keys,
  members: readonly PoolMember[],
): Promise<PoolState> {
  const channels: string[] = [];
  const args: (string | number)[] = [members.length];
  for (const member of members) {
    let c = channels.indexOf(member.channel);
    if (c < 0) c = channels.push(member.channel) - 1;
    args.push(member.groupId, c + 1);
  }
  const keyList = [
    ...members.map((m) => keys.groupLock(m.groupId)),
    keys.withoutLinkIndex,
    keys.groupParticipants,
    keys.groupsUnavailable,
    ...channels.map((channel) => channelKeys(channel).latest),
  ];
  const flat = await INSPECT_POOL.run(redis, keyList, args);
  const column = (k: number) => members.map((_, i) => flat[5 * i + k] ?? null);
  return {
    locked: column(0) as number[],
    withoutLink: column(1) as number[],
    counts: column(2) as (string | null)[],
    unavailable: column(3) as number[],
    latest: column(4) as (string | null)[],
  };
}

/**
 * A Cluster keeps the project's keys and each channel's in different slots: a pipeline for the
 * project's slot and one HMGET per channel beside it, sent together.
 */
async function readApart(redis: RedisClient, keys: Keys, members: readonly PoolMember[]): Promise<PoolState> {
  const ids = members.map((m) => m.groupId);
  const channels = [...new Set(members.map((m) => m.channel))];
  const pipeline = redis.pipeline();
  for (const id of ids) pipeline.exists(keys.groupLock(id));
  pipeline.smismember(keys.withoutLinkIndex, ...ids);
  pipeline.hmget(keys.groupParticipants, ...ids);
  pipeline.smismember(keys.groupsUnavailable, ...ids);
  const [results, ...perChannel] = await Promise.all([
    pipeline.exec(),
    ...channels.map((channel) =>
      redis.hmget(
        channelKeys(channel).latest,
        ...members.filter((m) => m.channel === channel).map((m) => m.groupId),
      ),
    ),
  ]);
  if (!results) throw new Error("redis pipeline aborted");
  for (const [error] of results) if (error) throw toError(error);
  const values = results.map(([, value]) => value);
  const latest = new Map<string, string | null>();
  channels.forEach((channel, c) => {
    members
      .filter((m) => m.channel === channel)
      .forEach((m, i) => latest.set(`${channel}\n${m.groupId}`, perChannel[c]![i] ?? null));
  });
  return {
    locked: values.slice(0, ids.length) as number[],
    withoutLink: values[ids.length] as number[],
    counts: values[ids.length + 1] as (string | null)[],
    unavailable: values[ids.length + 2] as number[],
    latest: members.map((m) => latest.get(`${m.channel}\n${m.groupId}`) ?? null),
  };
}

/** Whether C:latest's text `raw` is the message held (same rotation and sequence). */
function isHeld(held: Held, raw: string): boolean {
  if (held.raw === raw) return true;
  let parsed: { rotation_id?: unknown; sequence?: unknown };
  try {
    parsed = JSON.parse(raw) as typeof parsed;
  } catch {
    return false;
  }
  const same = parsed.rotation_id === held.message.rotation_id && parsed.sequence === held.message.sequence;
  if (same) held.raw = raw;
  return same;
}
