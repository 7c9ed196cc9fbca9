import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { App } from "../../src/app.js";
import { startGraphSimulator, type GraphSimulator } from "../../src/graph-sim/simulator.js";
import { createKeys } from "../../src/core/keys.js";
import { parseMessage } from "../../src/publish/message.js";
import { scheduledRotationId } from "../../src/rotation/queue.js";
import { spawnCli, type CliProcess } from "../helpers/cli.js";
import { deleteKeys, testRedis, testRedisUrl, uniquePrefix } from "../helpers/redis.js";
import { policyYaml, startTestRotator, TEST_TOKEN } from "../helpers/rotator.js";

/**
 * Scheduler replicas in separate processes on one Redis, with a real seconds-level schedule:
 * every (group, fire) becomes exactly one rotation. And `start` runs scheduler and workers in one
 * process, rotating and publishing on schedule.
 */
const redis = testRedis();
const dir = mkdtempSync(join(tmpdir(), "wa-rotator-replicas-"));
const processes: CliProcess[] = [];
const cleanup: string[] = [];
let sim: GraphSimulator;
let app: App | undefined;

beforeAll(async () => {
  sim = await startGraphSimulator({ latencyMs: 5 });
});
afterAll(async () => {
  for (const p of processes) p.kill("SIGKILL");
  await Promise.all(processes.map((p) => p.exited));
  await app?.stop();
  await sim.close();
  await deleteKeys(redis, ...cleanup);
  await redis.quit();
  rmSync(dir, { recursive: true, force: true });
});

function setup(name: string, groups: string[], schedule: string) {
  const prefix = uniquePrefix(name);
  const channel = `${prefix}-links`;
  cleanup.push(prefix, channel);
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, policyYaml(groups, channel, schedule));
  const env = {
    REDIS_URL: testRedisUrl(),
    ROTATOR_PREFIX: prefix,
    ROTATOR_CONFIG: file,
    GRAPH_API_BASE_URL: sim.url,
    WHATSAPP_ACCESS_TOKEN: TEST_TOKEN,
    HEALTH_PORT: "0",
    LOG_LEVEL: "info",
  };
  return { prefix, channel, env };
}

async function published(channel: string) {
  const entries = await redis.xrange(`${channel}:stream`, "-", "+");
  return entries.map(([, fields]) => parseMessage(fields[1]!));
}

const until = async (check: () => Promise<boolean>, ms: number) => {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 100));
  }
};

it("three scheduler processes rotate each group exactly once per fire", async () => {
  const groups = ["R1", "R2", "R3"];
  const { prefix, channel, env } = setup("replicas", groups, "*/2 * * * * *");
  // The worker runs first, so every fire finds the previous one's rotations done (none is skipped).
  app = await startTestRotator({
    graphUrl: sim.url,
    prefix,
    yaml: policyYaml(groups, channel, "*/2 * * * * *"),
  });
  const began = Date.now();
  const schedulers = [0, 1, 2].map(() => spawnCli(["scheduler"], env));
  processes.push(...schedulers);
  await Promise.all(schedulers.map((p) => p.waitFor("scheduler armed")));
  await new Promise((r) => setTimeout(r, 5_000)); // two or three fires
  for (const p of schedulers) p.kill("SIGTERM");
  expect(await Promise.all(schedulers.map((p) => p.exited))).toEqual([0, 0, 0]);

  await until(async () => {
    const counts = await app!.queue.getJobCounts("waiting", "delayed", "active", "prioritized");
    return Object.values(counts).every((n) => n === 0);
  }, 10_000);
  const lastFire = Number(await redis.hget(createKeys(prefix).policy("test"), "last_fire"));
  const messages = await published(channel);

  // Which fire each published rotation belongs to, by its identity.
  const fireOf = new Map<string, number>();
  for (let t = Math.floor(began / 1000) * 1000 - 4000; t <= lastFire; t += 1000) {
    for (const g of groups) fireOf.set(scheduledRotationId("test", t, g), t);
  }
  const fires = new Set<number>();
  for (const message of messages) {
    const fire = fireOf.get(message.rotation_id);
    expect(fire, `rotation ${message.rotation_id} belongs to no fire`).toBeDefined();
    fires.add(fire!);
  }
  expect(fires.size).toBeGreaterThanOrEqual(2);
  expect(Math.max(...fires)).toBe(lastFire);
  expect(messages).toHaveLength(fires.size * groups.length);
  for (const fire of fires) {
    for (const g of groups) {
      expect(messages.filter((m) => m.rotation_id === scheduledRotationId("test", fire, g))).toHaveLength(1);
    }
  }
  for (const g of groups) {
    expect(sim.calls.filter((c) => c.groupId === g && c.method === "POST")).toHaveLength(fires.size);
  }
  await app.stop();
  app = undefined;
});

it("start runs scheduler and workers in one process: rotates and publishes on schedule", async () => {
  const { channel, env } = setup("start", ["S1", "S2"], "* * * * * *");
  const start = spawnCli(["start"], env);
  processes.push(start);
  await start.waitFor("scheduler armed");
  await until(async () => (await published(channel)).length >= 4, 10_000);
  start.kill("SIGTERM");
  expect(await start.exited).toBe(0);
  const messages = await published(channel);
  expect(new Set(messages.map((m) => m.group_id))).toEqual(new Set(["S1", "S2"]));
  expect(messages.every((m) => m.trigger === "schedule" && m.policy === "test")).toBe(true);
  expect(new Set(messages.map((m) => m.rotation_id)).size).toBe(messages.length);
});
