/**
 * `npm run bench -- fire`: a fire of 10,000 and of 100,000 groups, each enqueued by the scheduler's
 * path in a process of its own (`node dist/bench/fire.js <groups> <redis url>` prints one JSON
 * line), so its peak RSS is the fire's alone; against a naive path at 10,000 (a pending check, a
 * mark and an add per group). Goal: 100,000 groups in under 3 s.
 */
import type { Queue } from "bullmq";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { deleteKeys } from "../scripts/redis-server.js";
import type { ResolvedPolicy } from "../src/config/config.js";
import type { RotationJobData } from "../src/core/interfaces.js";
import { createKeys, type Keys } from "../src/core/keys.js";
import { createLogger } from "../src/infra/logger.js";
import { createRotationQueue, scheduledRotationId } from "../src/rotation/queue.js";
import { createFirer, type FireResult } from "../src/schedule/fire.js";

const GOAL_MS = 3_000;
const FIRE_AT = Date.parse("2026-11-26T03:00:00Z");

interface FireRun {
  readonly groups: number;
  readonly ms: number;
  readonly cpuMs: number;
  /** The Redis server's CPU over the fire (all its clients: exact only on a Redis of its own). */
  readonly redisCpuMs: number;
  readonly peakRssMb: number;
  readonly chunks: number;
}

const groupIds = (count: number) =>
  Array.from({ length: count }, (_, i) => `1203630${String(i).padStart(11, "0")}`);

const benchPolicy = (groups: readonly string[]): ResolvedPolicy => ({
  name: "bench",
  account: "default",
  schedule: "0 3 * * *",
  timezone: "UTC",
  jitterMs: 15 * 60_000,
  catchUpMs: 3_600_000,
  channel: "bench:links",
  groups,
});

interface BenchRig {
  readonly groups: string[];
  readonly redis: Redis;
  readonly keys: Keys;
  readonly queue: Queue<RotationJobData>;
}

/** `count` group ids, a connection, a prefix of its own and its rotation queue; all gone after `run`. */
async function withQueue<T>(count: number, redisUrl: string, run: (rig: BenchRig) => Promise<T>): Promise<T> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const prefix = `bench-${randomBytes(4).toString("hex")}`;
  const keys = createKeys(prefix);
  const queue = createRotationQueue(keys, redis);
  try {
    return await run({ groups: groupIds(count), redis, keys, queue });
  } finally {
    await queue.close();
    await deleteKeys(redis, prefix);
    await redis.quit();
  }
}

/** The child: one fire of `count` groups through the scheduler's path (createFirer). */
async function fireOnce(count: number, redisUrl: string): Promise<FireRun> {
  return withQueue(count, redisUrl, async ({ groups, redis, keys, queue }) => {
    const fire = createFirer({
      redis,
      keys,
      queue,
      graph: { listGroups: async () => [] },
      config: () => {
        throw new Error("not used: the policy lists its groups");
      },
      resolveAccount: () => ({ name: "default", token: "x", graphApiVersion: "v23.0" }),
      logger: createLogger("silent"),
      clock: { now: () => FIRE_AT - 1_000 },
    });
    const redisCpu = async () => {
      const info = await redis.info("cpu");
      const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? 0);
      return (field("used_cpu_sys") + field("used_cpu_user")) * 1000;
    };
    const redisBefore = await redisCpu();
    const cpu = process.cpuUsage();
    const start = performance.now();
    const result: FireResult = await fire(benchPolicy(groups), FIRE_AT, "schedule");
    const ms = performance.now() - start;
    const used = process.cpuUsage(cpu);
    const redisCpuMs = (await redisCpu()) - redisBefore;
    if (result.enqueued !== count) throw new Error(`enqueued ${result.enqueued} of ${count}`);
    return {
      groups: count,
      ms,
      cpuMs: (used.user + used.system) / 1000,
      redisCpuMs,
      peakRssMb: process.resourceUsage().maxRSS / 1024,
      chunks: result.chunks,
    };
  });
}

/** A naive path, in this process: per group, check the pending mark, set it, add the job. */
async function naiveFire(count: number, redisUrl: string): Promise<number> {
  return withQueue(count, redisUrl, async ({ groups, redis, keys, queue }) => {
    const start = performance.now();
    for (const groupId of groups) {
      const rotationId = scheduledRotationId("bench", FIRE_AT, groupId);
      if (await redis.hget(keys.group(groupId), "pending_rotation")) continue;
      await redis.hset(keys.group(groupId), "pending_rotation", rotationId, "pending_since", String(FIRE_AT));
      await queue.add(
        "rotate",
        {
          rotationId,
          groupId,
          account: "default",
          policy: "bench",
          channel: "bench:links",
          trigger: "schedule",
          fireAt: FIRE_AT,
          requestedAt: FIRE_AT,
        },
        { jobId: rotationId, delay: 1_000 },
      );
    }
    return performance.now() - start;
  });
}

function fireInChild(count: number, redisUrl: string): FireRun {
  const run = spawnSync(process.execPath, [fileURLToPath(import.meta.url), String(count), redisUrl], {
    encoding: "utf8",
  });
  if (run.status !== 0) throw new Error(`fire of ${count} groups exited ${run.status}: ${run.stderr}`);
  return JSON.parse(run.stdout) as FireRun;
}

export async function benchFire(redisUrl: string): Promise<void> {
  console.log(
    "\nfire: one rotation job per group; each fire in a process of its own (Redis CPU: the whole server's)",
  );
  const line = (label: string, ms: number, extra = "") =>
    console.log(`  ${label.padEnd(46)} ${ms.toFixed(0).padStart(6)} ms  ${extra}`);
  const runs = [10_000, 100_000].map((count) => fireInChild(count, redisUrl));
  for (const run of runs) {
    line(
      `${run.groups.toLocaleString("en")} groups: Lua call per 1,000`,
      run.ms,
      `CPU ${run.cpuMs.toFixed(0)} ms, Redis CPU ${run.redisCpuMs.toFixed(0)} ms, peak RSS ${run.peakRssMb.toFixed(0)} MB`,
    );
  }
  const naive = await naiveFire(10_000, redisUrl);
  line("10,000 groups naive: 3 round trips per group", naive);
  const small = runs[0]!;
  const large = runs[1]!;
  console.log(
    `  speed-up at 10,000 over naive: ${(naive / small.ms).toFixed(1)}x   goal 100,000 in ${GOAL_MS} ms: ${large.ms <= GOAL_MS ? "met" : "MISSED"} (${(large.ms / GOAL_MS).toFixed(2)} of it)`,
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [count, redisUrl] = process.argv.slice(2);
  process.stdout.write(
    `${JSON.stringify(await fireOnce(Number(count), redisUrl ?? "redis://127.0.0.1:6379"))}\n`,
  );
}
