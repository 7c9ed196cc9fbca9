import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Cluster } from "ioredis";
import { beforeAll, describe, expect, it } from "vitest";
import { createKeys } from "../../src/core/keys.js";
import { createDeliveryRecorder } from "../../src/gateway/webhook-receiver.js";
import { createGroupStateStore } from "../../src/groups/state.js";
import { startGraphSimulator, type GraphSimulator } from "../../src/graph-sim/simulator.js";
import type { RotationMessage } from "../../src/core/interfaces.js";
import { subscribe } from "../../src/publish/subscriber.js";
import { onEachCommand } from "../helpers/commands.js";
import { runCli, spawnCli, type CliProcess } from "../helpers/cli.js";
import { freePort } from "../../scripts/redis-server.js";
import { startOwnedCluster, suiteDir, type OwnedCluster } from "../helpers/redis-deployments.js";
import { policyYaml, TEST_TOKEN } from "../helpers/rotator.js";

/**
 * The real path on a 3-master Redis Cluster this test starts: `start`, `rotate --wait`, the
 * subscriber helper, `status`, `validate` and `/readyz`. The channel is hash-tagged (its keys share
 * a slot) and lands in another slot than the project's own keys, so the publish is the two-slot,
 * fenced one (src/publish/fenced-publish.ts).
 */
let cluster: OwnedCluster;
let sim: GraphSimulator;
let start: CliProcess | undefined;
const dir = suiteDir("wa-rotator-cluster-", () => ({ start, sim, deployment: cluster }));
const channel = "{wa}:invite-links";
const groups = ["GC1", "GC2", "GC3", "GC4"];
const config = join(dir, "rotation.yaml");
const signingSecret = "cluster-signing-secret-0123456789";
let env: Record<string, string>;

beforeAll(async () => {
  cluster = await startOwnedCluster(3);
  sim = await startGraphSimulator({ latencyMs: 5 });
  writeFileSync(
    config,
    [policyYaml(groups, channel), "links:", "  - slug: spring", `    groups: [${groups.join(", ")}]`].join(
      "\n",
    ),
  );
  env = {
    REDIS_CLUSTER_NODES: cluster.seeds,
    ROTATOR_CONFIG: config,
    GRAPH_API_BASE_URL: sim.url,
    WHATSAPP_ACCESS_TOKEN: TEST_TOKEN,
    ROTATOR_SIGNING_SECRET: signingSecret,
    HEALTH_PORT: "0",
    LOG_LEVEL: "info",
  };
}, 60_000);

