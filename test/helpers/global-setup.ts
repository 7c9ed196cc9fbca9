import type { TestProject } from "vitest/node";
import { redisAnswers } from "../../scripts/redis-server.js";
import { startOwnedRedis, type OwnedRedis } from "../../scripts/redis-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

/**
 * Finds the shared Redis (TEST_REDIS_URL, REDIS_URL or 127.0.0.1:6379) or, on a machine with none,
 * starts a private redis-server for the run. Tests never flush it: each uses its own key prefix.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const candidate = process.env.TEST_REDIS_URL ?? process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
  let owned: OwnedRedis | undefined;
  let url = candidate;
  if (!(await redisAnswers(candidate))) {
    try {
      owned = await startOwnedRedis();
    } catch (error) {
      throw new Error(
        `No Redis answers at ${candidate} and redis-server could not be started. ` +
          `Install it (apt-get install redis-server) or set TEST_REDIS_URL.`,
        { cause: error },
      );
    }
    url = owned.url;
  }
  project.provide("redisUrl", url);
  return async () => {
    await owned?.dispose();
  };
}
