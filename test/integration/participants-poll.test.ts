import { describe, expect } from "vitest";
import { createAccountGate } from "../../src/accounts/gate.js";
import { parseConfigText, resolveAccount } from "../../src/config/config.js";
import type { AccountContext, Step } from "../../src/core/interfaces.js";
import { createGraphClient } from "../../src/graph/client.js";
import { createParticipantsPoll, type PollOutcome } from "../../src/groups/participants-poll.js";
import { createLogger } from "../../src/infra/logger.js";
import { simTest, type Rig } from "../helpers/fixture.js";
import { startGatewayFixture, visit } from "../helpers/gateway.js";

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

const it = simTest();

/**
 * A gateway fixture (its own prefix, closed after the test), the file's simulator with G1 and G2
 * as every test starts (3 and 1 participants), a Graph client on it, the poll's config, and `poll`.
 */
async function setup(rig: Rig) {
  const { sim, redis } = rig;
  const fx = await startGatewayFixture({
    redis,
    name: "poll",
    links: LINKS,
    groups: ["G1", "G2"],
  });
  rig.defer(() => fx.close());
  sim.addGroup({ id: "G1", participants: 3 });
  sim.addGroup({ id: "G2", participants: 1 });
  const graph = createGraphClient({ baseUrl: sim.url });
  rig.defer(() => graph.close());
  const config = parseConfigText(
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

  return { sim, redis, fx, poll, countReads };
}

describe("participant poll", () => {
  it("stores each pool group's count from Graph, and /join skips the group it found full", async ({
    rig,
  }) => {
    const { sim, redis, fx, poll } = await setup(rig);
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

  it("reads each group once per interval across replicas", async ({ rig }) => {
    const { redis, fx, poll, countReads } = await setup(rig);
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

  it("waits when the account gate says so: no Graph call, and the claim lasts only the wait", async ({
    rig,
  }) => {
    const { redis, fx, poll, countReads } = await setup(rig);
    const { instance, outcomes } = poll(async () => 4_000);
    await instance.tick();
    expect(countReads()).toBe(0);
    expect(outcomes).toEqual(["waited", "waited"]);
    expect(await redis.pttl(fx.keys.participantsPoll("G1"))).toBeLessThanOrEqual(4_000);
    expect(await redis.hlen(fx.keys.groupParticipants)).toBe(0);
    await instance.stop();
  });

  it("the simulator answers total_participant_count and lets tests set it", async ({ rig }) => {
    const { sim } = await setup(rig);
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
