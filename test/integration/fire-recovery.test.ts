import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { parseConfigText, resolveAccount, type ResolvedConfig } from "../../src/config/config.js";
import { createFirer, type FirePolicy } from "../../src/schedule/fire.js";
import { GraphError } from "../../src/graph/errors.js";
import type { GraphClient } from "../../src/graph/client.js";
import type { RotationJobData } from "../../src/core/interfaces.js";
import type { Keys } from "../../src/core/keys.js";
import { createLogger } from "../../src/infra/logger.js";
import { createMetrics, type Metrics } from "../../src/infra/metrics.js";
import { createPolicyState } from "../../src/schedule/policy-state.js";
import { scheduledRotationId } from "../../src/rotation/queue.js";
import { createScheduler, type Scheduler } from "../../src/schedule/scheduler.js";
import { redisTest, rotationQueue } from "../helpers/fixture.js";
import { until } from "../helpers/until.js";

/**
 * A claimed fire that fails or is lost, against a real Redis and queue with a controlled clock:
 * the claiming replica retries it; a fire claimed and never done (a crash) is run again by another
 * replica, with the same rotation ids, so each group is enqueued once.
 */
const it = redisTest();
let redis: Redis;
const HOUR = 3_600_000;
const F0 = Date.parse("2026-05-04T10:00:00Z");
const GROUPS = ["A", "B", "C"];
const ENV = { WHATSAPP_ACCESS_TOKEN: "recovery-token-1" };
let keys: Keys;
let queue: Queue<RotationJobData>;
let now = F0;
const clock = { now: () => now };
const cleanups: (() => Promise<unknown>)[] = [];

const configText = [
  "accounts:",
  '  default: { token_env: WHATSAPP_ACCESS_TOKEN, phone_number_id: "1555" }',
  "policies:",
  "  - name: hourly",
  '    schedule: "0 * * * *"',
  "    groups: all",
].join("\n");
const config: ResolvedConfig = parseConfigText(configText, "fire-recovery-test.yaml", ENV, {
  graphApiVersion: "v23.0",
});
const hourly = config.policies[0]!;

const transient = () =>
  new GraphError({
    code: "GRAPH_TRANSIENT",
    action: "retry",
    scope: "request",
    operation: "list-groups",
    detail: "Service temporarily unavailable",
    status: 503,
  });

/** A Graph whose list-groups fails `failures` times, then lists GROUPS. */
function flakyGraph(failures: number) {
  const graph = {
    calls: 0,
    listGroups: () => {
      graph.calls++;
      if (graph.calls <= failures) return Promise.reject(transient());
      return Promise.resolve(GROUPS.map((id) => ({ id })));
    },
  };
  return graph;
}

interface Replica {
  scheduler: Scheduler;
  fire: FirePolicy;
  metrics: Metrics;
  logs: string[];
  connection: Redis;
}

/** One scheduler replica: its own Redis connection, policy state (replica id) and log. */
function replica(graph: Pick<GraphClient, "listGroups"> = flakyGraph(0), cfg = config): Replica {
  const logs: string[] = [];
  const logger = createLogger("info", { write: (line: string) => void logs.push(line) });
  const connection = redis.duplicate();
  const metrics = createMetrics({ collectDefault: false });
  const fire = createFirer({
    redis: connection,
    keys,
    queue,
    graph: graph as GraphClient,
    config: () => cfg,
    resolveAccount: (name) => resolveAccount(cfg, name),
    logger,
    clock,
    metrics,
  });
  const scheduler = createScheduler({
    config: () => cfg,
    state: createPolicyState(connection, keys, clock.now),
    fire,
    logger,
    clock,
    retryBaseMs: 10,
    recoverEveryMs: 20,
    metrics,
  });
  cleanups.push(async () => {
    await scheduler.stop();
    await connection.quit();
  });
  return { scheduler, fire, metrics, logs, connection };
}

const state = () => createPolicyState(redis, keys, clock.now);
const jobIds = async () => (await queue.getJobs(["delayed", "waiting"])).map((j) => j.id).sort();
const idsOf = (fireAt: number, groups = GROUPS) =>
  groups.map((g) => scheduledRotationId("hourly", fireAt, g)).sort();

it.beforeEach(({ rig }) => {
  redis = rig.redis;
  ({ keys } = rig.prefix("fire-recovery"));
  queue = rotationQueue(rig, keys);
  now = F0;
  rig.defer(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });
});

