import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "./logger.js";

/**
 * Opens a Redis connection for the project. Commands wait across reconnects (no per-request retry
 * limit, as BullMQ requires), reconnects back off up to 2 s, and connection errors are logged at
 * most once per outage instead of once per attempt.
 */
export function createRedis(url: string, name: string, logger: Logger, extra: RedisOptions = {}): Redis {
  const redis = new Redis(url, {
    connectionName: `wa-invite-rotator:${name}`,
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2_000),
    ...extra,
  });
  let down = false;
  redis.on("error", (error: Error) => {
    if (down) return;
    down = true;
    logger.warn({ connection: name, err: { message: error.message } }, "redis connection error");
  });
  redis.on("ready", () => {
    if (down) logger.info({ connection: name }, "redis connection restored");
    down = false;
  });
  return redis;
}
