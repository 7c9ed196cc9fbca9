import { Redis } from "ioredis";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import type { GraphSimulator } from "../../src/graph-sim/simulator.js";
import { spawnCli, type CliProcess } from "../helpers/cli.js";
import { assertPromise, openTestQueue } from "../helpers/faults.js";
import { simTest, type Rig } from "../helpers/fixture.js";
import { testRedisUrl } from "../helpers/redis.js";
import { freePort, startOwnedRedis } from "../../scripts/redis-server.js";
import { messageOf, policyYaml, TEST_TOKEN } from "../helpers/rotator.js";

/**
 * Worker processes under crashes, Redis outages and signals: a worker SIGKILLed between DELETE
 * and POST, a Redis restart mid-rotation (AOF keeps the queue), SIGTERM with a rotation in flight.
 * Locks are shortened (job lock 2 s, stalled check 1 s, group lock 1.5 s) so recovery takes
 * seconds; `bench/recovery.ts` measures it with the defaults.
 */
const it = simTest({ tokens: { [TEST_TOKEN]: { name: "default" } } });

const FAST_LOCKS = {
  ROTATOR_JOB_LOCK: "2s",
  ROTATOR_STALLED_INTERVAL: "1s",
  ROTATOR_GROUP_LOCK_TTL: "1500ms",
};

/**
 * A prefix, a policy file on disk, the worker's environment, and `worker` to spawn one; the file
 * and the processes go after the test.
 */
function setup(rig: Rig, name: string, groups: string[]) {
  const { prefix, channel } = rig.prefix(name);
  const dir = mkdtempSync(join(tmpdir(), "wa-rotator-faults-"));
  rig.defer(async () => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, `${prefix}.yaml`);
  writeFileSync(config, policyYaml(groups, channel));
  const env = {
    REDIS_URL: testRedisUrl(),
    ROTATOR_PREFIX: prefix,
    ROTATOR_CONFIG: config,
    GRAPH_API_BASE_URL: rig.sim.url,
    WHATSAPP_ACCESS_TOKEN: TEST_TOKEN,
    HEALTH_PORT: "0",
    ...FAST_LOCKS,
  };
  const worker = (workerEnv: Record<string, string>): CliProcess => {
    const proc = spawnCli(["worker"], workerEnv);
    rig.defer(async () => {
      proc.kill("SIGKILL");
      await proc.exited;
    });
    return proc;
  };
  return { prefix, channel, env, worker };
}

/** Nothing a process wrote may hold the token or an unhandled rejection. */
function assertCleanOutput(...processes: CliProcess[]) {
  for (const p of processes) {
    const output = p.stdout() + p.stderr();
    expect(output).not.toContain(TEST_TOKEN);
    expect(output).not.toMatch(/Unhandled|unhandledRejection/i);
  }
}

const waitReady = (p: CliProcess) => p.waitFor('"service":"worker"', 15_000);
const hungPost = (sim: GraphSimulator, groupId: string) => () =>
  sim.calls.some((c) => c.groupId === groupId && c.method === "POST" && c.status === undefined);

it("a worker killed between DELETE and POST: another resumes the rotation at POST within seconds", async ({
  rig,
}) => {
  const { sim, redis } = rig;
  const { prefix, channel, env, worker } = setup(rig, "kill", ["K1", "K2"]);
  sim.inject({ kind: "hang", match: { groupId: "K1", method: "POST" } });
  const first = worker(env);
  await waitReady(first);
  const tq = await rig.queue(prefix);
  const [job, other] = await tq.rotate(
    ["K1", "K2"].map((g) => ({ groupId: g, account: "default" })),
    channel,
  );
  await expect.poll(hungPost(sim, "K1"), { timeout: 10_000 }).toBe(true);
  const second = worker(env);
  await waitReady(second);

  first.kill("SIGKILL");
  const killedAt = Date.now();
  const message = await messageOf(redis, await job!.waitUntilFinished(tq.events, 20_000));
  const resumedPost = sim.calls.find((c) => c.groupId === "K1" && c.method === "POST" && c.status === 200);
  const recoveryMs = resumedPost!.at - killedAt;
  await other!.waitUntilFinished(tq.events, 10_000);

  expect(sim.calls.filter((c) => c.groupId === "K1").map((c) => `${c.method} ${c.status ?? "hung"}`)).toEqual(
    ["DELETE 200", "POST hung", "POST 200"],
  );
  expect(message).toMatchObject({ group_id: "K1", sequence: 1, invite_link: sim.group("K1")?.link });
  expect(second.stdout()).toMatch(/"step":"create".*"msg":"rotation resumes"/);
  expect(recoveryMs).toBeLessThan(10_000);
  await assertPromise({ redis, sim, keys: tq.keys, channel, groups: ["K1", "K2"], secrets: [TEST_TOKEN] });
  assertCleanOutput(first, second);
  console.log(
    `[figures] kill between DELETE and POST: resumed at POST ${recoveryMs} ms after SIGKILL (fast locks)`,
  );
});

