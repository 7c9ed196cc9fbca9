import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { startGraphSimulator, type GraphSimulator } from "../../src/graph-sim/simulator.js";
import {
  accountsYaml,
  assertPromise,
  openTestQueue,
  seeded,
  settleAll,
  type TestQueue,
} from "../helpers/faults.js";
import { deleteKeys, testRedis, uniquePrefix } from "../helpers/redis.js";
import { capturingLogger, startTestRotator, type LogLine } from "../helpers/rotator.js";

/**
 * The sweep of groups without link under load (issue 8): many rotations at once, Graph slow, the
 * sweep every 200 ms. A group is in the without-link index from its DELETE until its publish, so the
 * sweep sees rotations in flight; one that finished between the sweep's read of the index and its
 * look at the job must not count as finished without a link. No recovery rotation, no
 * `GROUP WITHOUT INVITE LINK` line, one published rotation per group.
 */
const TOKEN = "sweep-race-token-0123456789";
const GROUPS = 200;
let sim: GraphSimulator;
let redis: Redis;
let app: App | undefined;
let tq: TestQueue | undefined;
const cleanup: string[] = [];

beforeAll(async () => {
  sim = await startGraphSimulator({
    tokens: { [TOKEN]: { name: "acct", phoneNumberId: "3001" } },
    latencyMs: 50,
  });
  redis = testRedis();
});
afterEach(async () => {
  await tq?.close();
  await app?.stop();
  tq = undefined;
  app = undefined;
  sim.clearFaults();
  sim.clearCalls();
  await deleteKeys(redis, ...cleanup.splice(0));
});
afterAll(async () => {
  await sim.close();
  await redis.quit();
});

async function rotateAllUnderSweep(faultRate: number) {
  const prefix = uniquePrefix("sweep-race");
  const channel = `${prefix}-links`;
  cleanup.push(prefix, channel);
  const groups = Array.from({ length: GROUPS }, (_, i) => `SR${i + 1}`);
  for (const id of groups) sim.addGroup({ id, token: TOKEN, phoneNumberId: "3001" });
  const random = seeded(80_808);
  let injected = 0;
  for (const groupId of groups) {
    // Two calls per rotation: a group gets a 5xx on one of them with twice the rate.
    if (random() < faultRate * 2) {
      sim.inject({
        kind: "error",
        status: 500,
        code: 1,
        message: "An unknown error occurred",
        match: { groupId },
      });
      injected++;
    }
  }
  const lines: LogLine[] = [];
  app = await startTestRotator({
    graphUrl: sim.url,
    prefix,
    yaml: accountsYaml([{ name: "a", tokenEnv: "TOKEN_A", phone: "3001", groups }], channel),
    env: {
      TOKEN_A: TOKEN,
      ROTATOR_CONCURRENCY: "64",
      ROTATOR_ACCOUNT_PROBE_INTERVAL: "200ms",
      ROTATOR_THROTTLE_BASE: "50ms",
    },
    logger: capturingLogger(lines, "info"),
  });
  tq = await openTestQueue(redis, prefix);
  const jobs = await tq.rotate(
    groups.map((groupId) => ({ groupId, account: "a" })),
    channel,
  );
  const results = await settleAll(jobs, tq.events, 60_000);
  expect(results.filter((r) => r instanceof Error)).toEqual([]);
  // Two more sweeps after the last rotation finished.
  await new Promise((r) => setTimeout(r, 600));

  const linkless = lines.filter((l) => String(l.msg).includes("GROUP WITHOUT INVITE LINK"));
  expect(linkless.map((l) => l.msg)).toEqual([]);
  const recoveries = (
    await tq.queue.getJobs(["waiting", "active", "delayed", "completed", "failed", "prioritized"])
  )
    .filter((job) => job.id?.startsWith("recover-"))
    .map((job) => job.id);
  expect(recoveries).toEqual([]);
  const { published } = await assertPromise({
    redis,
    sim,
    keys: app.keys,
    channel,
    groups,
    secrets: [TOKEN],
    minPublished: 1,
  });
  expect(published).toBe(GROUPS);
  return { injected };
}

it("the sweep never takes a rotation that just finished for one that left its group without link", async () => {
  await rotateAllUnderSweep(0);
}, 120_000);

it("likewise with 5% of Graph calls answered 5xx", async () => {
  const { injected } = await rotateAllUnderSweep(0.05);
  expect(injected).toBeGreaterThan(10);
}, 120_000);