describe("a failed fire is retried by the replica that claimed it", () => {
  it("list-groups fails twice, then works: the fire's groups are enqueued once and the fire is done", async () => {
    const graph = flakyGraph(2);
    const r = replica(graph);
    now = F0 + 500;
    await expect(r.scheduler.handle(hourly, F0)).rejects.toMatchObject({ code: "GRAPH_TRANSIENT" });
    await until(async () => (await state().unfinished("hourly")) === undefined);
    expect(graph.calls).toBe(3);
    expect(await jobIds()).toEqual(idsOf(F0));
    expect((await queue.getJob(idsOf(F0)[0]!))?.data).toMatchObject({ trigger: "schedule", fireAt: F0 });
    expect(await r.metrics.text()).toContain('wa_rotator_fire_failures_total{policy="hourly"} 2');
    expect(r.logs.some((l) => l.includes("failed fire enqueued on retry"))).toBe(true);
  });

  it("gives up loudly once the policy's next fire is due; the fire stays unfinished", async () => {
    const graph = flakyGraph(Infinity);
    const r = replica(graph);
    now = F0 + HOUR - 25; // retries after 10 ms and 20 ms still end before the next fire; 40 ms would not
    await expect(r.scheduler.handle(hourly, F0)).rejects.toThrow();
    await until(() => r.logs.some((l) => l.includes("FIRE LOST")));
    expect(graph.calls).toBe(3);
    const lost = JSON.parse(r.logs.find((l) => l.includes("FIRE LOST"))!) as Record<string, unknown>;
    expect(lost).toMatchObject({ level: "error", policy: "hourly", attempts: 3 });
    expect(await queue.count()).toBe(0);
    expect(await state().unfinished("hourly")).toMatchObject({ fireAt: F0 });
    expect(await r.metrics.text()).toContain('wa_rotator_fire_failures_total{policy="hourly"} 3');
    expect(await r.metrics.text()).toContain(
      'wa_rotator_missed_fires_total{policy="hourly",reason="failed"} 1',
    );
  });

  it("a catch-up fire that fails at start is retried in the background, with its own trigger", async () => {
    await state().claim("hourly", F0 - HOUR);
    await state().markDone("hourly", F0 - HOUR);
    now = F0 + 60_000; // missed F0
    const r = replica(flakyGraph(1));
    await r.scheduler.start(); // does not wait for the retries
    await until(async () => (await state().unfinished("hourly")) === undefined);
    expect(await jobIds()).toEqual(idsOf(F0));
    expect((await queue.getJob(idsOf(F0)[0]!))?.data.trigger).toBe("catch-up");
  });
});

describe("a fire claimed and never done (a crash) is run again by another replica", () => {
  /** Replica "crashed" claims `fireAt` and enqueues only `enqueued` of its groups, then dies. */
  async function crashAfterClaim(fireAt: number, enqueued: string[]) {
    expect(await createPolicyState(redis, keys, clock.now, "crashed").claim("hourly", fireAt)).toBe(true);
    if (enqueued.length > 0) {
      await replica().fire({ ...hourly, groups: enqueued }, fireAt, "schedule");
    }
  }

  it("replicas starting together after the grace period run it once; each group is enqueued once", async () => {
    now = F0 + 1_000;
    await crashAfterClaim(F0, ["B"]); // it had enqueued B before dying
    const bJob = await queue.getJob(idsOf(F0, ["B"])[0]!);
    now = F0 + 2 * 60_000; // the claim is 2 minutes old: past the 60 s grace, within catch_up (1 h)
    const replicas = [replica(), replica(), replica()];
    await Promise.all(replicas.map((r) => r.scheduler.start()));
    await until(async () => (await state().unfinished("hourly")) === undefined);
    expect(await jobIds()).toEqual(idsOf(F0));
    expect((await queue.getJob(idsOf(F0, ["B"])[0]!))?.timestamp).toBe(bJob?.timestamp);
    const reruns = replicas.flatMap((r) => r.logs).filter((l) => l.includes("was never enqueued"));
    expect(reruns).toHaveLength(1);
    expect(JSON.parse(reruns[0]!)).toMatchObject({ trigger: "schedule", fireAt: new Date(F0).toISOString() });
    // A later start finds nothing to do.
    await replica().scheduler.start();
    expect(await jobIds()).toEqual(idsOf(F0));
  });

  it("within the grace period a start leaves it alone; the periodic check runs it once the claim is stale", async () => {
    now = F0 + 1_000;
    await crashAfterClaim(F0, []);
    now = F0 + 11_000;
    const r = replica();
    await r.scheduler.start();
    await new Promise((resolve) => setTimeout(resolve, 60)); // a few periodic checks, all in grace
    expect(await queue.count()).toBe(0);
    now = F0 + 61_000;
    await until(async () => (await queue.count()) === 3);
    await until(async () => (await state().unfinished("hourly")) === undefined);
    expect(await jobIds()).toEqual(idsOf(F0));
  });

  it.each(["0", "30s"])(
    "is run again with catch_up %s, shorter than the grace: catch_up bounds downtime, not repair",
    async (catchUp) => {
      const cfg = parseConfigText(
        configText.replace("    groups: all", `    catch_up: ${catchUp}\n    groups: all`),
        "fire-recovery-test.yaml",
        ENV,
        { graphApiVersion: "v23.0" },
      );
      expect(cfg.policies[0]!.catchUpMs).toBe(catchUp === "0" ? 0 : 30_000);
      now = F0 + 1_000;
      await crashAfterClaim(F0, []);
      now = F0 + 20 * 60_000; // 20 minutes late: past the 60 s grace and past catch_up
      const r = replica(flakyGraph(0), cfg);
      await r.scheduler.start();
      await until(async () => (await state().unfinished("hourly")) === undefined);
      expect(await jobIds()).toEqual(idsOf(F0));
      expect(r.logs.filter((l) => l.includes("was never enqueued"))).toHaveLength(1);
    },
  );

  it("is not run again once a later fire is due: that one is caught up instead", async () => {
    now = F0 + 1_000;
    await crashAfterClaim(F0, []);
    now = F0 + HOUR + 5_000; // F0 + 1 h is due: catch-up claims and runs that one instead
    const r = replica();
    await r.scheduler.start();
    await until(async () => (await state().unfinished("hourly")) === undefined);
    expect(await jobIds()).toEqual(idsOf(F0 + HOUR));
  });
});
