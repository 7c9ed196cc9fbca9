import { QueueEvents } from "bullmq";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startGraphSimulator, type GraphSimulator } from "../../src/graph-sim/simulator.js";
import type { RotationJobData } from "../../src/core/interfaces.js";
import { createKeys } from "../../src/core/keys.js";
import { createRotationQueue, enqueueRotations, manualRotationId } from "../../src/rotation/queue.js";
import { spawnCli, type CliProcess } from "../helpers/cli.js";
import { deleteKeys, testRedis, testRedisUrl, uniquePrefix } from "../helpers/redis.js";
import { policyYaml, TEST_TOKEN } from "../helpers/rotator.js";

/**
 * Two worker processes given the same groups at once: the per-group lock must serialize every
 * rotation of a group, so the simulator sees DELETE, POST, DELETE, POST... and never two DELETEs
 * (or two POSTs) of one group in a row; sequences come out 1..N without gaps.
 */
let sim: GraphSimulator;
const redis = testRedis();
const prefix = uniquePrefix("two-workers");
const channel = `${prefix}-links`;
const dir = mkdtempSync(join(tmpdir(), "wa-rotator-two-"));
const workers: CliProcess[] = [];

beforeAll(async () => {
  sim = await startGraphSimulator({ latencyMs: 30 });
  writeFileSync(join(dir, "rotation.yaml"), policyYaml(["GA", "GB"], channel));
});
afterAll(async () => {
  for (const w of workers) w.kill("SIGKILL");
  await Promise.all(workers.map((w) => w.exited));
  await sim.close();
  await deleteKeys(redis, prefix, channel);
  await redis.quit();
  rmSync(dir, { recursive: true, force: true });
});

it("never interleaves two rotations of one group across processes", async () => {
  const env = {
    REDIS_URL: testRedisUrl(),
    ROTATOR_PREFIX: prefix,
    ROTATOR_CONFIG: join(dir, "rotation.yaml"),
    GRAPH_API_BASE_URL: sim.url,
    WHATSAPP_ACCESS_TOKEN: TEST_TOKEN,
    HEALTH_PORT: "0",
    ROTATOR_CONCURRENCY: "8",
  };
  workers.push(spawnCli(["worker"], env), spawnCli(["worker"], env));
  await Promise.all(workers.map((w) => w.waitFor('"service":"worker"')));

  const keys = createKeys(prefix);
  const queue = createRotationQueue(keys, redis.duplicate());
  const events = new QueueEvents(keys.rotationQueue, { connection: redis.duplicate(), prefix });
  events.setMaxListeners(100);
  await events.waitUntilReady();
  const perGroup = 6;
  const rotations: RotationJobData[] = [];
  for (let i = 0; i < perGroup; i++) {
    for (const groupId of ["GA", "GB"]) {
      rotations.push({
        rotationId: manualRotationId(),
        groupId,
        account: "default",
        policy: null,
        channel,
        trigger: "manual",
        requestedAt: Date.now(),
      });
    }
  }
  await enqueueRotations(queue, rotations);
  const jobs = await Promise.all(rotations.map((r) => queue.getJob(r.rotationId)));
  const messages = await Promise.all(jobs.map((job) => job!.waitUntilFinished(events, 30_000)));
  await events.close();
  await queue.close();

  for (const groupId of ["GA", "GB"]) {
    const calls = sim.calls.filter((c) => c.groupId === groupId).map((c) => c.method);
    expect(calls).toEqual(Array.from({ length: perGroup }, () => ["DELETE", "POST"]).flat());
    const sequences = messages.filter((m) => m.group_id === groupId).map((m) => m.sequence);
    expect(sequences.sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
  }
  // Both processes did work (the lock, not a lucky single consumer, kept the order).
  const pids = new Set<string>();
  for (const w of workers)
    if (w.stdout().includes('"msg":"invite link rotated"')) pids.add(String(w.child.pid));
  expect(pids.size).toBe(2);
});
