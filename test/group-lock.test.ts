import { afterAll, expect, it } from "vitest";
import { createGroupLock, holdLock } from "../src/group-lock.js";
import { createKeys } from "../src/keys.js";
import { deleteKeys, testRedis, uniquePrefix } from "./helpers/redis.js";

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
