import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import type { RotatedResult } from "../../src/rotation/worker.js";
import { settleAll } from "../helpers/faults.js";
import { simTest } from "../helpers/fixture.js";
import { spawnCli, type CliProcess } from "../helpers/cli.js";
import { testRedisUrl } from "../helpers/redis.js";
import { policyYaml, TEST_TOKEN } from "../helpers/rotator.js";

/**
 * Two worker processes given the same groups at once: the per-group lock must serialize every
 * rotation of a group, so the simulator sees DELETE, POST, DELETE, POST... and never two DELETEs
 * (or two POSTs) of one group in a row; sequences come out 1..N without gaps.
 */
const it = simTest({ latencyMs: 30 });

it("never interleaves two rotations of one group across processes", async ({ rig }) => {
  const { sim } = rig;
  const { prefix, channel } = rig.prefix("two-workers");
  const dir = mkdtempSync(join(tmpdir(), "wa-rotator-two-"));
  rig.defer(async () => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "rotation.yaml"), policyYaml(["GA", "GB"], channel));
  const workers: CliProcess[] = [];
  rig.defer(async () => {
    for (const w of workers) w.kill("SIGKILL");
    await Promise.all(workers.map((w) => w.exited));
  });
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

  const tq = await rig.queue(prefix);
  const perGroup = 6;
  const groups = Array.from({ length: perGroup }, () => ["GA", "GB"]).flat();
  const jobs = await tq.rotate(
    groups.map((groupId) => ({ groupId, account: "default" })),
    channel,
  );
  const results = await settleAll(jobs, tq, 30_000);
  expect(results.filter((r) => r instanceof Error)).toEqual([]);
  const messages = results as RotatedResult[];

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
