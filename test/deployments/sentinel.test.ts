import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Redis } from "ioredis";
import { beforeAll, expect, it } from "vitest";
import { startGraphSimulator, type GraphSimulator } from "../../src/graph-sim/simulator.js";
import type { RotationMessage } from "../../src/core/interfaces.js";
import { subscribe } from "../../src/publish/subscriber.js";
import { runCli, spawnCli, type CliProcess } from "../helpers/cli.js";
import { startOwnedSentinel, suiteDir, waitUntil, type OwnedSentinel } from "../helpers/redis-deployments.js";
import { policyYaml, TEST_TOKEN } from "../helpers/rotator.js";

/**
 * The real path through Redis Sentinel (a master, a replica and one Sentinel this test starts):
 * `start`, `rotate --wait`, the subscriber helper, `status`. The master is killed in the middle of
 * a round of rotations; the Sentinel promotes the replica and every connection follows it. After
 * the round, every group's newest published link is the link Graph holds, and each group's stream
 * of sequences has no gap.
 */
let sentinel: OwnedSentinel;
let sim: GraphSimulator;
let start: CliProcess | undefined;
const dir = suiteDir("wa-rotator-sentinel-", () => ({ start, sim, deployment: sentinel }));
const channel = "sentinel:invite-links";
const groups = Array.from({ length: 12 }, (_, i) => `GS${i + 1}`);
let env: Record<string, string>;

beforeAll(async () => {
  sentinel = await startOwnedSentinel();
  // Graph answers slowly enough that the master dies with rotations in flight.
  sim = await startGraphSimulator({ latencyMs: 150 });
  writeFileSync(join(dir, "rotation.yaml"), policyYaml(groups, channel));
  env = {
    REDIS_SENTINELS: sentinel.sentinels,
    REDIS_SENTINEL_MASTER: sentinel.name,
    ROTATOR_CONFIG: join(dir, "rotation.yaml"),
    GRAPH_API_BASE_URL: sim.url,
    WHATSAPP_ACCESS_TOKEN: TEST_TOKEN,
    HEALTH_PORT: "0",
    ROTATOR_CONCURRENCY: "4",
    // A rotation whose worker lost its job in the failover is taken over soon.
    ROTATOR_JOB_LOCK: "4s",
    ROTATOR_STALLED_INTERVAL: "2s",
    ROTATOR_GROUP_LOCK_TTL: "3s",
  };
}, 60_000);

it("a failover in the middle of a round loses no rotation: newest links are Graph's, sequences gap-free", async () => {
  start = spawnCli(["start"], env);
  await start.waitFor('"service":"worker"', 20_000);
  const sentinels = [{ host: "127.0.0.1", port: sentinel.sentinelPort }];
  const received: RotationMessage[] = [];
  const sub = await subscribe({
    redis: { sentinels, name: sentinel.name },
    channel,
    onMessage: (msg) => void received.push(msg),
    onError: () => undefined,
  });
  const reader = new Redis({ sentinels, name: sentinel.name, maxRetriesPerRequest: null });
  reader.on("error", () => undefined);
  try {
    const first = await runCli(["rotate", "--wait", ...groups], env);
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);

    // Round two: enqueue, let a few rotations get under way, then kill the master.
    const queued = await runCli(["rotate", ...groups], env);
    expect(queued.code).toBe(0);
    await waitUntil(
      async () => sim.calls.filter((c) => c.method === "POST").length >= groups.length + 2,
      20_000,
      20,
    );
    const oldMaster = sentinel.master.port;
    await sentinel.master.kill();
    await waitUntil(async () => (await sentinel.currentMasterPort()) !== oldMaster, 30_000, 200);

    const latest = async () =>
      new Map(
        Object.entries(await reader.hgetall(`${channel}:latest`)).map(([g, raw]) => [
          g,
          JSON.parse(raw) as RotationMessage,
        ]),
      );
    await waitUntil(
      async () => {
        const now = await latest();
        return groups.every(
          (g) => now.get(g)?.sequence === 2 && now.get(g)?.invite_link === sim.group(g)?.link,
        );
      },
      60_000,
      250,
    );

    // Every group's stream: 1, 2, no gap; its newest entry is Graph's link.
    const entries = (await reader.xrange(`${channel}:stream`, "-", "+")).map(
      ([, fields]) => JSON.parse(fields[1]!) as RotationMessage,
    );
    for (const g of groups) {
      const sequences = [...new Set(entries.filter((m) => m.group_id === g).map((m) => m.sequence))];
      expect(sequences).toEqual([1, 2]);
      expect(entries.filter((m) => m.group_id === g).at(-1)!.invite_link).toBe(sim.group(g)!.link);
    }
    // The subscriber helper followed the failover: each group's newest delivery is Graph's link.
    await waitUntil(
      async () =>
        groups.every(
          (g) => received.filter((m) => m.group_id === g).at(-1)?.invite_link === sim.group(g)?.link,
        ),
      20_000,
    );

    // The worker felt the failover (its connections dropped and came back), and carried on.
    expect(start.stdout()).toMatch(/redis connection restored/);

    const status = await runCli(["status", "--json"], env);
    expect(status.stderr).toBe("");
    const rows = JSON.parse(status.stdout) as { groups: { group_id: string; sequence: number }[] };
    expect(rows.groups).toHaveLength(groups.length);
  } finally {
    await sub.close();
    reader.disconnect();
  }
}, 180_000);
