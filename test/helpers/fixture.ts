import type { Redis } from "ioredis";
import { test } from "vitest";
import {
  startGraphSimulator,
  type GraphSimulator,
  type SimulatorOptions,
} from "../../src/graph-sim/simulator.js";
import type { App } from "../../src/app.js";
import { openTestQueue, type TestQueue } from "./faults.js";
import { deleteKeys, testRedis, uniquePrefix } from "./redis.js";
import {
  startTestRotator,
  startTestWorker,
  type TestRotatorOptions,
  type TestWorker,
  type TestWorkerOptions,
} from "./rotator.js";

/** What a test gets from `simTest`: the file's simulator and Redis, and keys of its own. */
export interface Rig {
  /** The file's Graph simulator: its faults and call log are cleared after each test. */
  readonly sim: GraphSimulator;
  /** A connection to the shared test Redis (never flushed). */
  readonly redis: Redis;
  /** A fresh key prefix; it and its channel (`<prefix>-links`) are deleted after the test. */
  prefix(name: string): { prefix: string; channel: string };
  /** Runs `close` after the test, before its keys are deleted (last deferred, first run). */
  defer(close: () => Promise<unknown>): void;
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

/**
 * `it` with a `rig` fixture: one Graph simulator (started with `options`) and one Redis
 * connection per file, and per test its own key prefix, cleaned up after it: what it deferred is
 * closed, the simulator's faults and calls are cleared, and every key under its prefixes deleted.
 * A test during which Node warned of a possible listener leak (MaxListenersExceededWarning) fails.
 */
export function simTest(options: SimulatorOptions = {}) {
  return test.extend<{ $test: { rig: Rig }; $file: { sim: GraphSimulator; redis: Redis } }>({
    sim: [
      // eslint-disable-next-line no-empty-pattern -- vitest reads the fixture's dependencies from it
      async ({}, use) => {
        const sim = await startGraphSimulator(options);
        await use(sim);
        await sim.close();
      },
      { scope: "file" },
    ],
    redis: [
      // eslint-disable-next-line no-empty-pattern -- as above
      async ({}, use) => {
        const redis = testRedis();
        await use(redis);
        await redis.quit();
      },
      { scope: "file" },
    ],
    rig: async ({ sim, redis }, use) => {
      const prefixes: string[] = [];
      const closers: (() => Promise<unknown>)[] = [];
      const leaks: string[] = [];
      const onWarning = (warning: Error) => {
        if (warning.name === "MaxListenersExceededWarning") leaks.push(warning.message);
      };
      process.on("warning", onWarning);
      const defer = (close: () => Promise<unknown>) => void closers.push(close);
      await use({
        sim,
        redis,
        prefix(name) {
          const prefix = uniquePrefix(name);
          const channel = `${prefix}-links`;
          prefixes.push(prefix, channel);
          return { prefix, channel };
        },
        defer,
        async rotator(prefix, options = {}) {
          const app = await startTestRotator({ ...options, graphUrl: sim.url, prefix });
          defer(() => app.stop());
          return app;
        },
        async worker(prefix, options) {
          const tw = await startTestWorker({ ...options, graphUrl: sim.url, redis, prefix });
          defer(() => tw.close());
          return tw;
        },
        async queue(prefix, backoffMs) {
          const tq = await openTestQueue(redis, prefix, backoffMs);
          defer(() => tq.close());
          return tq;
        },
      });
      for (const close of closers.reverse()) await close();
      sim.clearFaults();
      sim.clearCalls();
      await deleteKeys(redis, ...prefixes);
      await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on the next tick
      process.off("warning", onWarning);
      if (leaks.length > 0) throw new Error(`possible listener leak: ${leaks.join("; ")}`);
    },
  });
}
