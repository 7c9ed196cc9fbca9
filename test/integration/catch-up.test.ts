import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { catchUp } from "../../src/schedule/catch-up.js";
import { parseConfigText, resolveAccount, type ResolvedConfig } from "../../src/config/config.js";
import { createFirer, type FirePolicy } from "../../src/schedule/fire.js";
import type { GraphClient } from "../../src/graph/client.js";
import type { RotationJobData } from "../../src/core/interfaces.js";
import type { Keys } from "../../src/core/keys.js";
import { createLogger } from "../../src/infra/logger.js";
import { createMetrics } from "../../src/infra/metrics.js";
import { createPolicyState, type PolicyStatePort } from "../../src/schedule/policy-state.js";
import { scheduledRotationId } from "../../src/rotation/queue.js";
import { createScheduler } from "../../src/schedule/scheduler.js";
import { redisTest, rotationQueue } from "../helpers/fixture.js";

/** Catch-up on start, with a controlled clock, against a real Redis and queue. */
const it = redisTest();
const logger = createLogger("silent");
let redis: Redis;
let keys: Keys;
let queue: Queue<RotationJobData>;
let state: PolicyStatePort;

const HOUR = 3_600_000;
const F0 = Date.parse("2026-05-04T10:00:00Z");
const config = (catchUp?: string): ResolvedConfig =>
  parseConfigText(
    [
      "policies:",
      "  - name: hourly",
      '    schedule: "0 * * * *"',
      "    timezone: Europe/Berlin",
      ...(catchUp === undefined ? [] : [`    catch_up: ${catchUp}`]),
      '    groups: ["A", "B", "C"]',
    ].join("\n"),
    "catch-up-test.yaml",
    {},
    { graphApiVersion: "v23.0" },
  );

function firer(cfg: ResolvedConfig, now: number): FirePolicy {
  return createFirer({
    redis,
    keys,
    queue,
    graph: {} as GraphClient,
    config: () => cfg,
    resolveAccount: (name) => resolveAccount(cfg, name),
    logger,
    clock: { now: () => now },
  });
}

/**
 * Starts and stops a scheduler whose clock says `now`; returns the jobs in the queue and the fires
 * this start ran (the queue alone cannot tell: a fire run again enqueues the same job ids).
 */
async function startAt(cfg: ResolvedConfig, now: number) {
  const fires: { fireAt: number; trigger: string }[] = [];
  const fire = firer(cfg, now);
  const scheduler = createScheduler({
    config: () => cfg,
    state,
    fire: (policy, fireAt, trigger) => {
      fires.push({ fireAt, trigger });
      return fire(policy, fireAt, trigger);
    },
    logger,
    clock: { now: () => now },
  });
  await scheduler.start();
  await scheduler.stop();
  return Object.assign(await queue.getJobs(["delayed", "waiting"]), { fires });
}

/** A fire some replica claimed and finished. */
async function fired(fireAt: number) {
  await state.claim("hourly", fireAt);
  await state.markDone("hourly", fireAt);
}

it.beforeEach(({ rig }) => {
  redis = rig.redis;
  ({ keys } = rig.prefix("catch-up"));
  queue = rotationQueue(rig, keys);
  state = createPolicyState(redis, keys);
});

