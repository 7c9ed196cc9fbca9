import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLinkStore } from "../../src/gateway/link-store.js";
import { readPoolMembers } from "../../src/groups/pools.js";
import { createLogger } from "../../src/infra/logger.js";
import { createRotationQueue } from "../../src/rotation/queue.js";
import { createFirer } from "../../src/schedule/fire.js";
import { startGatewayFixture, visit, type GatewayFixture } from "../helpers/gateway.js";
import { testRedis } from "../helpers/redis.js";

/**
 * A join link over a `groups: all` policy (`policy: pool`): its pool is the groups the policy
 * rotates. A manual `rotate` publishes `policy: null`; the group stays in the pool, in the running
 * gateway (it saw the policy's earlier message) and in one started after (the policy's last fire
 * listed it: `keys.policyGroups`).
 */
let redis: Redis;
let fx: GatewayFixture;

beforeEach(async () => {
  redis = testRedis();
  fx = await startGatewayFixture({
    redis,
    name: "gw-pool-policy",
    links: ["  - slug: crowd", "    policy: pool", "    capacity: 3"].join("\n"),
    groups: "all",
  });
});

afterEach(async () => {
  await fx.close();
  await redis.quit();
});

/** Fires the policy once, with Graph listing `groups` for its number (no worker: jobs stay queued). */
async function fire(groups: string[]) {
  const connection = redis.duplicate();
  const queue = createRotationQueue(fx.keys, connection);
  try {
    const firer = createFirer({
      redis,
      keys: fx.keys,
      queue,
      graph: { listGroups: async () => groups.map((id) => ({ id })) },
      config: () => fx.config,
      // The fake Graph needs no token.
      resolveAccount: (name) => ({
        name,
        token: "unused",
        graphApiVersion: "v23.0",
        phoneNumberId: "15550001",
      }),
      logger: createLogger("silent"),
      clock: { now: () => Date.now() },
    });
    await firer(fx.config.policies[0]!, Date.now(), "schedule");
  } finally {
    await queue.close();
    await connection.quit();
  }
}

const join = () => visit(`${fx.url}/join/crowd`);

describe("a link over a groups: all policy", () => {
  it("keeps a manually rotated group in its pool, in the running gateway and in a new one", async () => {
    await fire(["P1", "P2"]);
    expect(new Set(await redis.smembers(fx.keys.policyGroups("pool")))).toEqual(new Set(["P1", "P2"]));
    await fx.rotate("P1");
    await fx.rotate("P2");
    // P2 is full: every visit goes to P1, whose next link comes from a manual rotate.
    await redis.hset(fx.keys.groupParticipants, { P2: "3" });
    const manual = await fx.rotate("P1", undefined, null);
    for (let i = 0; i < 3; i++) {
      const res = await join();
      expect(res.status).toBe(302);
      expect(res.headers.get("location")).toBe(manual);
    }

    // A gateway started now has seen only the manual message of P1: the fire's list keeps it.
    const store = createLinkStore({
      redis: fx.gateway.context.redis,
      keys: fx.keys,
      links: fx.config.links,
      logger: createLogger("silent"),
    });
    try {
      await store.start();
      const link = fx.config.links[0]!;
      expect(store.members(link).map((m) => m.groupId)).toEqual(["P1", "P2"]);
      const views = await store.inspect(store.members(link));
      expect(views.find((v) => v.groupId === "P1")?.link).toBe(manual);
    } finally {
      await store.stop();
    }
    // `status` and the participant poll read the pool the same way.
    expect((await readPoolMembers(redis, fx.keys, fx.config.links[0]!)).map((m) => m.groupId)).toEqual([
      "P1",
      "P2",
    ]);
  });

  it("leaves out a manually rotated group the policy's last fire did not list", async () => {
    await fire(["P2"]);
    await fx.rotate("P2");
    await fx.rotate("X9", undefined, null);
    await new Promise((r) => setTimeout(r, 100));
    const link = fx.config.links[0]!;
    expect(fx.gateway.store.members(link).map((m) => m.groupId)).toEqual(["P2"]);
    expect((await readPoolMembers(redis, fx.keys, link)).map((m) => m.groupId)).toEqual(["P2"]);
  });
});
