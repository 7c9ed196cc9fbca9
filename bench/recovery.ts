import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { deleteKeys } from "../scripts/redis-server.js";
import { endWithThisProcess } from "../scripts/children.js";
import { startGraphSimulator } from "../src/graph-sim/simulator.js";
import { createKeys } from "../src/core/keys.js";
import { createRotationQueue, enqueueRotations, manualRotationId } from "../src/rotation/queue.js";

/**
 * Recovery time after a SIGKILL with the DEFAULT lock settings (job lock 20 s, stalled check 10 s,
 * group lock 15 s): two worker processes, the first killed while its POST hangs (after DELETE);
 * measures kill → the second worker's successful POST. Run after `npm run build`:
 *
 *   node dist/bench/recovery.js [trials]      (REDIS_URL, default redis://127.0.0.1:6379)
 */
const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));
const TOKEN = "bench-token-0123456789";
const trials = Number(process.argv[2] ?? 2);
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await sleep(20);
  }
}

function worker(env: Record<string, string>): { child: ChildProcess; ready: Promise<void> } {
  const child = endWithThisProcess(
    spawn(process.execPath, [CLI, "worker"], {
      env: { PATH: process.env.PATH ?? "", ...env },
      stdio: ["ignore", "pipe", "inherit"],
    }),
  );
  const ready = new Promise<void>((resolve) => {
    child.stdout!.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes('"service":"worker"')) resolve();
    });
  });
  return { child, ready };
}

async function trial(n: number): Promise<number> {
  const sim = await startGraphSimulator({ tokens: { [TOKEN]: { name: "default" } } });
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const prefix = `bench-recovery-${randomBytes(4).toString("hex")}`;
  const channel = `${prefix}-links`;
  const dir = mkdtempSync(join(tmpdir(), "wa-rotator-bench-"));
  const config = join(dir, "rotation.yaml");
  writeFileSync(
    config,
    `policies:\n  - name: bench\n    schedule: "0 3 * * *"\n    channel: "${channel}"\n    groups: ["K1"]\n`,
  );
  const env = {
    REDIS_URL: redisUrl,
    ROTATOR_PREFIX: prefix,
    ROTATOR_CONFIG: config,
    GRAPH_API_BASE_URL: sim.url,
    WHATSAPP_ACCESS_TOKEN: TOKEN,
    HEALTH_PORT: "0",
  };
  const workers: ChildProcess[] = [];
  try {
    sim.inject({ kind: "hang", match: { groupId: "K1", method: "POST" } });
    const first = worker(env);
    workers.push(first.child);
    await first.ready;
    const connection = redis.duplicate();
    const queue = createRotationQueue(createKeys(prefix), connection);
    await enqueueRotations(queue, [
      {
        rotationId: manualRotationId(),
        groupId: "K1",
        account: "default",
        policy: null,
        channel,
        trigger: "manual",
        requestedAt: Date.now(),
      },
    ]);
    await until(() => sim.calls.some((c) => c.method === "POST"), 10_000);
    const second = worker(env);
    workers.push(second.child);
    await second.ready;
    first.child.kill("SIGKILL");
    const killedAt = Date.now();
    await until(() => sim.calls.some((c) => c.method === "POST" && c.status === 200), 60_000);
    const ms = sim.calls.find((c) => c.method === "POST" && c.status === 200)!.at - killedAt;
    console.log(`trial ${n}: resumed at POST ${ms} ms after SIGKILL`);
    await queue.close();
    connection.disconnect();
    return ms;
  } finally {
    for (const w of workers) w.kill("SIGKILL");
    await sim.close();
    await deleteKeys(redis, prefix, channel);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
  }
}

const results: number[] = [];
for (let i = 1; i <= trials; i++) results.push(await trial(i));
console.log(
  `recovery after SIGKILL with default locks: min ${Math.min(...results)} ms, max ${Math.max(...results)} ms, ` +
    `mean ${Math.round(results.reduce((a, b) => a + b, 0) / results.length)} ms over ${results.length} trials`,
);
