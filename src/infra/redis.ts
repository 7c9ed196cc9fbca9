import { Redis, type RedisOptions } from "ioredis";
import { RotatorError } from "../core/errors.js";
import type { Logger } from "./logger.js";
import { REDACTED } from "./redact.js";

/**
 * Logs an error event once per outage instead of once per reconnect attempt: the first of a run of
 * errors is logged, repeats are counted and summed up in the next line after `quietMs`.
 */
export function onceEvery(logger: Logger, message: string, quietMs = 60_000): (error: Error) => void {
  let last = 0;
  let suppressed = 0;
  return (error) => {
    const now = Date.now();
    if (now - last < quietMs) {
      suppressed++;
      return;
    }
    logger.error(
      { err: { message: error.message }, ...(suppressed > 0 ? { repeated: suppressed } : {}) },
      message,
    );
    last = now;
    suppressed = 0;
  };
}

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

/**
 * A connection for a one-shot command (`rotate`, `status`): it fails fast, exit 1 with a clear
 * message, instead of waiting for an unreachable Redis forever.
 */
export async function connectOneShot(url: string, name: string, logger: Logger): Promise<Redis> {
  // The failure is reported once, by the error thrown below; the connection's own warning stays quiet.
  const redis = createRedis(url, name, logger.child({}, { level: "error" }), {
    maxRetriesPerRequest: 1,
    connectTimeout: 3_000,
    retryStrategy: (times) => (times > 2 ? null : 200),
  });
  let connectError: Error | undefined;
  redis.on("error", (error: Error) => (connectError = error));
  try {
    await redis.ping();
    return redis;
  } catch (error) {
    redis.disconnect();
    const why = (connectError ?? (error as Error)).message;
    throw new RotatorError("E_REDIS_UNREACHABLE", `cannot reach Redis at ${safeRedisUrl(url)}: ${why}`);
  }
}

/** The Redis URL without its userinfo (user and password), for messages. */
export function safeRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    const hidden = parsed.username !== "" || parsed.password !== "";
    parsed.username = "";
    parsed.password = "";
    return hidden ? parsed.toString().replace("//", `//${REDACTED}@`) : parsed.toString();
  } catch {
    return "(REDIS_URL)";
  }
}
