import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { channelKeys } from "../../src/core/keys.js";
import { isInviteLink } from "../../src/core/invite-link.js";
import { runCli, spawnCli, type CliProcess } from "../helpers/cli.js";
import { startHostileGraph, type HostileAnswer, type HostileGraph } from "../helpers/hostile-graph.js";
import { deleteKeys, testRedis, testRedisUrl, uniquePrefix } from "../helpers/redis.js";

/**
 * A hostile Graph against the real `worker` process (its own logger and scrubber, LOG_LEVEL=debug
 * so the usage headers are logged too): whatever it answers, the worker stays up, no part of the
 * token appears in any output, Redis key or job, nothing garbled is published, and every group
 * ends with its newest published link equal to Graph's. A throttle asking to wait a year is cut to
 * ROTATOR_THROTTLE_MAX (2 s here), and one whose wait is garbage falls back to the back-off.
 */
const TOKEN = "EAAGhostileTOKEN0123456789abcdefghijKLMNOPqrstuvwxyz";
const SCRIPTS: Record<string, HostileAnswer[]> = {
  "G-ECHO": ["echo"],
  "G-GIANT": ["giant-link"],
  "G-CTRL": ["control-link"],
  "G-HUGE": ["huge-body"],
  "G-DRIP": ["slow-drip"],
  "G-REDIRECT": ["redirect"],
  "G-HEADERS": ["many-headers"],
  "G-CUT": ["cut-body"],
  "G-WAIT": ["absurd-wait"],
  "G-GARBLED-WAIT": ["garbage-wait"],
};
const GROUPS = Object.keys(SCRIPTS);
const prefix = uniquePrefix("hostile");
const channel = `${prefix}-links`;

let graph: HostileGraph;
let redis: Redis;
let worker: CliProcess;
let dir = "";
let env: Record<string, string>;

/** Every run of 8 characters of the token that `text` contains. */
function leaks(text: string): string[] {
  const found: string[] = [];
  for (let i = 0; i + 8 <= TOKEN.length; i++)
    if (text.includes(TOKEN.slice(i, i + 8))) found.push(TOKEN.slice(i, i + 8));
  return found;
}

/** Everything stored under the given key prefixes, as text. */
async function dumpKeys(...prefixes: string[]): Promise<string> {
  const parts: string[] = [];
  for (const p of prefixes) {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${p}*`, "COUNT", 1000);
      cursor = next;
      for (const key of keys) {
        const type = await redis.type(key);
        const value =
          type === "string"
            ? await redis.get(key)
            : type === "hash"
              ? await redis.hgetall(key)
              : type === "list"
                ? await redis.lrange(key, 0, -1)
                : type === "set"
                  ? await redis.smembers(key)
                  : type === "zset"
                    ? await redis.zrange(key, 0, -1)
                    : type === "stream"
                      ? await redis.xrange(key, "-", "+")
                      : null;
        parts.push(key, JSON.stringify(value));
      }
    } while (cursor !== "0");
  }
  return parts.join("\n");
}

beforeAll(async () => {
  graph = await startHostileGraph(SCRIPTS);
  redis = testRedis();
  dir = await mkdtemp(join(tmpdir(), "rotator-hostile-"));
  const config = join(dir, "rotation.yaml");
  await writeFile(
    config,
    [
      "policies:",
      "  - name: hostile",
      '    schedule: "0 3 * * *"',
      `    channel: "${channel}"`,
      `    groups: ${JSON.stringify(GROUPS)}`,
    ].join("\n"),
  );
  env = {
    REDIS_URL: testRedisUrl(),
    ROTATOR_PREFIX: prefix,
    ROTATOR_CONFIG: config,
    GRAPH_API_BASE_URL: graph.url,
    WHATSAPP_ACCESS_TOKEN: TOKEN,
    HEALTH_PORT: "0",
    LOG_LEVEL: "debug",
    GRAPH_REQUEST_TIMEOUT: "1s",
    ROTATOR_UNSURE_SETTLE: "1s",
    ROTATOR_THROTTLE_MAX: "2s",
    ROTATOR_THROTTLE_BASE: "200ms",
  };
  worker = spawnCli(["worker"], env);
  await worker.waitFor('"service":"worker"', 20_000);
}, 30_000);

afterAll(async () => {
  worker?.kill("SIGTERM");
  await worker?.exited;
  await graph?.close();
  await deleteKeys(redis, prefix, channel);
  await redis.quit();
  await rm(dir, { recursive: true, force: true });
});

describe("a hostile Graph", () => {
  it("every group ends with Graph's link, the worker stays up, and no part of the token leaks", async () => {
    const rotate = await runCli(["rotate", ...GROUPS, "--wait", "--timeout", "90s"], env);
    expect(rotate.stderr).toBe("");
    expect(rotate.code).toBe(0);

    const latest = await redis.hgetall(channelKeys(channel).latest);
    for (const group of GROUPS) {
      const message = JSON.parse(latest[group] ?? "{}") as { invite_link?: string };
      expect(isInviteLink(message.invite_link), group).toBe(true);
      expect(message.invite_link, group).toBe(graph.current(group));
    }
    // Nothing garbled was ever published: every stream entry holds a contract-shaped link.
    for (const [, fields] of await redis.xrange(channelKeys(channel).stream, "-", "+")) {
      expect(isInviteLink((JSON.parse(fields[1]!) as { invite_link: string }).invite_link)).toBe(true);
    }

    const status = await runCli(["status", "--json"], env);
    expect(status.code).toBe(0);
    expect(worker.child.exitCode).toBeNull();
    // The worker logged the hostile answers (so the check below looked at real text).
    expect(worker.stdout()).toContain("GRAPH_TRANSIENT");
    expect(worker.stdout()).toContain("graph usage");
    expect(worker.stdout()).toContain("longer than ROTATOR_THROTTLE_MAX");
    const outputs = {
      workerStdout: worker.stdout(),
      workerStderr: worker.stderr(),
      rotate: rotate.stdout + rotate.stderr,
      status: status.stdout + status.stderr,
      redis: await dumpKeys(prefix, channel),
    };
    for (const [where, text] of Object.entries(outputs)) expect(leaks(text), where).toEqual([]);
    // Every worker line is JSON (no stray stacks or warnings on the service's output).
    for (const line of worker.stdout().split("\n").filter(Boolean))
      expect(() => JSON.parse(line) as unknown).not.toThrow();
  }, 120_000);
});
