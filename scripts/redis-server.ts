import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./demo-redis.js";

export { freePort };

/** A redis-server this test owns: it may stop, kill or restart it freely. */
export interface OwnedRedis {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** SIGKILL the server (data since the last fsync may be lost; with AOF everysec, ~1 s). */
  kill(): Promise<void>;
  /** Graceful SHUTDOWN (writes AOF/RDB if enabled). */
  stop(): Promise<void>;
  /** Start again on the same port and dir (after kill or stop). */
  start(): Promise<void>;
  /** Stop and delete the data dir. */
  dispose(): Promise<void>;
}

export async function waitForRedis(url: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on("error", () => {});
    try {
      await client.connect();
      await client.ping();
      client.disconnect();
      return;
    } catch (error) {
      client.disconnect();
      if (Date.now() > deadline)
        throw new Error(`redis at ${url} did not answer in ${timeoutMs} ms`, { cause: error });
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Starts a private redis-server on a free port. `appendonly` makes the data survive kill/restart. */
export async function startOwnedRedis(
  options: {
    appendonly?: boolean;
    args?: readonly string[];
    port?: number;
    ready?: (url: string) => Promise<void>;
  } = {},
): Promise<OwnedRedis> {
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), "wa-rotator-redis-"));
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;

  const start = async () => {
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
      options.appendonly ? "yes" : "no",
      "--appendfsync",
      "always",
      "--daemonize",
      "no",
      "--logfile",
      join(dir, "redis.log"),
      ...(options.args ?? []),
    ];
    const proc = spawn("redis-server", args, { stdio: "ignore" });
    child = proc;
    await new Promise<void>((resolve, reject) => {
      proc.once("error", reject);
      proc.once("spawn", () => resolve());
    });
    await (options.ready ?? waitForRedis)(url);
  };

  const exited = (proc: ChildProcess) =>
    proc.exitCode !== null || proc.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) => proc.once("exit", () => resolve()));

  const handle: OwnedRedis = {
    port,
    url,
    dir,
    async kill() {
      if (!child) return;
      const proc = child;
      child = undefined;
      proc.kill("SIGKILL");
      await exited(proc);
    },
    async stop() {
      if (!child) return;
      const proc = child;
      child = undefined;
      proc.kill("SIGTERM");
      await exited(proc);
    },
    start,
    async dispose() {
      await handle.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await start();
  return handle;
}
