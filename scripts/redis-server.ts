import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { endWithThisProcess } from "./children.js";

/**
 * The one redis-server spawner and key deleter of the demo, the bench and the tests: a private
 * server on a free port in a temporary directory, owned (stopped, killed, restarted) by its caller.
 */

/** A redis-server its caller owns: it may stop, kill or restart it freely. */
export interface OwnedRedis {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** SIGKILL the server (data since the last fsync may be lost). Sent at once; resolves on exit. */
  kill(): Promise<void>;
  /** Graceful SHUTDOWN (writes AOF/RDB if enabled). */
  stop(): Promise<void>;
  /** Start again on the same port and dir (after kill or stop). */
  start(): Promise<void>;
  /** Kill the server and delete its data dir. */
  dispose(): Promise<void>;
}

export interface RedisServerOptions {
  /** Keep the data in an append-only file (fsync always), so it survives kill and restart. */
  appendonly?: boolean;
  /** A config file to read first (a Sentinel's, which it rewrites: keep it writable). */
  config?: string;
  /** More redis-server arguments (cluster, replica-of, --sentinel...). */
  args?: readonly string[];
  /** Default: a free port. */
  port?: number;
  /** How to wait for it to serve; default: until it answers PING (10 s at most). */
  ready?: (url: string) => Promise<void>;
  /** Its own process group: a terminal's Ctrl-C reaches the caller only, which stops it last. */
  detached?: boolean;
  /**
   * An abort while the first start is under way kills the server and deletes its directory at once
   * (synchronously, so a hard exit right after leaves nothing behind); the call rejects with the
   * signal's reason.
   */
  signal?: AbortSignal;
}

/** redis-server is not installed: the message says how to install it. */
export class RedisMissingError extends Error {}

/** Starts a private redis-server (no RDB snapshots) on a free port, in a directory of its own. */
export async function startOwnedRedis(options: RedisServerOptions = {}): Promise<OwnedRedis> {
  const { signal } = options;
  const port = options.port ?? (await freePort());
  signal?.throwIfAborted();
  const dir = mkdtempSync(join(tmpdir(), "wa-rotator-redis-"));
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;

  const start = async () => {
    const args = [
      ...(options.config === undefined ? [] : [options.config]),
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--save",
      "",
      "--appendonly",
      options.appendonly ? "yes" : "no",
      "--appendfsync",
      "always",
      "--daemonize",
      "no",
      "--logfile",
      join(dir, "redis.log"),
      ...(options.args ?? []),
    ];
    const proc = endWithThisProcess(
      spawn("redis-server", args, { stdio: "ignore", detached: options.detached ?? false }),
    );
    child = proc;
    try {
      await new Promise<void>((resolve, reject) => {
        proc.once("error", reject);
        proc.once("spawn", () => resolve());
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT")
        throw new RedisMissingError(
          "redis-server is not installed.\nInstall it (Debian/Ubuntu: apt-get install redis-server; " +
            "macOS: brew install redis), or point REDIS_URL at a running Redis.",
        );
      throw error;
    }
    await (options.ready ?? ((u) => waitForRedis(u, 10_000, { signal, process: proc })))(url);
  };

  const handle: OwnedRedis = {
    port,
    url,
    dir,
    kill() {
      if (!child) return Promise.resolve();
      const proc = child;
      child = undefined;
      if (!exited(proc)) proc.kill("SIGKILL");
      return exit(proc);
    },
    async stop() {
      if (!child) return;
      const proc = child;
      child = undefined;
      if (!exited(proc)) proc.kill("SIGTERM");
      await exit(proc);
    },
    start,
    async dispose() {
      await handle.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const discard = () => {
    void handle.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  signal?.addEventListener("abort", discard, { once: true });
  try {
    await start();
    signal?.throwIfAborted();
    return handle;
  } catch (error) {
    discard();
    throw error;
  } finally {
    signal?.removeEventListener("abort", discard);
  }
}

/** Waits until a Redis at `url` answers PING; fails after `timeoutMs`, on abort, or if `process` exits. */
export async function waitForRedis(
  url: string,
  timeoutMs = 10_000,
  options: { signal?: AbortSignal | undefined; process?: ChildProcess } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await redisAnswers(url))) {
    options.signal?.throwIfAborted();
    if (options.process && exited(options.process)) throw new Error(`the redis-server for ${url} exited`);
    if (Date.now() > deadline) throw new Error(`redis at ${url} did not answer in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

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

/** Deletes every key that starts with one of `prefixes` (SCAN, then UNLINK); returns how many. */
export async function deleteKeys(redis: Redis, ...prefixes: string[]): Promise<number> {
  let deleted = 0;
  for (const prefix of prefixes) {
    let cursor = "0";
    do {
      const [next, found] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      cursor = next;
      if (found.length > 0) deleted += await redis.unlink(...found);
    } while (cursor !== "0");
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

const exit = (proc: ChildProcess) =>
  exited(proc) ? Promise.resolve() : new Promise<void>((resolve) => proc.once("exit", () => resolve()));
