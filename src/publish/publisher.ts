import { Cluster } from "ioredis";
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
import { parseMessage, rotationMessage, serializeMessage, signMessage } from "./message.js";
import { luaScript } from "../infra/scripts.js";
import { FAILURE_FIELDS, FINISH_ROTATION_LUA } from "../core/finish-lua.js";

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
 * The publish of one node (or a Sentinel-managed master): one Lua script on the shared connection,
 * so a publish is one call and needs no connection of its own (a WATCH transaction would).
 *
 * KEYS: group, rotation, lock, without-link index, groups index, C:latest, C:stream. ARGV: owner
 * ("" = unfenced), group id, rotation id, message, its sequence, channel, maxlen, published at,
 * saga ttl, "1" to finish the rotation, then the group's field/value pairs.
 *
 * A rotation already published returns {2, its message}, lock or not (that write happened while it
 * held the lock), so a resent call publishes nothing twice. Else the fence: {0} unless the owner
 * holds the group's lock. Then the sequence the message was signed with must be the group's next
 * on the channel (its counter + 1; without a counter, one more than its newest message on the
 * channel, as before sequences counted per channel): else {3, the right one}, and the caller signs
 * again. Then C:latest, C:stream, PUBLISH and the group's and rotation's records, atomically: {1}.
 */
const PUBLISH = luaScript<[number, (string | number)?]>(
  "rotatorPublish",
  7,
  `${FINISH_ROTATION_LUA}
local finish = ARGV[10] == "1"
local stored = redis.call("HGET", KEYS[2], "message")
if stored then
  if finish then finish_rotation(KEYS[1], KEYS[3], KEYS[4], ARGV[1], ARGV[3], ARGV[2]) end
  return {2, stored}
end
if ARGV[1] ~= "" and redis.call("GET", KEYS[3]) ~= ARGV[1] then return {0} end
local counter = redis.call("HGET", KEYS[1], "sequence:" .. ARGV[6])
local nxt = 1
if counter then
  nxt = (tonumber(counter) or 0) + 1
else
  local latest = redis.call("HGET", KEYS[6], ARGV[2])
  if latest then
    local ok, message = pcall(cjson.decode, latest)
    if ok and type(message) == "table" and tonumber(message.sequence) then
      nxt = tonumber(message.sequence) + 1
    end
  end
end
if nxt ~= tonumber(ARGV[5]) then return {3, nxt} end
redis.call("HSET", KEYS[6], ARGV[2], ARGV[4])
redis.call("XADD", KEYS[7], "MAXLEN", "~", ARGV[7], "*", "message", ARGV[4])
redis.call("PUBLISH", ARGV[6], ARGV[4])
redis.call("HINCRBY", KEYS[1], "sequence", 1)
redis.call("HSET", KEYS[1], unpack(ARGV, 11))
redis.call("SREM", KEYS[4], ARGV[2])
redis.call("SADD", KEYS[5], ARGV[2])
redis.call("HSET", KEYS[2], "message", ARGV[4], "published_at", ARGV[8])
redis.call("PEXPIRE", KEYS[2], ARGV[9])
if not finish then
  redis.call("HDEL", KEYS[1], "without_link_since")
  return {1}
end
-- finish_rotation, less what this script did already (the fence held, the index is cleared).
redis.call("HDEL", KEYS[1], "without_link_since", "${FAILURE_FIELDS.join('", "')}")
if redis.call("HGET", KEYS[1], "pending_rotation") == ARGV[3] then
  redis.call("HDEL", KEYS[1], "pending_rotation", "pending_since")
end
if ARGV[1] ~= "" then redis.call("DEL", KEYS[3]) end
return {1}`,
);

/**
 * The publisher: assigns the group's next sequence on the channel, signs (HMAC cannot run in Lua),
 * and in one atomic step writes `C:latest`, appends to `C:stream`, PUBLISHes, and records the
 * group's and the rotation's state (the script above; on a Cluster, fenced-publish.ts).
 *
 * With `input.lockOwner` the publish is fenced by the group's lock: it writes nothing unless the
 * lock names that owner, so an attempt that lost its lock (a stall, an outage) cannot publish over
 * a newer rotation. A rotation already published still gets its stored message back, lock or not.
 * Publishes of one group are also queued in-process, so they never race each other.
 */
export function createPublisher(deps: PublisherDeps): PublisherPort {
  const { redis, keys, signingSecret } = deps;
  const clock = deps.clock ?? systemClock;
  const serialised = serialiser();
  const compose = (input: PublishInput, sequence: number) => {
    const unsigned = rotationMessage(input, sequence);
    const message: RotationMessage = signingSecret
      ? { ...unsigned, signature: signMessage(unsigned, signingSecret, input.channel) }
      : unsigned;
    return { message, json: serializeMessage(message) };
  };
  // A Cluster keeps the channel's keys and the project's in different slots: see fenced-publish.ts.
  if (redis instanceof Cluster) {
    const fenced = { redis, keys, maxlen: STREAM_MAXLEN, now: () => clock.now(), compose, groupFields };
    return {
      finishes: true,
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

  const publish = async (input: PublishInput): Promise<RotationMessage> => {
    const c = channelKeys(input.channel);
    const keyList = [
      keys.group(input.groupId),
      keys.rotation(input.rotationId),
      keys.groupLock(input.groupId),
      keys.withoutLinkIndex,
      keys.groupsIndex,
      c.latest,
      c.stream,
    ];
    const finish = input.finish === true && input.lockOwner !== undefined ? "1" : "0";
    let sequence = input.expectedSequence ?? 1;
    for (let i = 0; i < MAX_ATTEMPTS; i++) {
      const { message, json } = compose(input, sequence);
      const fields = Object.entries(groupFields(message, json, input.channel)).flat();
      const reply = await PUBLISH.run(redis, keyList, [
        input.lockOwner ?? "",
        input.groupId,
        input.rotationId,
        json,
        sequence,
        c.channel,
        STREAM_MAXLEN,
        clock.now(),
        PUBLISHED_ROTATION_TTL_MS,
        finish,
        ...fields,
      ]);
      if (reply[0] === 1) return message;
      if (reply[0] === 2) return parseMessage(String(reply[1]));
      if (reply[0] === 0) throw new LockLostError(input.groupId, "lost the lock before publishing");
      // Another publish of the group (another process, unfenced) moved its sequence: sign again,
      // after a short random pause so racing publishers do not keep colliding.
      sequence = Number(reply[1]);
      if (i > 0) await sleep(Math.random() * 20 * i);
    }
    throw new PublishConflictError(input.groupId);
  };

  return { finishes: true, oneStep: true, publish: (input) => serialised(input, () => publish(input)) };
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

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
