import type { RedisClient } from "../infra/redis.js";
import { LockLostError } from "../core/errors.js";
import type { Keys } from "../core/keys.js";
import { luaScript } from "../infra/scripts.js";

/**
 * The per-group mutual-exclusion lock: two rotations of one group never run at the same time,
 * across all processes. BullMQ delivers a job at least once and has no per-key exclusion, so the
 * rotation job takes this lock (SET NX PX with an owner token) for the whole saga, extends it on a
 * heartbeat, and releases it only if it still owns it. A crashed owner's lock expires after `ttlMs`.
 */
export interface GroupLock {
  /** Takes the lock; false if someone else holds it. */
  acquire(groupId: string, owner: string): Promise<boolean>;
  /** Extends the lock if `owner` still holds it; false if it was lost. */
  extend(groupId: string, owner: string): Promise<boolean>;
  /** Releases the lock if `owner` still holds it. */
  release(groupId: string, owner: string): Promise<void>;
  readonly ttlMs: number;
}

// Owning the lock already counts as taking it: a SET NX whose reply was lost and that the client
// resent must not find its own lock and report the group busy.
const ACQUIRE = luaScript<number>(
  "rotatorLockAcquire",
  1,
  `if redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2], "NX") then return 1 end
if redis.call("GET", KEYS[1]) == ARGV[1] then redis.call("PEXPIRE", KEYS[1], ARGV[2]) return 1 end
return 0`,
);
const EXTEND = luaScript<number>(
  "rotatorLockExtend",
  1,
  `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) else return 0 end`,
);
const RELEASE = luaScript<number>(
  "rotatorLockRelease",
  1,
  `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`,
);

export function createGroupLock(redis: RedisClient, keys: Keys, ttlMs = 15_000): GroupLock {
  return {
    ttlMs,
    async acquire(groupId, owner) {
      return (await ACQUIRE.run(redis, [keys.groupLock(groupId)], [owner, ttlMs])) === 1;
    },
    async extend(groupId, owner) {
      return (await EXTEND.run(redis, [keys.groupLock(groupId)], [owner, ttlMs])) === 1;
    },
    async release(groupId, owner) {
      await RELEASE.run(redis, [keys.groupLock(groupId)], [owner]);
    },
  };
}

/**
 * Keeps a held lock alive every ttl/3 until stopped. `signal` aborts, so the saga stops before its
 * next step instead of racing a new owner, when an extension finds the lock lost, or when no
 * extension has succeeded for ttl - ttl/4: before the lock can expire in Redis, not after. Each
 * extension is given ttl/3 to answer, since a shared connection may queue commands for as long
 * as Redis is unreachable. (An event-loop stall can delay even this; the fenced writes cover it.)
 *
 * `acquiredAt` is when the acquire was sent, epoch ms: the lock expires no sooner than ttl later.
 */
export function holdLock(
  lock: GroupLock,
  groupId: string,
  owner: string,
  acquiredAt = Date.now(),
): { signal: AbortSignal; stop(): void } {
  const controller = new AbortController();
  const periodMs = Math.max(50, Math.floor(lock.ttlMs / 3));
  const marginMs = Math.floor(lock.ttlMs / 4);
  let stopped = false;
  let deadline: NodeJS.Timeout | undefined;

  const stop = () => {
    stopped = true;
    clearInterval(heartbeat);
    clearTimeout(deadline);
  };
  const giveUp = (reason: LockLostError) => {
    stop();
    controller.abort(reason);
  };
  // The lock lives at least ttl from when the last successful extension (or the acquire) was sent.
  const armDeadline = (sentAt: number) => {
    clearTimeout(deadline);
    const ms = Math.max(0, sentAt + lock.ttlMs - marginMs - Date.now());
    deadline = setTimeout(() => giveUp(new LockLostError(groupId, "could not extend the lock in time")), ms);
    deadline.unref();
  };
  const beat = () => {
    const sentAt = Date.now();
    let timeout: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timeout = setTimeout(() => resolve("timeout"), periodMs);
      timeout.unref();
    });
    Promise.race([lock.extend(groupId, owner), timedOut])
      .then(
        (result) => {
          if (stopped) return;
          if (result === true) armDeadline(sentAt);
          else if (result === false) giveUp(new LockLostError(groupId));
          // "timeout": try again on the next beat; the deadline decides when to give up
        },
        () => undefined, // Redis failed the command: the same, the deadline decides
      )
      .finally(() => clearTimeout(timeout));
  };

  armDeadline(acquiredAt);
  const heartbeat = setInterval(beat, periodMs);
  heartbeat.unref();
  return { signal: controller.signal, stop };
}
