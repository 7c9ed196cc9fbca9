import { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startOwnedRedis, type OwnedRedis } from "../../scripts/redis-server.js";
import { startGatewayFixture, type GatewayFixture } from "../helpers/gateway.js";

/**
 * A gateway whose Redis goes away: visits answer 503 with Retry-After within the rotation wait plus
 * a second (they never hang until Redis is back), and once Redis returns visits are redirected
 * again. A private redis-server (append-only, so the published links survive the restart).
 */
const ROTATION_WAIT_MS = 300;
/** The deadline of a visit's Redis work (the rotation wait + join.ts's REDIS_GRACE_MS), with slack. */
const BOUND_MS = ROTATION_WAIT_MS + 1_000 + 700;

let server: OwnedRedis;
let redis: Redis;
let fx: GatewayFixture;

beforeEach(async () => {
  server = await startOwnedRedis({ appendonly: true });
  redis = new Redis(server.url, { maxRetriesPerRequest: null });
  redis.on("error", () => undefined);
  fx = await startGatewayFixture({
    redis,
    name: "gw-outage",
    links: ["  - slug: solo", "    groups: [G1]"].join("\n"),
    groups: ["G1"],
    env: { REDIS_URL: server.url, GATEWAY_ROTATION_WAIT: `${ROTATION_WAIT_MS}ms` },
  });
});

afterEach(async () => {
  await fx.gateway.stop();
  redis.disconnect();
  await server.dispose();
});

/** One visit, timed; a visit that hangs fails the test after 8 s instead of the test's timeout. */
async function timedJoin(): Promise<{
  status: number;
  retryAfter: string | null;
  location: string | null;
  ms: number;
}> {
  const started = performance.now();
  const res = await fetch(`${fx.url}/join/solo`, { redirect: "manual", signal: AbortSignal.timeout(8_000) });
  return {
    status: res.status,
    retryAfter: res.headers.get("retry-after"),
    location: res.headers.get("location"),
    ms: performance.now() - started,
  };
}

describe("the gateway while Redis is down", () => {
  it("answers 503 + Retry-After promptly while Redis is stopped, and redirects again once it is back", async () => {
    const link = await fx.rotate("G1");
    expect((await timedJoin()).location).toBe(link);

    await server.stop();
    for (let i = 0; i < 3; i++) {
      const down = await timedJoin();
      expect(down.status).toBe(503);
      expect(Number(down.retryAfter)).toBeGreaterThan(0);
      expect(down.ms).toBeLessThan(BOUND_MS);
    }

    await server.start();
    const deadline = Date.now() + 15_000;
    let back = await timedJoin();
    while (back.status !== 302 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      back = await timedJoin();
    }
    expect(back.status).toBe(302);
    expect(back.location).toBe(link);
  }, 40_000);

  it("answers 503 when a connected Redis does not answer (paused), then redirects when it does", async () => {
    const link = await fx.rotate("G1");
    expect((await timedJoin()).location).toBe(link);
    const admin = new Redis(server.url);
    try {
      // Every client's commands wait 3 s: the gateway's connection stays up, its reads unanswered.
      await admin.call("CLIENT", "PAUSE", "3000", "ALL");
      const stalled = await timedJoin();
      expect(stalled.status).toBe(503);
      expect(Number(stalled.retryAfter)).toBeGreaterThan(0);
      expect(stalled.ms).toBeGreaterThanOrEqual(ROTATION_WAIT_MS);
      expect(stalled.ms).toBeLessThan(BOUND_MS);
      await admin.call("CLIENT", "UNPAUSE");
      expect((await timedJoin()).location).toBe(link);
    } finally {
      admin.disconnect();
    }
  }, 30_000);
});
