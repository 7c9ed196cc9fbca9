import { Cluster, type Redis } from "ioredis";
import { LockLostError, RotatorError } from "../core/errors.js";
import {
  systemClock,
  type Clock,
  type PublisherPort,
  type PublishInput,
  type RotationMessage,
} from "../core/interfaces.js";
import { channelKeys, PUBLISHED_ROTATION_TTL_MS, type Keys } from "../core/keys.js";
import { claimChannel, publishFenced } from "./fenced-publish.js";
import type { RedisClient } from "../infra/redis.js";
import { parseMessage, serializeMessage, signMessage, type UnsignedRotationMessage } from "./message.js";
import { throwOnTransactionError } from "../infra/redis.js";

/** Entries kept in `C:stream` (approximately: `MAXLEN ~`). */
export const STREAM_MAXLEN = 10_000;

/** An attempt found the group's lock held by another owner (or by none). */
const LOCK_LOST = Symbol("lock lost");

/** Optimistic attempts per publish when another process changes the group or rotation meanwhile. */
const MAX_ATTEMPTS = 10;

/** The publish transaction lost every optimistic attempt; the rotation job retries it later. */
export class PublishConflictError extends RotatorError {
  constructor(groupId: string) {
    super("E_PUBLISH_CONFLICT", `publish of group ${groupId} kept conflicting with concurrent writers`);
  }
}

export interface PublisherDeps {
  readonly redis: RedisClient;
  readonly keys: Keys;
  /** When set, every message carries `signature`. Never logged. */
  readonly signingSecret?: string | undefined;
  readonly clock?: Clock;
}

/**
 * The publisher: assigns the group's next sequence on the channel and, in one MULTI/EXEC guarded by WATCH on the
 * group and rotation hashes, writes `C:latest`, appends to `C:stream`, PUBLISHes, and records the
 * group's and the rotation's state. The sequence is read before the transaction because the
 * signature covers it (HMAC cannot run in Lua).
 *
 * With `input.lockOwner` the transaction is fenced by the group's lock: the lock key is WATCHed
 * too and EXEC is sent only if the lock names that owner, so an attempt that lost its lock (a
 * stall, an outage) cannot publish over a newer rotation. A rotation already published still gets
 * its stored message back, lock or not: that write happened while it held the lock.
 *
 * WATCH belongs to a connection and any EXEC on it clears it, so the transaction runs on connections
 * the publisher owns (duplicates of `redis`, kept only while publishes are in flight), never on the
 * shared one. Publishes of one group are also queued in-process, so they never race each other and
 * WATCH only has to resolve races with other processes.
 */
