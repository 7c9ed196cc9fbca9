import type { RedisClient } from "../infra/redis.js";
import type { PublishInput, RotationMessage } from "../core/interfaces.js";
import { channelKeys, PUBLISHED_ROTATION_TTL_MS, type Keys } from "../core/keys.js";
import { parseMessage } from "./message.js";
import { RotatorError } from "../core/errors.js";
import { FINISH_ROTATION_LUA } from "../core/finish-lua.js";
import { luaScript } from "../infra/scripts.js";

/**
 * The publish of a Redis Cluster, where a channel's keys and the project's keys live in different
 * hash slots, so no one transaction can span them (contract, "Redis deployments"): the channel's
 * step first, atomic in its slot (`PUBLISH_ON_CHANNEL`), then the project's record (`RECORD`). A
 * crash between the two is resumed: the retry finds its rotation id in `C:latest` and records that
 * message instead of publishing again. The fence (`ChannelKeys.fence`) shuts out a stalled rotation.
 */

/**
 * Checks the fence, checks that the group's newest message on the channel still has the sequence
 * the message was signed with, then HSETs `C:latest`, XADDs `C:stream` and PUBLISHes.
 * KEYS: latest, stream, fence. ARGV: group, owner ("" = unfenced), rotation id, message, prev sequence, channel, maxlen. */
const PUBLISH_ON_CHANNEL = luaScript<[number, string?]>(
  "rotatorPublishOnChannel",
  3,
  `
if ARGV[2] ~= "" and redis.call("HGET", KEYS[3], ARGV[1]) ~= ARGV[2] then return {0} end
local current = redis.call("HGET", KEYS[1], ARGV[1])
local sequence = 0
if current then
  local ok, message = pcall(cjson.decode, current)
  if ok and type(message) == "table" then
    if message.rotation_id == ARGV[3] then return {2, current} end
    sequence = tonumber(message.sequence) or 0
  end
end
if sequence ~= tonumber(ARGV[5]) then return {3} end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[4])
redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[7], "*", "message", ARGV[4])
redis.call("PUBLISH", ARGV[6], ARGV[4])
return {1}`,
);

/**
 * KEYS: group, rotation, lock, without-link index, groups index. ARGV: owner ("" = unfenced), group
 * id, message, published at, ttl, "1" to finish the rotation, rotation id, then field/value pairs.
 * A rotation recorded already is not recorded again (but finished, when asked).
 */
const RECORD = luaScript<number>(
  "rotatorPublishRecord",
  5,
  `${FINISH_ROTATION_LUA}
local finish = ARGV[6] == "1"
if redis.call("HEXISTS", KEYS[2], "message") == 1 then
  if finish then finish_rotation(KEYS[1], KEYS[3], KEYS[4], ARGV[1], ARGV[7], ARGV[2]) end
  return 1
end
if ARGV[1] ~= "" and redis.call("GET", KEYS[3]) ~= ARGV[1] then return 0 end
redis.call("HINCRBY", KEYS[1], "sequence", 1)
redis.call("HSET", KEYS[1], unpack(ARGV, 8))
redis.call("HDEL", KEYS[1], "without_link_since")
redis.call("SREM", KEYS[4], ARGV[2])
redis.call("SADD", KEYS[5], ARGV[2])
redis.call("HSET", KEYS[2], "message", ARGV[3], "published_at", ARGV[4])
redis.call("PEXPIRE", KEYS[2], ARGV[5])
if finish then finish_rotation(KEYS[1], KEYS[3], KEYS[4], ARGV[1], ARGV[7], ARGV[2]) end
return 1`,
);

export interface FencedPublishDeps {
  readonly redis: RedisClient;
  readonly keys: Keys;
  readonly maxlen: number;
  readonly now: () => number;
  /** Builds and signs the message with the given sequence and serialises it. */
  readonly compose: (input: PublishInput, sequence: number) => { message: RotationMessage; json: string };
  /** The fields of the group's state hash that a published message sets (RECORD counts `sequence` up). */
  readonly groupFields: (message: RotationMessage, json: string, channel: string) => Record<string, string>;
}

/** Names `owner` the group's publisher on `channel`: done under the group's lock, before any Graph call. */
export async function claimChannel(
  redis: RedisClient,
  channel: string,
  groupId: string,
  owner: string,
): Promise<void> {
  await redis.hset(channelKeys(channel).fence, groupId, owner);
}

/** One attempt: the message published (or found published), "lost" (fence or lock), or null (a newer message raced in: try again). */
export async function publishFenced(
  deps: FencedPublishDeps,
  input: PublishInput,
): Promise<RotationMessage | "lost" | null> {
  const { redis, keys } = deps;
  const rotationKey = keys.rotation(input.rotationId);
  const owner = input.lockOwner ?? "";
  const finish = input.finish === true && owner !== "" ? "1" : "0";
  const record = (json: string, fields: string[]) =>
    RECORD.run(
      redis,
      [
        keys.group(input.groupId),
        rotationKey,
        keys.groupLock(input.groupId),
        keys.withoutLinkIndex,
        keys.groupsIndex,
      ],
      [
        owner,
        input.groupId,
        json,
        deps.now(),
        PUBLISHED_ROTATION_TTL_MS,
        finish,
        input.rotationId,
        ...fields,
      ],
    );
  const stored = await redis.hget(rotationKey, "message");
  if (stored !== null) {
    if (finish === "1") await record(stored, []);
    return parseMessage(stored);
  }

  const c = channelKeys(input.channel);
  const raw = await redis.hget(c.latest, input.groupId);
  let previous: RotationMessage | undefined;
  try {
    previous = raw === null ? undefined : parseMessage(raw);
  } catch {
    previous = undefined; // not ours to interpret: the script counts it as sequence 0 as well
  }
  let json: string;
  let message: RotationMessage;
  if (previous?.rotation_id === input.rotationId) {
    // Published on an earlier attempt that stopped before its record: record it, publish nothing.
    message = previous;
    json = raw!;
  } else {
    ({ message, json } = deps.compose(input, (previous?.sequence ?? 0) + 1));
    const reply = await PUBLISH_ON_CHANNEL.run(
      redis,
      [c.latest, c.stream, c.fence],
      [input.groupId, owner, input.rotationId, json, previous?.sequence ?? 0, c.channel, deps.maxlen],
    );
    if (reply[0] === 0) return "lost";
    if (reply[0] === 3) return null;
    if (reply[0] === 2) {
      json = reply[1]!;
      message = parseMessage(json);
    }
  }
  const fields = Object.entries(deps.groupFields(message, json, input.channel)).flat();
  const recorded = await record(json, fields);
  if (Number(recorded) !== 1) {
    // Published, not recorded: like a lost lock, the rotation tries again, and the retry records.
    throw new RotatorError(
      "E_LOCK_LOST",
      `group ${input.groupId}: lost the lock after publishing on ${input.channel}; a retry records the publish`,
    );
  }
  return message;
}
