import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { test } from "vitest";
import {
  startGraphSimulator,
  type GraphSimulator,
  type SimulatorOptions,
} from "../../src/graph-sim/simulator.js";
import type { App } from "../../src/app.js";
import type { RotationJobData } from "../../src/core/interfaces.js";
import { createKeys, type Keys } from "../../src/core/keys.js";
import { createRotationQueue } from "../../src/rotation/queue.js";
import { openTestQueue, type TestQueue } from "./faults.js";
import { deleteKeys, testRedis, uniquePrefix } from "./redis.js";
import {
  startTestRotator,
  startTestWorker,
  type TestRotatorOptions,
  type TestWorker,
  type TestWorkerOptions,
} from "./rotator.js";

/** What a test gets from `redisTest`: the file's Redis, and keys of its own. */
export interface RedisRig {
  /** A connection to the shared test Redis (never flushed). */
  readonly redis: Redis;
  /** A fresh key prefix, its keys and channel (`<prefix>-links`); all are deleted after the test. */
  prefix(name: string): { prefix: string; channel: string; keys: Keys };
  /** Runs `close` after the test, before its keys are deleted (last deferred, first run). */
  defer(close: () => Promise<unknown>): void;
}

/** What a test gets from `simTest`: the file's simulator and Redis, and keys of its own. */
export interface Rig extends RedisRig {
  /** The file's Graph simulator: its faults and call log are cleared after each test. */
  readonly sim: GraphSimulator;
  /** The rotator (`startTestRotator`) on `prefix` against the file's simulator; stopped after the test. */
  rotator(prefix: string, options?: Omit<TestRotatorOptions, "graphUrl" | "prefix">): Promise<App>;
  /** A rotation worker (`startTestWorker`) on `prefix` against the file's simulator; closed after the test. */
  worker(
    prefix: string,
    options: Omit<TestWorkerOptions, "graphUrl" | "redis" | "prefix">,
  ): Promise<TestWorker>;
  /** A test queue on `prefix` (`openTestQueue`); closed after the test. */
  queue(prefix: string, backoffMs?: number): Promise<TestQueue>;
}

/** The rotation queue on `keys`, over a connection of its own; emptied and closed after the test. */
export function rotationQueue(rig: RedisRig, keys: Keys): Queue<RotationJobData> {
  const connection = rig.redis.duplicate();
  const queue = createRotationQueue(keys, connection);
  rig.defer(async () => {
    await queue.obliterate({ force: true });
    await queue.close();
    await connection.quit();
  });
  return queue;
}

/** The file's Redis connection (a fixture of file scope): closed after its last test. */
// eslint-disable-next-line no-empty-pattern -- vitest reads the fixture's dependencies from it
async function fileRedis({}, use: (redis: Redis) => Promise<void>): Promise<void> {
  const redis = testRedis();
  await use(redis);
  await redis.quit();
}

/**
 * Hands `use` a RedisRig over `redis`, then cleans up after the test: what it deferred is closed,
 * `beforeCleanup` runs, and every key under its prefixes is deleted. A test during which Node warned
 * of a possible listener leak (MaxListenersExceededWarning) fails.
 */
async function withKeys(
  redis: Redis,
  use: (rig: RedisRig) => Promise<void>,
  beforeCleanup = () => {},
): Promise<void> {
  const prefixes: string[] = [];
  const closers: (() => Promise<unknown>)[] = [];
  const leaks: string[] = [];
  const onWarning = (warning: Error) => {
    if (warning.name === "MaxListenersExceededWarning") leaks.push(warning.message);
  };
  process.on("warning", onWarning);
  await use({
    redis,
    prefix(name) {
      const prefix = uniquePrefix(name);
      const channel = `${prefix}-links`;
      prefixes.push(prefix, channel);
      return { prefix, channel, keys: createKeys(prefix) };
    },
    defer: (close) => void closers.push(close),
  });
  for (const close of closers.reverse()) await close();
  beforeCleanup();
  await deleteKeys(redis, ...prefixes);
  await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
  process.off("warning", onWarning);
  if (leaks.length > 0) throw new Error(`possible listener leak: ${leaks.join("; ")}`);
}

/**
 * `it` with a `rig` fixture for tests that need Redis alone: one Redis connection per file, and per
 * test its own key prefixes, cleaned up after it (see `withKeys`).
 */
export function redisTest() {
  return test.extend<{ $test: { rig: RedisRig }; $file: { redis: Redis } }>({
    redis: [fileRedis, { scope: "file" }],
    rig: ({ redis }, use) => withKeys(redis, use),
  });
}

/**
 * `it` with a `rig` fixture: one Graph simulator (started with `options`) and one Redis
 * connection per file, and per test its own key prefix, cleaned up after it: what it deferred is
 * closed, the simulator's faults and calls are cleared, and every key under its prefixes deleted.
 * A test during which Node warned of a possible listener leak (MaxListenersExceededWarning) fails.
 */
export function simTest(options: SimulatorOptions = {}) {
  return test.extend<{ $test: { rig: Rig }; $file: { sim: GraphSimulator; redis: Redis } }>({
    sim: [
      // eslint-disable-next-line no-empty-pattern -- as above
      async ({}, use) => {
        const sim = await startGraphSimulator(options);
        await use(sim);
        await sim.close();
      },
      { scope: "file" },
    ],
    redis: [fileRedis, { scope: "file" }],
    rig: ({ sim, redis }, use) =>
      withKeys(
        redis,
        (base) =>
          use({
            ...base,
            sim,
            async rotator(prefix, options = {}) {
              const app = await startTestRotator({ ...options, graphUrl: sim.url, prefix });
              base.defer(() => app.stop());
              return app;
            },
            async worker(prefix, options) {
              const tw = await startTestWorker({ ...options, graphUrl: sim.url, redis, prefix });
              base.defer(() => tw.close());
              return tw;
            },
            async queue(prefix, backoffMs) {
              const tq = await openTestQueue(redis, prefix, backoffMs);
              base.defer(() => tq.close());
              return tq;
            },
          }),
        () => {
          sim.clearFaults();
          sim.clearCalls();
        },
      ),
  });
}
