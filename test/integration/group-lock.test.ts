import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LockLostError } from "../../src/core/errors.js";
import { createGroupLock, holdLock, type GroupLock } from "../../src/rotation/group-lock.js";
import { createKeys } from "../../src/core/keys.js";
import { deleteKeys, testRedis, uniquePrefix } from "../helpers/redis.js";

const redis = testRedis();
const prefix = uniquePrefix("lock");
const lock = createGroupLock(redis, createKeys(prefix), 300);
afterAll(async () => {
  await deleteKeys(redis, prefix);
  await redis.quit();
});

it("excludes other owners, and a repeated acquire by the owner succeeds", async () => {
  expect(await lock.acquire("G", "a")).toBe(true);
  expect(await lock.acquire("G", "a")).toBe(true); // e.g. a resent SET NX whose reply was lost
  expect(await lock.acquire("G", "b")).toBe(false);
  await lock.release("G", "b"); // not b's: no effect
  expect(await lock.acquire("G", "b")).toBe(false);
  await lock.release("G", "a");
  expect(await lock.acquire("G", "b")).toBe(true);
  await lock.release("G", "b");
});

it("a crashed owner's lock expires; a held lock is kept alive and a lost one aborts", async () => {
  expect(await lock.acquire("H", "dead")).toBe(true);
  await new Promise((r) => setTimeout(r, 400));
  expect(await lock.acquire("H", "alive")).toBe(true);

  const held = holdLock(lock, "H", "alive");
  await new Promise((r) => setTimeout(r, 700)); // > 2 ttl: only the heartbeat keeps it
  expect(await redis.get(createKeys(prefix).groupLock("H"))).toBe("alive");
  expect(held.signal.aborted).toBe(false);

  await redis.set(createKeys(prefix).groupLock("H"), "thief");
  await new Promise((r) => setTimeout(r, 250));
  expect(held.signal.aborted).toBe(true);
  held.stop();
});

describe("holding a lock while Redis does not answer", () => {
  // A lock whose extensions hang stands for the shared connection during an outage: it queues
  // commands (maxRetriesPerRequest: null) and never fails them.
  const fakeLock = (extend: GroupLock["extend"]): GroupLock & { calls: () => number } => {
    let calls = 0;
    return {
      ttlMs: 300,
      acquire: async () => true,
      extend: (groupId, owner) => (calls++, extend(groupId, owner)),
      release: async () => undefined,
      calls: () => calls,
    };
  };
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it("aborts before the lock can expire when extensions never answer, and stops extending", async () => {
    const lock = fakeLock(() => new Promise<boolean>(() => undefined));
    const held = holdLock(lock, "G", "me");
    await vi.advanceTimersByTimeAsync(220);
    expect(held.signal.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(10); // ttl - ttl/4 = 225 ms after the acquire: < ttl
    expect(held.signal.aborted).toBe(true);
    expect(held.signal.reason).toBeInstanceOf(LockLostError);
    expect(held.signal.reason).toMatchObject({ code: "E_LOCK_LOST" });
    const calls = lock.calls();
    expect(calls).toBeGreaterThanOrEqual(2);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(lock.calls()).toBe(calls);
    held.stop();
  });

  it("aborts in time when every extension fails", async () => {
    const lock = fakeLock(async () => {
      throw new Error("Connection is closed.");
    });
    const held = holdLock(lock, "G", "me");
    await vi.advanceTimersByTimeAsync(230);
    expect(held.signal.aborted).toBe(true);
    held.stop();
  });

  it("counts the deadline from the last extension that answered in time", async () => {
    let answer = true;
    const lock = fakeLock(() => (answer ? Promise.resolve(true) : new Promise<boolean>(() => undefined)));
    const held = holdLock(lock, "G", "me");
    await vi.advanceTimersByTimeAsync(3_000); // healthy: kept alive far beyond the ttl
    expect(held.signal.aborted).toBe(false);
    answer = false; // the last good extension was sent at 3000 ms
    await vi.advanceTimersByTimeAsync(220);
    expect(held.signal.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(10);
    expect(held.signal.aborted).toBe(true);
    held.stop();
  });

  it("aborts at once when an extension finds the lock taken", async () => {
    const held = holdLock(
      fakeLock(async () => false),
      "G",
      "me",
    );
    await vi.advanceTimersByTimeAsync(100);
    expect(held.signal.aborted).toBe(true);
    expect(held.signal.reason).toBeInstanceOf(LockLostError);
    held.stop();
  });
});
