import { randomUUID } from "node:crypto";
import type { RedisClient } from "../infra/redis.js";
import type { FireTrigger } from "./fire.js";
import type { Keys } from "../core/keys.js";
import { luaScript } from "../infra/scripts.js";

/**
 * The scheduler's state of each policy in Redis (`Keys.policy`, whose fields keys.ts lists).
 * Claiming is what makes a fire happen exactly once across replicas: `last_fire` only moves
 * forward, atomically, and only the replica that moved it enqueues. Completion is recorded apart
 * from the claim, so a fire claimed but never enqueued (its replica failed or crashed) is found
 * and run again.
 */
export interface PolicyStatePort {
  /** The last claimed fire, epoch ms, or undefined when the policy never fired. */
  lastFire(policy: string): Promise<number | undefined>;
  /**
   * Claims `fireAt`: true when it is later than the last claimed fire (it becomes the last fire,
   * unfinished, held by this replica); false when this or a later fire was already claimed.
   */
  claim(policy: string, fireAt: number, trigger?: FireTrigger): Promise<boolean>;
  /** Records `fireAt` as the last fire (done) only when the policy has none (a first-ever start). */
  recordIfAbsent(policy: string, fireAt: number): Promise<boolean>;
  /** Records that every rotation of `fireAt` is enqueued. */
  markDone(policy: string, fireAt: number): Promise<void>;
  /** The newest claimed fire when it is not done, else undefined. */
  unfinished(policy: string): Promise<UnfinishedFire | undefined>;
  /**
   * Refreshes this replica's hold on the unfinished `fireAt` before another attempt: false when it
   * is done, superseded by a newer claim, or taken over by another replica.
   */
  renew(policy: string, fireAt: number): Promise<boolean>;
  /**
   * Takes over the unfinished `fireAt` when its holder has not (re)claimed it for `graceMs`: true
   * for exactly one replica per grace period.
   */
  takeOver(policy: string, fireAt: number, graceMs: number): Promise<boolean>;
  /**
   * Records that the fires up to `fireAt` were missed (they will not run): when `fireAt` is later
   * than the fire recorded so far, it is recorded and the earlier one returned (`previous`, if
   * any), so exactly one caller counts the fires in between; undefined when this or a later fire
   * was already recorded.
   */
  noteMissed(policy: string, fireAt: number): Promise<{ readonly previous: number | undefined } | undefined>;
}

/** A fire that was claimed and not (yet) done. */
export interface UnfinishedFire {
  readonly fireAt: number;
  readonly trigger: FireTrigger;
  /** When its holder last claimed or renewed it, epoch ms. */
  readonly claimedAt: number;
}

const CLAIM = `local last = tonumber(redis.call("HGET", KEYS[1], "last_fire"))
if last and last >= tonumber(ARGV[1]) then return 0 end
redis.call("HSET", KEYS[1], "last_fire", ARGV[1], "claimed_fire", ARGV[1], "claimed_trigger", ARGV[2],
  "claimed_at", ARGV[3], "claimed_by", ARGV[4])
return 1`;

const RECORD_IF_ABSENT = `if redis.call("HEXISTS", KEYS[1], "last_fire") == 1 then return 0 end
redis.call("HSET", KEYS[1], "last_fire", ARGV[1], "done_fire", ARGV[1])
return 1`;

const MARK_DONE = `local done = tonumber(redis.call("HGET", KEYS[1], "done_fire"))
if not done or done < tonumber(ARGV[1]) then redis.call("HSET", KEYS[1], "done_fire", ARGV[1]) end
return 1`;

