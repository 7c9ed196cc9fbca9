import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";

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

/** redis-server is not installed: the message says how to install it. */
export class RedisMissingError extends Error {}

/**
 * Uses `url` when a Redis answers there, else starts a private redis-server on a free port. An
 * abort of `signal` while the private server starts kills it and deletes its directory at once
 * (synchronously, so a hard exit right after leaves nothing behind), and the call rejects with the
 * signal's reason. Once it has resolved, stopping the server is the caller's.
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
 * bench uses it to count commands and bytes no other client adds to. Aborting `signal` while it
 * starts kills it, as in `findOrStartRedis`; `url` (the Redis the caller looked for) is only named
 * in the message when redis-server is missing.
 */
export async function startPrivateRedis(
  options: { url?: string; signal?: AbortSignal } = {},
): Promise<DemoRedis> {
  const { signal, url } = options;
  const port = await freePort();
  signal?.throwIfAborted();
  const dir = mkdtempSync(join(tmpdir(), "wa-rotator-demo-redis-"));
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--save",
    "",
    "--appendonly",
    "no",
  ];
  // Its own process group: the terminal's Ctrl-C reaches the demo only, which stops it last.
  const proc = spawn("redis-server", [...args, "--logfile", join(dir, "redis.log")], {
    stdio: "ignore",
    detached: true,
  });
  const kill = () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  };
  const discard = () => {
    kill();
    rmSync(dir, { recursive: true, force: true });
  };
  signal?.addEventListener("abort", discard, { once: true });
  try {
    try {
      await new Promise<void>((resolve, reject) => {
        proc.once("error", reject);
        proc.once("spawn", () => resolve());
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        throw new RedisMissingError(
          `${url === undefined ? "" : `No Redis answers at ${url} and `}redis-server is not installed.\n` +
            "Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), " +
            "or point REDIS_URL at a running Redis.",
        );
      }
      throw error;
    }
    const own = `redis://127.0.0.1:${port}`;
    for (let waited = 0; !(await redisAnswers(own)); waited += 100) {
      signal?.throwIfAborted();
      if (waited > 10_000 || exited(proc))
        throw new Error(`the private redis-server on port ${port} did not start`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    signal?.throwIfAborted();
    const stop = async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        const gone = new Promise((resolve) => proc.once("exit", resolve));
        proc.kill("SIGTERM");
        await gone;
      }
      rmSync(dir, { recursive: true, force: true });
    };
    return { url: own, owned: true, stop, kill };
  } catch (error) {
    discard();
    throw error;
  } finally {
    signal?.removeEventListener("abort", discard);
  }
}

/** Deletes every key of the demo from a shared Redis (its prefix and its channel's keys). */
export async function deleteDemoKeys(url: string, prefix: string, channel: string): Promise<number> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  let deleted = 0;
  try {
    deleted += await redis.unlink(`${channel}:latest`, `${channel}:stream`);
    let cursor = "0";
    do {
      const [next, found] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
      cursor = next;
      if (found.length > 0) deleted += await redis.unlink(...found);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
  return deleted;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

const exited = (proc: ChildProcess) => proc.exitCode !== null || proc.signalCode !== null;

/** True when a Redis at `url` answers PING within a second (no retries). */
export async function redisAnswers(url: string): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1_000,
  });
  client.on("error", () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}
