import type { Queue } from "bullmq";
import type { RotationJobData } from "../core/interfaces.js";
import type { RedisClient } from "../infra/redis.js";
import { ROTATION_JOB, rotationJobOptions } from "../rotation/queue.js";

/**
 * One chunk of a fire in one Lua call, not `queue.addBulk`, which runs BullMQ's addDelayedJob
 * script once per job and builds a Job, a msgpack buffer and an EVALSHA per job in this process:
 * a 100,000-group fire took 5.6 s. Here a job is one HSET and one ZADD, the chunk one round trip.
 */
/**
 * Marks each group's `pending_rotation` (skipping groups whose previous rotation is still waiting or
 * retrying, groups whose last published rotation is this one, and groups WhatsApp suspended or
 * deleted: their webhooks set `suspended_at`/`deleted_at`) and adds each marked group's delayed job
 * as BullMQ 6's addDelayedJob stores it (`test/integration/fire-chunk.test.ts` compares it with
 * addBulk's, field by field, and a worker runs it): the job hash (name, data, opts, timestamp,
 * delay, priority), its member of the delayed set with BullMQ's score (due time × 4096, plus an
 * order counter among the call's jobs due that ms) and the marker that wakes blocked workers. No
 * `added`/`delayed` events (nothing here reads them); a job with no delay goes through addBulk.
 * Sent with EVAL, not registered (infra/scripts.ts): its number of keys varies, and one call per
 * 1,000 groups makes its text's cost negligible.
 */
const FIRE_CHUNK = `local now = tonumber(ARGV[1])
local grace = tonumber(ARGV[2])
local jobPrefix = ARGV[3]
local delayedKey = KEYS[1]
local out = {}
local added = false
local sameMs = {}
for i = 3, #KEYS do
  local key = KEYS[i]
  local at = 5 + (i - 3) * 4
  local id = ARGV[at + 1]
  local group = redis.call("HMGET", key, "pending_rotation", "pending_since", "last_rotation_id",
    "suspended_at", "deleted_at")
  local pending = group[1]
  local busy = false
  if pending and pending ~= id then
    local age = now - (tonumber(group[2]) or 0)
    busy = true
    if age >= grace then
      local job = jobPrefix .. pending
      if redis.call("EXISTS", job) == 0 or redis.call("HEXISTS", job, "finishedOn") == 1 then busy = false end
    end
  end
  if group[3] == id then out[#out + 1] = 2
  elseif group[5] then out[#out + 1] = 5
  elseif group[4] then out[#out + 1] = 4
  elseif busy then out[#out + 1] = 1
  else
    redis.call("HSET", key, "pending_rotation", id, "pending_since", ARGV[1])
    local delay = tonumber(ARGV[at + 2])
    local jobKey = jobPrefix .. id
    if delay <= 0 then out[#out + 1] = 3
    else
      out[#out + 1] = 0
      if redis.call("EXISTS", jobKey) == 0 then
        local timestamp = tonumber(ARGV[5])
        redis.call("HSET", jobKey, "name", ARGV[4], "data", ARGV[at + 3], "opts", ARGV[at + 4],
          "timestamp", ARGV[5], "delay", ARGV[at + 2], "priority", 0)
        -- As BullMQ's getDelayedScore: the due time x 0x1000, plus a counter among jobs due that
        -- ms, counted within this call only (BullMQ asks the set each time: a fifth of this
        -- script's time). Jobs of two calls due the same ms tie, and run in either order.
        local due = timestamp + delay
        local score = sameMs[due]
        score = (score and math.min(score + 1, (due + 1) * 0x1000 - 1)) or due * 0x1000
        sameMs[due] = score
        redis.call("ZADD", delayedKey, score, id)
        added = true
      end
    end
  end
end
if added then
  -- BullMQ's addDelayMarkerIfNeeded: the marker holds the next due time.
  local first = redis.call("ZRANGE", delayedKey, 0, 0, "WITHSCORES")
  local next = tonumber(first[2])
  if next ~= nil then redis.call("ZADD", KEYS[2], next / 0x1000, "1") end
end
return out`;

/**
 * What the chunk did with each group, in order: 0 marked and its delayed job added (or already
 * there: the same rotation id); 1 busy (its previous rotation is still pending), left alone; 2 this
 * rotation already published it (a fire run again); 3 marked, and its job has no delay: the caller
 * adds it through BullMQ; 4 WhatsApp suspended the group, 5 it deleted the group: no rotation (the
 * worker would skip it: a job that only says so is not worth its place in the queue).
 */
export type ChunkOutcome = 0 | 1 | 2 | 3 | 4 | 5;

export interface ChunkRequest {
  readonly rotations: readonly RotationJobData[];
  /** Per rotation, ms from now. */
  readonly delays: readonly number[];
  readonly now: number;
  readonly orphanGraceMs: number;
  readonly groupKey: (groupId: string) => string;
}

/** A job's opts as BullMQ stores them (its defaults, its id, its delay), without the closing brace. */
const OPTS_HEAD = JSON.stringify(rotationJobOptions).slice(0, -1);

/** Marks and enqueues one chunk (see FIRE_CHUNK); returns each rotation's outcome. */
export async function fireChunk(
  redis: RedisClient,
  queue: Queue<RotationJobData>,
  request: ChunkRequest,
): Promise<ChunkOutcome[]> {
  const { rotations, delays } = request;
  const keys: string[] = [queue.toKey("delayed"), queue.toKey("marker")];
  const args: string[] = [
    String(request.now),
    String(request.orphanGraceMs),
    queue.toKey(""),
    ROTATION_JOB,
    String(Date.now()), // the job's timestamp, as BullMQ takes it: this machine's time
  ];
  for (let i = 0; i < rotations.length; i++) {
    const data = rotations[i]!;
    const delay = Math.max(0, Math.round(delays[i] ?? 0));
    keys.push(request.groupKey(data.groupId));
    args.push(
      data.rotationId,
      String(delay),
      JSON.stringify(data),
      `${OPTS_HEAD},"jobId":${JSON.stringify(data.rotationId)},"delay":${delay}}`,
    );
  }
  return (await redis.eval(FIRE_CHUNK, keys.length, ...keys, ...args)) as ChunkOutcome[];
}