/** ARGV: fire, now, replica, grace (empty: renew, the caller must hold the fire). */
const HOLD = `local fire = tonumber(ARGV[1])
if tonumber(redis.call("HGET", KEYS[1], "claimed_fire")) ~= fire then return 0 end
local done = tonumber(redis.call("HGET", KEYS[1], "done_fire"))
if done and done >= fire then return 0 end
if ARGV[4] == "" then
  if redis.call("HGET", KEYS[1], "claimed_by") ~= ARGV[3] then return 0 end
else
  local at = tonumber(redis.call("HGET", KEYS[1], "claimed_at")) or 0
  if tonumber(ARGV[2]) - at < tonumber(ARGV[4]) then return 0 end
end
redis.call("HSET", KEYS[1], "claimed_at", ARGV[2], "claimed_by", ARGV[3])
return 1`;

const NOTE_MISSED = `local noted = redis.call("HGET", KEYS[1], "missed_fire")
if noted and tonumber(noted) >= tonumber(ARGV[1]) then return false end
redis.call("HSET", KEYS[1], "missed_fire", ARGV[1])
return noted or ""`;

// Registered once per client (infra/scripts.ts): each call sends the script's SHA1, not its text.
const CLAIM_SCRIPT = luaScript<number>("rotatorPolicyClaim", 1, CLAIM);
const RECORD_IF_ABSENT_SCRIPT = luaScript<number>("rotatorPolicyRecordIfAbsent", 1, RECORD_IF_ABSENT);
const MARK_DONE_SCRIPT = luaScript<number>("rotatorPolicyMarkDone", 1, MARK_DONE);
const HOLD_SCRIPT = luaScript<number>("rotatorPolicyHold", 1, HOLD);
const NOTE_MISSED_SCRIPT = luaScript<string | null>("rotatorPolicyNoteMissed", 1, NOTE_MISSED);

const TRIGGERS: readonly FireTrigger[] = ["schedule", "catch-up"];

/**
 * The policy state on Redis. `replica` names this scheduler in `claimed_by` (default: a random id
 * per call, so each process is its own replica).
 */
export function createPolicyState(
  redis: RedisClient,
  keys: Keys,
  now: () => number = Date.now,
  replica: string = randomUUID(),
): PolicyStatePort {
  const hold = async (policy: string, fireAt: number, grace: string) =>
    (await HOLD_SCRIPT.run(redis, [keys.policy(policy)], [fireAt, now(), replica, grace])) === 1;

  return {
    async lastFire(policy) {
      const value = await redis.hget(keys.policy(policy), "last_fire");
      return value === null ? undefined : Number(value);
    },
    async claim(policy, fireAt, trigger = "schedule") {
      const args = [String(fireAt), trigger, String(now()), replica];
      return (await CLAIM_SCRIPT.run(redis, [keys.policy(policy)], args)) === 1;
    },
    async recordIfAbsent(policy, fireAt) {
      return (await RECORD_IF_ABSENT_SCRIPT.run(redis, [keys.policy(policy)], [fireAt])) === 1;
    },
    async markDone(policy, fireAt) {
      await MARK_DONE_SCRIPT.run(redis, [keys.policy(policy)], [fireAt]);
    },
    async unfinished(policy) {
      const [fire, trigger, at, done] = await redis.hmget(
        keys.policy(policy),
        "claimed_fire",
        "claimed_trigger",
        "claimed_at",
        "done_fire",
      );
      if (fire === null || fire === undefined) return undefined;
      const fireAt = Number(fire);
      if (done !== null && done !== undefined && Number(done) >= fireAt) return undefined;
      return {
        fireAt,
        trigger: TRIGGERS.find((t) => t === trigger) ?? "schedule",
        claimedAt: Number(at ?? 0),
      };
    },
    renew: (policy, fireAt) => hold(policy, fireAt, ""),
    takeOver: (policy, fireAt, graceMs) => hold(policy, fireAt, String(Math.max(0, graceMs))),
    async noteMissed(policy, fireAt) {
      const noted = await NOTE_MISSED_SCRIPT.run(redis, [keys.policy(policy)], [fireAt]);
      if (noted === null) return undefined;
      return { previous: noted === "" ? undefined : Number(noted) };
    },
  };
}