describe("catch-up", () => {
  it("a first-ever start catches up nothing and records the newest past fire", async () => {
    const jobs = await startAt(config(), F0 + 20 * 60_000);
    expect(jobs).toHaveLength(0);
    expect(await state.lastFire("hourly")).toBe(F0);
  });

  it("after a stop across three fires, rotates each group once with trigger catch-up", async () => {
    await fired(F0); // the last fire before the stop
    const now = F0 + 3 * HOUR + 10 * 60_000; // missed 11:00, 12:00, 13:00
    const jobs = await startAt(config(), now);
    expect(jobs.map((j) => j.data.groupId).sort()).toEqual(["A", "B", "C"]);
    for (const job of jobs) {
      expect(job.data).toMatchObject({ trigger: "catch-up", fireAt: F0 + 3 * HOUR, policy: "hourly" });
      expect(job.id).toBe(scheduledRotationId("hourly", F0 + 3 * HOUR, job.data.groupId));
    }
    expect(jobs.fires).toEqual([{ fireAt: F0 + 3 * HOUR, trigger: "catch-up" }]);
    expect(await state.lastFire("hourly")).toBe(F0 + 3 * HOUR);
    // A second start at the same moment has nothing left to catch up: it runs no fire (the queue
    // would show the same 3 jobs either way, as a repeated fire's job ids are deduplicated).
    const again = await startAt(config(), now);
    expect(again.fires).toEqual([]);
    expect(again).toHaveLength(3);
    const cfg = config();
    expect(await catchUp(cfg.policies[0]!, now, { state, fire: firer(cfg, now), logger })).toEqual({
      kind: "up-to-date",
    });
  });

  it("two replicas starting together catch up once", async () => {
    await fired(F0);
    const now = F0 + HOUR + 60_000;
    const cfg = config();
    const connections = [0, 1, 2].map(() => redis.duplicate());
    const outcomes = await Promise.all(
      connections.map((connection) =>
        catchUp(cfg.policies[0]!, now, {
          state: createPolicyState(connection, keys),
          fire: firer(cfg, now),
          logger,
        }),
      ),
    );
    await Promise.all(connections.map((c) => c.quit()));
    // The others lost the claim, or read the winner's last fire first: done (up to date), or still
    // claimed and running (in grace: left to its claimer).
    expect(outcomes.filter((o) => o.kind === "caught-up")).toHaveLength(1);
    for (const o of outcomes)
      expect(["caught-up", "claimed-elsewhere", "up-to-date", "in-grace"]).toContain(o.kind);
    expect(await queue.count()).toBe(3);
  });

  it("does nothing when the newest missed fire is older than catch_up, or catch_up is 0", async () => {
    await fired(F0);
    const cfg = config("30m");
    const late = F0 + 2 * HOUR + 40 * 60_000; // newest missed: 12:00, 40 minutes ago
    expect(await catchUp(cfg.policies[0]!, late, { state, fire: firer(cfg, late), logger })).toMatchObject({
      kind: "too-old",
      missed: 2,
    });
    const off = config("0");
    const soon = F0 + HOUR + 1000;
    expect(await catchUp(off.policies[0]!, soon, { state, fire: firer(off, soon), logger })).toMatchObject({
      kind: "off",
      missed: 1,
    });
    expect(await queue.count()).toBe(0);
    expect(await state.lastFire("hourly")).toBe(F0);
  });

  it("counts missed fires it does not run in wa_rotator_missed_fires_total, each once", async () => {
    await fired(F0);
    const metrics = createMetrics({ collectDefault: false });
    const missed = async () =>
      Object.fromEntries(
        (await metrics.registry.getSingleMetric("wa_rotator_missed_fires_total")!.get()).values.map((v) => [
          `${v.labels.policy}/${v.labels.reason}`,
          v.value,
        ]),
      );
    const run = (cfg: ResolvedConfig, now: number, connection = redis) =>
      catchUp(cfg.policies[0]!, now, {
        state: createPolicyState(connection, keys),
        fire: firer(cfg, now),
        logger,
        metrics,
      });
    // Down over 11:00 and 12:00, started at 12:40 with catch_up 30m: both are too old.
    const late = F0 + 2 * HOUR + 40 * 60_000;
    expect(await run(config("30m"), late)).toMatchObject({ kind: "too-old", missed: 2 });
    expect(await missed()).toEqual({ "hourly/too-old": 2 });
    // Three replicas starting at once, then a restart: the same fires are not counted again.
    const connections = [0, 1, 2].map(() => redis.duplicate());
    await Promise.all(connections.map((c) => run(config("30m"), late, c)));
    await Promise.all(connections.map((c) => c.quit()));
    await run(config("30m"), late);
    expect(await missed()).toEqual({ "hourly/too-old": 2 });
    // Still down at 13:05 with catch-up off: only 13:00 is new.
    expect(await run(config("0"), F0 + 3 * HOUR + 5 * 60_000)).toMatchObject({ kind: "off", missed: 3 });
    expect(await missed()).toEqual({ "hourly/too-old": 2, "hourly/catch-up-off": 1 });
    expect(await queue.count()).toBe(0);
    // A fire that is caught up is not missed.
    expect(await run(config(), F0 + 4 * HOUR + 60_000)).toMatchObject({ kind: "caught-up" });
    expect(await missed()).toEqual({ "hourly/too-old": 2, "hourly/catch-up-off": 1 });
  });

  it("does nothing when no fire was missed", async () => {
    await fired(F0);
    const now = F0 + 59 * 60_000;
    const cfg = config();
    expect(await catchUp(cfg.policies[0]!, now, { state, fire: firer(cfg, now), logger })).toEqual({
      kind: "up-to-date",
    });
  });
});
