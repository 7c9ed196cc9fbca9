import type { Redis } from "ioredis";
import { test } from "vitest";
import {
  startGraphSimulator,
  type GraphSimulator,
  type SimulatorOptions,
} from "../../src/graph-sim/simulator.js";
import { deleteKeys, testRedis, uniquePrefix } from "./redis.js";

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
}

/**
 * `it` with a `rig` fixture: one Graph simulator (started with `options`) and one Redis
 * connection per file, and per test its own key prefix, cleaned up after it: what it deferred is
 * closed, the simulator's faults and calls are cleared, and every key under its prefixes deleted.
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
      await use({
        sim,
        redis,
        prefix(name) {
          const prefix = uniquePrefix(name);
          const channel = `${prefix}-links`;
          prefixes.push(prefix, channel);
          return { prefix, channel };
        },
        defer: (close) => void closers.push(close),
      });
      for (const close of closers.reverse()) await close();
      sim.clearFaults();
      sim.clearCalls();
      await deleteKeys(redis, ...prefixes);
    },
  });
}
