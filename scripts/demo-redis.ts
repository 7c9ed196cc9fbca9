import { Redis } from "ioredis";
import { deleteKeys, RedisMissingError, redisAnswers, startOwnedRedis } from "./redis-server.js";

export { freePort, RedisMissingError, redisAnswers } from "./redis-server.js";

/** The Redis the demo uses: the one at REDIS_URL, or a private redis-server it started. */
export interface DemoRedis {
  readonly url: string;
  /** True when the demo started it (and stops it); false for a Redis others share. */
  readonly owned: boolean;
  /** Stops a private server and deletes its directory; nothing for a shared one. */
  stop(): Promise<void>;
  /** Kills a private server at once (for a hard exit). */
  kill(): void;
}

/**
 * Uses `url` when a Redis answers there, else starts a private redis-server on a free port. An
 * abort of `signal` while the private server starts kills it and deletes its directory at once,
 * and the call rejects with the signal's reason. Once it has resolved, stopping the server is the
 * caller's.
 */
export async function findOrStartRedis(
  url: string,
  options: { signal?: AbortSignal } = {},
): Promise<DemoRedis> {
  const { signal } = options;
  signal?.throwIfAborted();
  const shared = await redisAnswers(url);
  signal?.throwIfAborted();
  if (shared) return { url, owned: false, stop: async () => undefined, kill: () => undefined };
  return startPrivateRedis({ url, ...(signal && { signal }) });
}

/**
 * Starts a private redis-server on a free port (no persistence), whatever answers elsewhere; the
 * bench uses it to count commands and bytes no other client adds to. In its own process group:
 * the terminal's Ctrl-C reaches the demo only, which stops it last. `url` (the Redis the caller
 * looked for) is only named in the message when redis-server is missing.
 */
export async function startPrivateRedis(
  options: { url?: string; signal?: AbortSignal } = {},
): Promise<DemoRedis> {
  const { signal, url } = options;
  try {
    const server = await startOwnedRedis({ detached: true, ...(signal && { signal }) });
    return {
      url: server.url,
      owned: true,
      stop: async () => {
        await server.stop();
        await server.dispose();
      },
      kill: () => void server.kill(),
    };
  } catch (error) {
    if (error instanceof RedisMissingError && url !== undefined)
      throw new RedisMissingError(`No Redis answers at ${url} and ${error.message}`);
    throw error;
  }
}

/** Deletes every key of the demo from a shared Redis (its prefix and its channel's keys). */
export async function deleteDemoKeys(url: string, prefix: string, channel: string): Promise<number> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    return await deleteKeys(redis, `${prefix}:`, `${channel}:`);
  } finally {
    redis.disconnect();
  }
}