// Every stage has its own bound, and their sum (about 45 s) stays below the test's timeout, so a
// slow run fails naming the stage that was slow instead of timing out as a whole.
it(
  "survives a Redis restart mid-rotation: readiness reports it, work resumes, no unhandled rejection",
  {
    timeout: 60_000,
  },
  async ({ rig }) => {
    const { sim } = rig;
    const owned = await startOwnedRedis({ appendonly: true });
    rig.defer(() => owned.dispose());
    const groups = ["R1", "R2", "R3", "R4", "R5", "R6"];
    const { prefix, channel, env, worker } = setup(rig, "redis-restart", groups);
    const healthPort = await freePort();
    for (const groupId of groups)
      sim.inject({ kind: "latency", ms: 400, match: { groupId }, times: Infinity });
    // A call in flight when its lock is lost (the outage outlasts the 1.5 s group lock) is aborted
    // and left unsure: its group's next publish waits ROTATOR_UNSURE_SETTLE (15 s, for Graph) for it
    // to land. This simulator answers within 400 ms, so 1 s is the truth here, and the 10 s bound
    // below is about Redis, whichever call the outage happens to cut.
    const proc = worker({
      ...env,
      REDIS_URL: owned.url,
      HEALTH_PORT: String(healthPort),
      ROTATOR_UNSURE_SETTLE: "1s",
    });
    await waitReady(proc);
    const ready = async () =>
      (
        await fetch(`http://127.0.0.1:${healthPort}/readyz`, { signal: AbortSignal.timeout(1_000) }).catch(
          () => undefined,
        )
      )?.status ?? 0;
    expect(await ready(), "ready before the outage").toBe(200);

    const client = new Redis(owned.url, { maxRetriesPerRequest: null });
    client.on("error", () => {});
    try {
      const tq = await openTestQueue(client, prefix);
      rig.defer(() => tq.close());
      const jobs = await tq.rotate(
        groups.map((g) => ({ groupId: g, account: "default" })),
        channel,
      );
      await expect
        .poll(() => sim.calls.some((c) => c.method === "DELETE"), {
          timeout: 5_000,
          message: "a rotation reached DELETE before the outage",
        })
        .toBe(true);
      await owned.kill();
      const downAt = Date.now();
      await expect.poll(ready, { timeout: 5_000, message: "readiness reports Redis down" }).toBe(503);
      await new Promise((r) => setTimeout(r, 2_500));
      await owned.start();
      const upAt = Date.now();
      await expect.poll(ready, { timeout: 5_000, message: "readiness back after Redis restarted" }).toBe(200);
      // BullMQ waits runRetryDelay (1 s here, 15 s by default) after a Redis error before it fetches
      // again; job locks (2 s) and the stalled check (1 s) bound the rest.
      await expect
        .poll(async () => (await Promise.all(jobs.map((j) => j.getState()))).join(), {
          timeout: 10_000,
          message: "every rotation completed within 10 s of Redis coming back",
        })
        .toBe(groups.map(() => "completed").join());
      const doneMs = Date.now() - upAt;

      expect(proc.child.exitCode).toBeNull();
      await assertPromise({
        redis: client,
        sim,
        keys: tq.keys,
        channel,
        groups,
        secrets: [TEST_TOKEN],
        minPublished: 1,
      });
      assertCleanOutput(proc);
      expect(proc.stdout()).toMatch(/redis connection restored/);
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
      console.log(
        `[figures] redis restart: down ${upAt - downAt} ms, all ${groups.length} rotations done ${doneMs} ms after it came back`,
      );
    } finally {
      await client.quit().catch(() => client.disconnect());
    }
  },
);

it("SIGTERM lets the rotation in flight finish and exits 0; a second signal exits at once", async ({
  rig,
}) => {
  const { sim, redis } = rig;
  const { prefix, channel, env, worker } = setup(rig, "shutdown", ["S1", "S2"]);
  sim.inject({ kind: "latency", ms: 1_500, match: { groupId: "S1", method: "POST" } });
  const graceful = worker(env);
  await waitReady(graceful);
  const tq = await rig.queue(prefix);
  const [job] = await tq.rotate([{ groupId: "S1", account: "default" }], channel);
  await expect.poll(hungPost(sim, "S1"), { timeout: 10_000 }).toBe(true);
  graceful.kill("SIGTERM");
  expect(await graceful.exited).toBe(0);
  expect(await job!.getState()).toBe("completed");
  await assertPromise({
    redis,
    sim,
    keys: tq.keys,
    channel,
    groups: ["S1"],
    secrets: [TEST_TOKEN],
    minPublished: 1,
  });

  // A Graph call that never answers: the first signal waits, the second exits at once.
  sim.inject({ kind: "hang", match: { groupId: "S2", method: "POST" } });
  const stuck = worker(env);
  await waitReady(stuck);
  await tq.rotate([{ groupId: "S2", account: "default" }], channel);
  await expect.poll(hungPost(sim, "S2"), { timeout: 10_000 }).toBe(true);
  stuck.kill("SIGTERM");
  await stuck.waitFor("shutting down");
  await new Promise((r) => setTimeout(r, 300));
  expect(stuck.child.exitCode).toBeNull();
  const second = Date.now();
  stuck.kill("SIGINT");
  expect(await stuck.exited).not.toBe(0);
  expect(Date.now() - second).toBeLessThan(2_000);

  // With a shutdown deadline the stuck rotation is aborted and the process still exits 0.
  sim.inject({ kind: "hang", match: { groupId: "S2", method: "POST" } });
  const deadline = worker({ ...env, ROTATOR_SHUTDOWN_TIMEOUT: "1s" });
  await waitReady(deadline);
  await expect.poll(() => sim.calls.filter(hungPost2("S2")).length, { timeout: 15_000 }).toBe(2);
  const sent = Date.now();
  deadline.kill("SIGTERM");
  expect(await deadline.exited).toBe(0);
  expect(Date.now() - sent).toBeLessThan(5_000);
  assertCleanOutput(graceful, stuck, deadline);
});

const hungPost2 = (groupId: string) => (c: { groupId?: string; method: string; status?: number }) =>
  c.groupId === groupId && c.method === "POST" && c.status === undefined;