export function createPublisher(deps: PublisherDeps): PublisherPort {
  const { redis, keys, signingSecret } = deps;
  const clock = deps.clock ?? systemClock;
  const serialised = serialiser();
  const compose = (input: PublishInput, sequence: number) => {
    const unsigned: UnsignedRotationMessage = {
      event: "invite_link.rotated",
      schema: 1,
      rotation_id: input.rotationId,
      group_id: input.groupId,
      invite_link: input.inviteLink,
      rotated_at: new Date(input.createdAt).toISOString(),
      sequence,
      policy: input.policy,
      account: input.account,
      trigger: input.trigger,
    };
    const message: RotationMessage = signingSecret
      ? { ...unsigned, signature: signMessage(unsigned, signingSecret, input.channel) }
      : unsigned;
    return { message, json: serializeMessage(message) };
  };
  // A Cluster keeps the channel's keys and the project's in different slots: see fenced-publish.ts.
  if (redis instanceof Cluster) {
    const fenced = { redis, keys, maxlen: STREAM_MAXLEN, now: () => clock.now(), compose, groupFields };
    return {
      claim: (groupId, channel, owner) => claimChannel(redis, channel, groupId, owner),
      publish: (input) =>
        serialised(input, () =>
          retrying(input, async () => {
            const result = await publishFenced(fenced, input);
            return result === "lost" ? LOCK_LOST : result;
          }),
        ),
    };
  }
  const pool = connectionPool(redis);

  const attempt = async (
    conn: Redis,
    input: PublishInput,
  ): Promise<RotationMessage | typeof LOCK_LOST | null> => {
    const groupKey = keys.group(input.groupId);
    const rotationKey = keys.rotation(input.rotationId);
    const lockKey = keys.groupLock(input.groupId);
    const c = channelKeys(input.channel);
    const fenced = input.lockOwner !== undefined;
    // The lock is watched too: its holder changing between the GET and EXEC aborts the EXEC. (A
    // heartbeat's PEXPIRE does as well; that attempt simply runs again.)
    await (fenced ? conn.watch(groupKey, rotationKey, lockKey) : conn.watch(groupKey, rotationKey));
    // C:latest is not watched (every group of the channel writes it): its entry for this group only
    // changes in a publish of this group, which changes the watched group hash as well.
    const [stored, counters, latestOnChannel, holder] = await Promise.all([
      conn.hget(rotationKey, "message"),
      conn.hmget(groupKey, "sequence", channelSequenceField(input.channel)),
      conn.hget(c.latest, input.groupId),
      fenced ? conn.get(lockKey) : null,
    ]);
    if (stored !== null) {
      await conn.unwatch();
      return parseMessage(stored);
    }
    if (fenced && holder !== input.lockOwner) {
      await conn.unwatch();
      return LOCK_LOST;
    }
    const [groupCount, channelCount] = counters;
    const { message, json } = compose(input, nextChannelSequence(channelCount ?? null, latestOnChannel));
    const results = await conn
      .multi()
      .hset(c.latest, input.groupId, json)
      .xadd(c.stream, "MAXLEN", "~", STREAM_MAXLEN, "*", "message", json)
      .publish(c.channel, json)
      .hset(groupKey, {
        // The group's publishes on every channel (the saga compares it); the message's `sequence`
        // counts per channel, so each channel's stream is gap-free.
        sequence: String((Number(groupCount ?? 0) || 0) + 1),
        ...groupFields(message, json, input.channel),
      })
      .hdel(groupKey, "without_link_since")
      .srem(keys.withoutLinkIndex, input.groupId)
      .sadd(keys.groupsIndex, input.groupId)
      .hset(rotationKey, "message", json, "published_at", String(clock.now()))
      .pexpire(rotationKey, PUBLISHED_ROTATION_TTL_MS)
      .exec();
    if (results === null) return null; // a watched key changed: try again
    throwOnTransactionError(results);
    return message;
  };

  return {
    publish: (input) =>
      serialised(input, () => retrying(input, () => pool.use((conn) => attempt(conn, input)))),
  };
}

/** Optimistic attempts until one publishes: null means a concurrent writer won, try again. */
async function retrying(
  input: PublishInput,
  attempt: () => Promise<RotationMessage | typeof LOCK_LOST | null>,
): Promise<RotationMessage> {
  for (let i = 0; i < MAX_ATTEMPTS; i++) {
    const message = await attempt();
    if (message === LOCK_LOST) throw new LockLostError(input.groupId, "lost the lock before publishing");
    if (message) return message;
    await sleep(Math.random() * 20 * (i + 1));
  }
  throw new PublishConflictError(input.groupId);
}

/** Publishes of one group are queued in-process, so they never race each other. */
function serialiser() {
  const groupQueues = new Map<string, Promise<unknown>>();
  return <T>(input: PublishInput, publish: () => Promise<T>): Promise<T> => {
    const previous = groupQueues.get(input.groupId) ?? Promise.resolve();
    const run = previous.catch(() => undefined).then(publish);
    groupQueues.set(input.groupId, run);
    void run
      .catch(() => undefined)
      .finally(() => {
        if (groupQueues.get(input.groupId) === run) groupQueues.delete(input.groupId);
      });
    return run;
  };
}

/**
 * The group state hash's fields a published message sets, but for `sequence` (the group's
 * publishes on every channel), which each publish path counts up itself.
 */
