import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Queue } from "bullmq";
import { Redis } from "ioredis";
import { endWithThisProcess } from "../scripts/children.js";
import { deleteKeys } from "../scripts/redis-server.js";
import type { RotationJobData } from "../src/core/interfaces.js";
import { createKeys } from "../src/core/keys.js";
import {
  startGraphSimulator,
  type GraphSimulator,
  type SimulatorOptions,
} from "../src/graph-sim/simulator.js";
import { createRotationQueue, enqueueRotations, manualRotationId } from "../src/rotation/queue.js";

/** The built CLI, beside the built bench. */
const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));

/** What the worker-process scenarios share: a simulator, keys of their own, a policy file. */
export interface BenchRig {
  readonly sim: GraphSimulator;
  readonly redis: Redis;
  readonly prefix: string;
  /** `<prefix>-links`: the policy's channel. */
  readonly channel: string;
  /** The environment of a `worker` on this rig: Redis, prefix, policy file, simulator, token. */
  readonly env: Record<string, string>;
  /** Enqueues a manual rotation of each group on the channel, requested at `at`. */
  rotate(groupIds: readonly string[], at?: number): Promise<void>;
  /** A `wa-invite-rotator worker` on this rig; killed by `close`. */
  worker(): { child: ChildProcess; ready: Promise<void> };
  /** Kills the workers, closes the simulator and the queue, deletes the keys and the policy file. */
  close(): Promise<void>;
}

/**
 * Starts the simulator (`sim`), connects to `redisUrl` and writes `policy(channel)` to a file in a
 * temporary folder, under a fresh prefix named after `name`. `env` is added to the workers'.
 */
export async function startBenchRig(options: {
  name: string;
  redisUrl: string;
  token: string;
  sim: SimulatorOptions;
  policy: (channel: string) => string;
  env?: Record<string, string>;
}): Promise<BenchRig> {
  const sim = await startGraphSimulator(options.sim);
  const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
  const prefix = `bench-${options.name}-${randomBytes(4).toString("hex")}`;
  const channel = `${prefix}-links`;
  const dir = mkdtempSync(join(tmpdir(), "wa-rotator-bench-"));
  const config = join(dir, "rotation.yaml");
  writeFileSync(config, options.policy(channel));
  const env = {
    REDIS_URL: options.redisUrl,
    ROTATOR_PREFIX: prefix,
    ROTATOR_CONFIG: config,
    GRAPH_API_BASE_URL: sim.url,
    WHATSAPP_ACCESS_TOKEN: options.token,
    HEALTH_PORT: "0",
    ...options.env,
  };
  const connection = redis.duplicate();
  const queue: Queue<RotationJobData> = createRotationQueue(createKeys(prefix), connection);
  const workers: ChildProcess[] = [];
  return {
    sim,
    redis,
    prefix,
    channel,
    env,
    async rotate(groupIds, at = Date.now()) {
      const rotations = groupIds.map((groupId) => ({
        rotationId: manualRotationId(),
        groupId,
        account: "default",
        policy: null,
        channel,
        trigger: "manual" as const,
        requestedAt: at,
      }));
      await enqueueRotations(queue, rotations);
    },
    worker() {
      const worker = startWorker(env);
      workers.push(worker.child);
      return worker;
    },
    async close() {
      for (const child of workers) child.kill("SIGKILL");
      await queue.close();
      connection.disconnect();
      await sim.close();
      await deleteKeys(redis, prefix, channel);
      redis.disconnect();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A `worker` process, ended with this one; ready once it logged its start, failed if it exits first. */
function startWorker(env: Record<string, string>): { child: ChildProcess; ready: Promise<void> } {
  const child = endWithThisProcess(
    spawn(process.execPath, [CLI, "worker"], {
      env: { PATH: process.env.PATH ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  // Node's warnings (one per process) would bury the figures; anything else goes through.
  child.stderr!.on("data", (chunk: Buffer) => {
    const text = chunk
      .toString()
      .split("\n")
      .filter((l) => l !== "" && !/MaxListenersExceededWarning|--trace-warnings/.test(l));
    if (text.length > 0) process.stderr.write(`${text.join("\n")}\n`);
  });
  const ready = new Promise<void>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`worker exited with ${code}`)));
    child.stdout!.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes('"service":"worker"')) resolve();
    });
  });
  return { child, ready };
}
