import type { Redis } from "ioredis";
import type { Keys } from "./keys.js";

/**
 * The scheduler's state of each policy in Redis (`keys.policy(name)`): the last fire that some
 * scheduler replica claimed. Claiming is what makes a fire happen exactly once across replicas:
 * `last_fire` only moves forward, atomically, and only the replica that moved it enqueues.
 */
export interface PolicyStatePort {
  /** The last claimed fire, epoch ms, or undefined when the policy never fired. */
  lastFire(policy: string): Promise<number | undefined>;
  /**
   * Claims `fireAt`: true when it is later than the last claimed fire (it becomes the last fire);
   * false when this or a later fire was already claimed, by any replica.
   */
  claim(policy: string, fireAt: number): Promise<boolean>;
  /** Records `fireAt` as the last fire only when the policy has none (a first-ever start). */
  recordIfAbsent(policy: string, fireAt: number): Promise<boolean>;
}

const CLAIM = `local last = tonumber(redis.call("HGET", KEYS[1], "last_fire"))
local fire = tonumber(ARGV[1])
if last and last >= fire then return 0 end
redis.call("HSET", KEYS[1], "last_fire", ARGV[1], "claimed_at", ARGV[2])
return 1`;

export function createPolicyState(redis: Redis, keys: Keys, now: () => number = Date.now): PolicyStatePort {
  return {
    async lastFire(policy) {
      const value = await redis.hget(keys.policy(policy), "last_fire");
      return value === null ? undefined : Number(value);
    },
    async claim(policy, fireAt) {
      const won = await redis.eval(CLAIM, 1, keys.policy(policy), String(fireAt), String(now()));
      return won === 1;
    },
    async recordIfAbsent(policy, fireAt) {
      return (await redis.hsetnx(keys.policy(policy), "last_fire", String(fireAt))) === 1;
    },
  };
}
