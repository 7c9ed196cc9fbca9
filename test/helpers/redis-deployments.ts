import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import { afterAll } from "vitest";
import type { GraphSimulator } from "../../src/graph-sim/simulator.js";
import type { CliProcess } from "./cli.js";
import { freePort, startOwnedRedis, type OwnedRedis } from "../../scripts/redis-server.js";

const run = promisify(execFile);

/** A Redis Cluster of three masters this test owns, on free ports. */
export interface OwnedCluster {
  readonly nodes: readonly OwnedRedis[];
  /** `host:port,…`, as REDIS_CLUSTER_NODES. */
  readonly seeds: string;
  dispose(): Promise<void>;
}

export async function startOwnedCluster(masters = 3): Promise<OwnedCluster> {
  const nodes: OwnedRedis[] = [];
  try {
    for (let i = 0; i < masters; i++) {
      nodes.push(
        await startOwnedRedis({
          args: [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
          ],
        }),
      );
    }
    const addresses = nodes.map((n) => `127.0.0.1:${n.port}`);
    await run("redis-cli", ["--cluster", "create", ...addresses, "--cluster-yes"], { timeout: 20_000 });
    await waitUntil(async () => {
      const infos = await Promise.all(nodes.map((n) => command(n.url, "CLUSTER", "INFO")));
      return infos.every((info) => String(info).includes("cluster_state:ok"));
    }, 20_000);
    return {
      nodes,
      seeds: addresses.join(","),
      async dispose() {
        await Promise.all(nodes.map((n) => n.dispose()));
      },
    };
  } catch (error) {
    await Promise.all(nodes.map((n) => n.dispose()));
    throw error;
  }
}

/** A master, a replica and one Sentinel watching them, all owned by the test. */
export interface OwnedSentinel {
  readonly master: OwnedRedis;
  readonly replica: OwnedRedis;
  readonly sentinelPort: number;
  /** The name the Sentinel knows the master by (REDIS_SENTINEL_MASTER). */
  readonly name: string;
  /** `127.0.0.1:port`, as REDIS_SENTINELS. */
  readonly sentinels: string;
  /** The port of the server the Sentinel names master now. */
  currentMasterPort(): Promise<number>;
  dispose(): Promise<void>;
}

export async function startOwnedSentinel(name = "rotator-test"): Promise<OwnedSentinel> {
  const master = await startOwnedRedis();
  const replica = await startOwnedRedis({ args: ["--replicaof", "127.0.0.1", String(master.port)] });
  const sentinelPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "wa-rotator-sentinel-"));
  const conf = join(dir, "sentinel.conf");
  writeFileSync(
    conf,
    [
      `port ${sentinelPort}`,
      "bind 127.0.0.1",
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${master.port} 1`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 5000`,
      `sentinel parallel-syncs ${name} 1`,
      "",
    ].join("\n"),
  );
  let sentinel: OwnedRedis | undefined;
  const sentinelUrl = `redis://127.0.0.1:${sentinelPort}`;
  const dispose = async () => {
    await Promise.all([sentinel?.dispose(), master.dispose(), replica.dispose()]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    sentinel = await startOwnedRedis({ port: sentinelPort, config: conf, args: ["--sentinel"] });
    // The replica is in sync and known to the Sentinel before the test relies on a failover.
    await waitUntil(async () => {
      const info = String(await command(master.url, "INFO", "replication"));
      const replicas = (await command(sentinelUrl, "SENTINEL", "REPLICAS", name)) as unknown[];
      return /connected_slaves:1/.test(info) && /state=online/.test(info) && replicas.length === 1;
    }, 20_000);
    const currentMasterPort = async () => {
      const [, port] = (await command(sentinelUrl, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)) as string[];
      return Number(port);
    };
    return {
      master,
      replica,
      sentinelPort,
      name,
      sentinels: `127.0.0.1:${sentinelPort}`,
      currentMasterPort,
      dispose,
    };
  } catch (error) {
    await dispose();
    throw error;
  }
}

/** One command on a short-lived connection. */
export async function command(url: string, name: string, ...args: string[]): Promise<unknown> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on("error", () => undefined);
  try {
    await client.connect();
    return await client.call(name, ...args);
  } finally {
    client.disconnect();
  }
}

export async function waitUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  stepMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`condition not met in ${timeoutMs} ms`, { cause: last });
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/**
 * A deployment suite's folder (`prefix` + random), removed after its last test together with what
 * `parts` names then: the `start` process (SIGKILL), the simulator and the deployment.
 */
export function suiteDir(
  prefix: string,
  parts: () => { start?: CliProcess; sim?: GraphSimulator; deployment?: { dispose(): Promise<void> } },
): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(async () => {
    const { start, sim, deployment } = parts();
    start?.kill("SIGKILL");
    await start?.exited;
    await sim?.close();
    await deployment?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}