describe("Redis Cluster", () => {
  it("start, rotate --wait, the subscriber helper and status work; every newest link is Graph's", async () => {
    const healthPort = await freePort();
    start = spawnCli(["start"], { ...env, HEALTH_PORT: String(healthPort) });
    await start.waitFor('"service":"worker"', 20_000);
    await waitForReady(`http://127.0.0.1:${healthPort}/readyz`);

    const client = new Cluster(cluster.nodes.map((n) => ({ host: "127.0.0.1", port: n.port })));
    const received: RotationMessage[] = [];
    const sub = await subscribe({
      redis: client,
      channel,
      secret: signingSecret,
      onMessage: (msg) => void received.push(msg),
    });
    try {
      for (let round = 1; round <= 2; round++) {
        const rotated = await runCli(["rotate", "--wait", ...groups], env);
        expect(rotated.stderr).toBe("");
        expect(rotated.code).toBe(0);
        const lines = rotated.stdout
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as RotationMessage);
        expect(lines.map((m) => m.group_id).sort()).toEqual([...groups].sort());
        for (const m of lines) expect(m.sequence).toBe(round);
      }
      await waitFor(() => received.length === groups.length * 2);
      for (const group of groups) {
        const mine = received.filter((m) => m.group_id === group);
        expect(mine.map((m) => m.sequence)).toEqual([1, 2]);
        expect(mine.at(-1)!.invite_link).toBe(sim.group(group)!.link);
        const latest = JSON.parse((await client.hget(`${channel}:latest`, group))!) as RotationMessage;
        expect(latest.invite_link).toBe(sim.group(group)!.link);
      }
      expect(await client.xlen(`${channel}:stream`)).toBe(groups.length * 2);

      const status = await runCli(["status", "--json"], env);
      expect(status.stderr).toBe("");
      const rows = JSON.parse(status.stdout) as { groups: { group_id: string; sequence: number }[] };
      expect(rows.groups.map((g) => [g.group_id, g.sequence]).sort()).toEqual(
        groups.map((g) => [g, 2]).sort(),
      );
    } finally {
      await sub.close();
      client.disconnect();
    }
  }, 120_000);

  it("the gateway sends /join visitors to a current link read from the cluster", async () => {
    const gatewayPort = await freePort();
    const gateway = spawnCli(["gateway"], {
      ...env,
      GATEWAY_PORT: String(gatewayPort),
      GATEWAY_HOST: "127.0.0.1",
    });
    try {
      await gateway.waitFor("gateway listening", 20_000);
      const answer = await fetch(`http://127.0.0.1:${gatewayPort}/join/spring`, { redirect: "manual" });
      expect(answer.status).toBe(302);
      const current = groups.map((g) => sim.group(g)!.link);
      expect(current).toContain(answer.headers.get("location"));
    } finally {
      gateway.kill("SIGKILL");
      await gateway.exited;
    }
  }, 60_000);

  it("records webhook deliveries and applies group events with registered scripts (EVALSHA after the first call)", async () => {
    const client = new Cluster(cluster.nodes.map((n) => ({ host: "127.0.0.1", port: n.port })));
    const keys = createKeys("{cluster-webhooks}");
    try {
      await client.ping();
      const sent: { name: string }[] = [];
      onEachCommand(client, (command) => sent.push(command));
      const record = createDeliveryRecorder(client, keys);
      const body = Buffer.from(JSON.stringify({ entry: [] }));
      expect([await record(body), await record(body)]).toEqual(["accepted", "duplicate"]);
      const store = createGroupStateStore(client, keys);
      const at = 1_739_321_024_000;
      await store.apply({ kind: "joined", groupId: "GW1", at, members: ["1111"], viaInviteLink: true });
      const applied = await store.apply({
        kind: "joined",
        groupId: "GW1",
        at,
        members: ["2222"],
        viaInviteLink: true,
      });
      expect(applied).toMatchObject({ changed: 1, participants: 2, joins: 2 });
      // Each script's text goes to the node once; later calls carry only its SHA1.
      expect(sent.map((c) => c.name)).toEqual(["eval", "evalsha", "eval", "evalsha"]);
      expect(await client.xlen(keys.webhookStream)).toBe(1);
    } finally {
      client.disconnect();
    }
  });

  it("validate rejects a channel without a hash tag, naming its path (exit 2)", async () => {
    const bad = join(dir, "untagged.yaml");
    writeFileSync(bad, policyYaml(["GX"], "plain:invite-links"));
    const result = await runCli(["validate"], { ...env, ROTATOR_CONFIG: bad });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/policies\[0\]\.channel/);
    expect(result.stderr).toMatch(/hash tag/);
    // The same file is fine on one node.
    const single = await runCli(["validate"], { ...env, REDIS_CLUSTER_NODES: "", ROTATOR_CONFIG: bad });
    expect(single.code).toBe(0);
  });

  it("rotate names the unreachable cluster in one line, without a stack", async () => {
    const dead = await freePort();
    const result = await runCli(["rotate", "GC1"], { ...env, REDIS_CLUSTER_NODES: `127.0.0.1:${dead}` });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/cannot reach Redis at the Redis Cluster at 127\.0\.0\.1:\d+/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});

async function waitForReady(url: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(async () => (await fetch(url).catch(() => undefined))?.status === 200, timeoutMs);
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
