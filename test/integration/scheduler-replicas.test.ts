import type { Redis } from "ioredis";
import { expect } from "vitest";
import { createKeys } from "../../src/core/keys.js";
import { parseMessage } from "../../src/publish/message.js";
import { scheduledRotationId } from "../../src/rotation/queue.js";
import { cliSetup } from "../helpers/cli.js";
import { simTest, type Rig } from "../helpers/fixture.js";
import { policyYaml } from "../helpers/rotator.js";
import { until as waitUntil } from "../helpers/until.js";

/**
 * Scheduler replicas in separate processes on one Redis, with a real seconds-level schedule:
 * every (group, fire) becomes exactly one rotation. And `start` runs scheduler and workers in one
 * process, rotating and publishing on schedule.
 */
const it = simTest({ latencyMs: 5 });

/** CLI processes on the test's prefix and policy file, logging at info; killed after the test. */
const setup = (rig: Rig, name: string, groups: string[], schedule: string) =>
  cliSetup(rig, name, groups, { schedule, env: { LOG_LEVEL: "info" }, killWith: "SIGKILL" });

async function published(redis: Redis, channel: string) {
  const entries = await redis.xrange(`${channel}:stream`, "-", "+");
  return entries.map(([, fields]) => parseMessage(fields[1]!));
}

const until = (check: () => Promise<boolean>, ms: number) => waitUntil(check, ms, 100);

it("three scheduler processes rotate each group exactly once per fire", async ({ rig }) => {
  const { sim, redis } = rig;
  const groups = ["R1", "R2", "R3"];
  const { prefix, channel, spawn } = setup(rig, "replicas", groups, "*/2 * * * * *");
  // The worker runs first, so every fire finds the previous one's rotations done (none is skipped).
  const app = await rig.rotator(prefix, { yaml: policyYaml(groups, channel, "*/2 * * * * *") });
  const began = Date.now();
  const schedulers = [0, 1, 2].map(() => spawn(["scheduler"]));
  await Promise.all(schedulers.map((p) => p.waitFor("scheduler armed")));
  await new Promise((r) => setTimeout(r, 5_000)); // two or three fires
  for (const p of schedulers) p.kill("SIGTERM");
  expect(await Promise.all(schedulers.map((p) => p.exited))).toEqual([0, 0, 0]);

  await until(async () => {
    const counts = await app.queue.getJobCounts("waiting", "delayed", "active", "prioritized");
    return Object.values(counts).every((n) => n === 0);
  }, 10_000);
  const lastFire = Number(await redis.hget(createKeys(prefix).policy("test"), "last_fire"));
  const messages = await published(redis, channel);

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
});

it("start runs scheduler and workers in one process: rotates and publishes on schedule", async ({ rig }) => {
  const { channel, spawn } = setup(rig, "start", ["S1", "S2"], "* * * * * *");
  const start = spawn(["start"]);
  await start.waitFor("scheduler armed");
  await until(async () => (await published(rig.redis, channel)).length >= 4, 10_000);
  start.kill("SIGTERM");
  expect(await start.exited).toBe(0);
  const messages = await published(rig.redis, channel);
  expect(new Set(messages.map((m) => m.group_id))).toEqual(new Set(["S1", "S2"]));
  expect(messages.every((m) => m.trigger === "schedule" && m.policy === "test")).toBe(true);
  expect(new Set(messages.map((m) => m.rotation_id)).size).toBe(messages.length);
});
