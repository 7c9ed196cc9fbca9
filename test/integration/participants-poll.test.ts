import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createAccountGate } from "../../src/accounts/gate.js";
import { parseConfigText, resolveAccount, type ResolvedConfig } from "../../src/config/config.js";
import type { AccountContext, Step } from "../../src/core/interfaces.js";
import { createGraphClient, type GraphClient } from "../../src/graph/client.js";
import { createParticipantsPoll, type PollOutcome } from "../../src/groups/participants-poll.js";
import { startGraphSimulator, type GraphSimulator } from "../../src/graph-sim/simulator.js";
import { createLogger } from "../../src/infra/logger.js";
import { startGatewayFixture, visit, type GatewayFixture } from "../helpers/gateway.js";
import { testRedis } from "../helpers/redis.js";

/**
 * The participant poll (`participants_poll` of a link): the worker side reads each pool group's
 * `total_participant_count` from Graph (here the simulator), through the account gate, once per
 * interval across replicas, and the gateway skips a group the poll found full.
 */
const LINKS = [
  "  - slug: spring",
  "    groups: [G1, G2]",
  "    capacity: 3",
  "    participants_poll: 1m",
].join("\n");
const TOKEN = "poll-test-token-123456";

let redis: Redis;
let fx: GatewayFixture;
let sim: GraphSimulator;
let graph: GraphClient;
let config: ResolvedConfig;

beforeEach(async () => {
  redis = testRedis();
  fx = await startGatewayFixture({
    redis,
    name: "poll",
    links: LINKS,
    groups: ["G1", "G2"],
  });
  sim = await startGraphSimulator({
    groups: [
      { id: "G1", participants: 3 },
      { id: "G2", participants: 1 },
    ],
  });
  graph = createGraphClient({ baseUrl: sim.url });
  config = parseConfigText(
    [
      "policies:",
      "  - name: pool",
      '    schedule: "0 3 * * *"',
      `    channel: "${fx.channel}"`,
      "    groups: [G1, G2]",
      "links:",
      LINKS,
    ].join("\n"),
    "poll-test.yaml",
    { WHATSAPP_ACCESS_TOKEN: TOKEN },
    { graphApiVersion: "v23.0" },
  );
});

afterEach(async () => {
  await fx.close();
  await graph.close();
  await sim.close();
  await redis.quit();
});

function poll(beforeGraphCall?: (a: AccountContext, s: Step, g: string) => Promise<number | undefined>) {
  const gate = createAccountGate({ redis, keys: fx.keys, logger: createLogger("silent") });
  const outcomes: PollOutcome[] = [];
  const gated: string[] = [];
  const instance = createParticipantsPoll({
    redis,
    keys: fx.keys,
    graph,
    config: () => config,
    resolveAccount: (name) => resolveAccount(config, name),
    beforeGraphCall: async (account, step, groupId) => {
      gated.push(groupId);
      return (beforeGraphCall ?? gate.beforeGraphCall)(account, step, groupId);
    },
    throttled: (account, error) => gate.throttled(account, error),
    logger: createLogger("silent"),
    onPolled: (outcome) => outcomes.push(outcome),
  });
  return { instance, outcomes, gated };
}

const countReads = () =>
  sim.calls.filter((c) => c.method === "GET" && c.path.includes("total_participant_count")).length;

describe("participant poll", () => {
  it("stores each pool group's count from Graph, and /join skips the group it found full", async () => {
    const links = { G1: await fx.rotate("G1"), G2: await fx.rotate("G2") };
    const before = new Set<string | null>();
    for (let i = 0; i < 4; i++) before.add((await visit(`${fx.url}/join/spring`)).headers.get("location"));
    expect(before).toEqual(new Set([links.G1, links.G2]));

    const { instance, outcomes, gated } = poll();
    await instance.tick();
    expect(outcomes).toEqual(["stored", "stored"]);
    // Every read passed the account gate first, under a ticket of its own.
    expect(gated.sort()).toEqual(["participants G1", "participants G2"]);
    expect(await redis.hgetall(fx.keys.groupParticipants)).toEqual({ G1: "3", G2: "1" });

    for (let i = 0; i < 4; i++) {
      const res = await visit(`${fx.url}/join/spring`);
      expect(res.status).toBe(302);
      expect(res.headers.get("location")).toBe(links.G2);
    }

    // G2 fills up too: the next read (a new interval) finds it full, and the link answers 503.
    sim.setParticipants("G2", 3);
    await redis.del(fx.keys.participantsPoll("G2"));
    await instance.tick();
    expect((await visit(`${fx.url}/join/spring`)).status).toBe(503);
    await instance.stop();
  });

  it("reads each group once per interval across replicas", async () => {
    const a = poll();
    const b = poll();
    await Promise.all([a.instance.tick(), b.instance.tick()]);
    await Promise.all([a.instance.tick(), b.instance.tick()]);
    expect(countReads()).toBe(2);
    expect([...a.outcomes, ...b.outcomes]).toEqual(["stored", "stored"]);
    const ttl = await redis.pttl(fx.keys.participantsPoll("G1"));
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    await Promise.all([a.instance.stop(), b.instance.stop()]);
  });

  it("waits when the account gate says so: no Graph call, and the claim lasts only the wait", async () => {
    const { instance, outcomes } = poll(async () => 4_000);
    await instance.tick();
    expect(countReads()).toBe(0);
    expect(outcomes).toEqual(["waited", "waited"]);
    expect(await redis.pttl(fx.keys.participantsPoll("G1"))).toBeLessThanOrEqual(4_000);
    expect(await redis.hlen(fx.keys.groupParticipants)).toBe(0);
    await instance.stop();
  });

  it("the simulator answers total_participant_count and lets tests set it", async () => {
    const url = `${sim.url}/v23.0/G1?fields=subject,total_participant_count`;
    const auth = { authorization: `Bearer ${TOKEN}` };
    expect(await (await fetch(url, { headers: auth })).json()).toMatchObject({
      id: "G1",
      total_participant_count: 3,
    });
    const set = await fetch(`${sim.url}/__sim/groups/G1/participants`, {
      method: "POST",
      body: JSON.stringify({ count: 7 }),
    });
    expect(set.status).toBe(204);
    expect(sim.group("G1")?.participants).toBe(7);
  });
});