function groupFields(message: RotationMessage, json: string, channel: string): Record<string, string> {
  return {
    [channelSequenceField(channel)]: String(message.sequence),
    last_sequence: String(message.sequence),
    last_rotation_id: message.rotation_id,
    last_rotated_at: message.rotated_at,
    last_trigger: message.trigger,
    last_policy: message.policy ?? "",
    last_account: message.account,
    last_channel: channel,
    last_message: json,
  };
}

/** The group hash's field counting the group's messages on one channel. */
export function channelSequenceField(channel: string): string {
  return `sequence:${channel}`;
}

/**
 * The next `sequence` of a group on a channel: one more than its counter there. Without a counter
 * (state written before sequences counted per channel), one more than the group's newest message
 * on that channel, so an upgraded stream goes on where it stopped.
 */
function nextChannelSequence(counter: string | null, latestOnChannel: string | null): number {
  if (counter !== null) return (Number(counter) || 0) + 1;
  if (latestOnChannel === null) return 1;
  try {
    return parseMessage(latestOnChannel).sequence + 1;
  } catch {
    return 1; // not a message of ours: the channel has none of this group's to follow
  }
}

/**
 * Reads a channel's newest messages (`C:latest`): one group's (null when it has none), or every
 * group's as a map by group id. Entries that are not valid messages are left out of the map.
 */
export async function readLatest(
  redis: RedisClient,
  channel: string,
  groupId: string,
): Promise<RotationMessage | null>;
export async function readLatest(redis: RedisClient, channel: string): Promise<Map<string, RotationMessage>>;
export async function readLatest(
  redis: RedisClient,
  channel: string,
  groupId?: string,
): Promise<RotationMessage | null | Map<string, RotationMessage>> {
  const { latest } = channelKeys(channel);
  if (groupId !== undefined) {
    const raw = await redis.hget(latest, groupId);
    return raw === null ? null : parseMessage(raw);
  }
  const all = await redis.hgetall(latest);
  const messages = new Map<string, RotationMessage>();
  for (const [group, raw] of Object.entries(all)) {
    try {
      messages.set(group, parseMessage(raw));
    } catch {
      // not ours to interpret; subscribers report such entries through onInvalid
    }
  }
  return messages;
}

interface ConnectionPool {
  use<T>(fn: (conn: Redis) => Promise<T>): Promise<T>;
}

/**
 * Dedicated connections for WATCH transactions. Idle ones are reused while publishes are in flight
 * and closed once none are, so the pool holds no socket open between bursts and needs no close().
 */
function connectionPool(redis: Redis): ConnectionPool {
  const idle: Redis[] = [];
  let inFlight = 0;
  /**
   * A publish connection never resends or queues: if it drops after EXEC ran but before the reply
   * came, a resent MULTI (without its WATCH, on a new socket) would publish twice. Instead the
   * attempt fails, the connection is dropped, and the retry finds the rotation already published.
   */
  const open = async () => {
    const name = redis.options.connectionName;
    const conn = redis.duplicate({
      connectionName: name ? `${name}:publish` : undefined,
      lazyConnect: true,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    conn.on("error", () => undefined); // commands reject on their own; no unhandled error events
    try {
      await conn.connect();
    } catch (error) {
      conn.disconnect();
      throw error;
    }
    return conn;
  };
  return {
    async use(fn) {
      inFlight++;
      let conn: Redis;
      try {
        conn = idle.pop() ?? (await open());
      } catch (error) {
        inFlight--;
        throw error;
      }
      let healthy = false;
      try {
        const result = await fn(conn);
        healthy = true;
        return result;
      } finally {
        inFlight--;
        if (!healthy) {
          // the connection may hold a WATCH or a half-read reply: never reuse it
          conn.disconnect();
        } else if (inFlight === 0) {
          for (const other of idle.splice(0)) void other.quit().catch(() => other.disconnect());
          void conn.quit().catch(() => conn.disconnect());
        } else {
          idle.push(conn);
        }
      }
    },
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
