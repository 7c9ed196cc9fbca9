import { Worker } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { rotateGroup, type RotateGroupDeps } from "../../src/rotation/saga.js";
import { createAccountGate } from "../../src/accounts/gate.js";
import { createAccountProbe } from "../../src/accounts/probe.js";
import { parseConfigText } from "../../src/config/config.js";
import { GraphError } from "../../src/graph/errors.js";
import { createGroupLock } from "../../src/rotation/group-lock.js";
import type { AccountContext, GraphPort, RotationJobData } from "../../src/core/interfaces.js";
import { createKeys } from "../../src/core/keys.js";
import { createLogger } from "../../src/infra/logger.js";
import { parseMessage } from "../../src/publish/message.js";
import { createPublisher } from "../../src/publish/publisher.js";
import { createRotationStateStore } from "../../src/rotation/state.js";
import { openTestQueue, type TestQueue } from "../helpers/faults.js";
import { deleteKeys, testRedis, uniquePrefix } from "../helpers/redis.js";
import { policyYaml, TEST_TOKEN } from "../helpers/rotator.js";

/**
 * Orderings of several rotations of one group, against a model Graph (one current link per group,
 * calls that time out and land or not, as each test plans) and the real Redis state, lock and
 * publisher. Each asserts the promise: Graph holds the newest published link, nothing twice.
 */
const redis: Redis = testRedis();
const prefixes: string[] = [];
const queues: TestQueue[] = [];
afterEach(async () => {
  for (const q of queues.splice(0)) await q.close();
  await deleteKeys(redis, ...prefixes.splice(0));
});
afterAll(() => redis.quit());

const account: AccountContext = { name: "default", token: "tok", graphApiVersion: "v23.0" };
const timeout = (operation: "delete-invite-link" | "create-invite-link") =>
  new GraphError({
    code: "GRAPH_TIMEOUT",
    action: "retry",
    scope: "request",
    operation,
    detail: "timed out",
  });
const refused = () =>
  new GraphError({
    code: "GRAPH_PERMISSION",
    action: "stop",
    scope: "account",
    operation: "get-invite-link",
    detail: "no read permission",
    graphCode: 200,
  });

type Plan = "ok" | "unsure-landed" | "unsure-not-landed" | { hang: Promise<void>; land: boolean };

function modelGraph(withGet = true) {
  let link: string | undefined = "https://chat.whatsapp.com/INITIAL_abcdefghij";
  let n = 0;
  const deletes: Plan[] = [];
  const creates: Plan[] = [];
  const gets: Array<Error | null> = [];
  const calls: string[] = [];
  const graph: GraphPort = {
    async deleteInviteLink() {
      calls.push("DELETE");
      const plan = deletes.shift() ?? "ok";
      if (typeof plan === "object") {
        await plan.hang;
        if (plan.land) link = undefined;
        throw timeout("delete-invite-link");
      }
      if (plan !== "unsure-not-landed") link = undefined;
      if (plan !== "ok") throw timeout("delete-invite-link");
    },
    async createInviteLink() {
      calls.push("POST");
      const plan = creates.shift() ?? "ok";
      const fresh = `https://chat.whatsapp.com/L${++n}_abcdefghij`;
      if (plan !== "unsure-not-landed") link = fresh;
      if (plan !== "ok") throw timeout("create-invite-link");
      return fresh;
    },
    ...(withGet
      ? {
          async getInviteLink() {
            calls.push("GET");
            const next = gets.shift();
            if (next) throw next;
            return link;
          },
        }
      : {}),
  };
  return { graph, deletes, creates, gets, calls, current: () => link };
}

function setup(graph: GraphPort, lockTtlMs = 2_000) {
  const prefix = uniquePrefix("orderings");
  prefixes.push(prefix);
  const keys = createKeys(prefix);
  const channel = `${prefix}-links`;
  prefixes.push(channel);
  let now = Date.now();
  const clock = { now: () => now };
  const failingPublisher = { fail: 0 };
  const real = createPublisher({ redis, keys, clock });
  const deps: RotateGroupDeps = {
    graph,
    publisher: {
      publish: async (input) => {
        if (failingPublisher.fail > 0) {
          failingPublisher.fail--;
          throw new Error("redis went away before publish");
        }
        return real.publish(input);
      },
    },
    state: createRotationStateStore(redis, keys),
    lock: createGroupLock(redis, keys, lockTtlMs),
    resolveAccount: () => account,
    clock,
    logger: createLogger("silent"),
    unsureSettleMs: 1_000,
  };
  const job = (rotationId: string, trigger: RotationJobData["trigger"] = "manual"): RotationJobData => ({
    rotationId,
    groupId: "G1",
    account: "default",
    policy: trigger === "manual" ? null : "nightly",
    channel,
    trigger,
    requestedAt: 0,
  });
  const stream = async () =>
    (await redis.xrange(`${channel}:stream`, "-", "+")).map(([, f]) => parseMessage(f[1]!));
  return {
    deps,
    keys,
    channel,
    job,
    stream,
    failingPublisher,
    advance: (ms: number) => (now += ms),
  };
}

describe("unsure marks and the saga, across rotations of one group", () => {
  it("a start-over whose DELETE is unsure forgets its old link: it publishes a new one, never one twice", async () => {
    const g = modelGraph();
    const s = setup(g.graph);
    // R1: DELETE, POST L1, publish fails (Redis hiccup); it will retry later.
    s.failingPublisher.fail = 1;
    await expect(rotateGroup(s.job("R1"), s.deps, { owner: "r1a" })).rejects.toThrow("redis went away");
    // R2 (manual): rotates and publishes L2 (sequence 1).
    const r2 = await rotateGroup(s.job("R2"), s.deps, { owner: "r2" });
    expect(r2).toMatchObject({
      kind: "published",
      message: { invite_link: "https://chat.whatsapp.com/L2_abcdefghij" },
    });
    // R3: its DELETE times out and does not land; it is in back-off (or failed for good). Mark set.
    g.deletes.push("unsure-not-landed");
    await expect(rotateGroup(s.job("R3"), s.deps, { owner: "r3" })).rejects.toThrow();
    // R1 retries: superseded is ruled out by the mark, so it starts over; its DELETE is unsure too.
    g.deletes.push("unsure-not-landed");
    await expect(rotateGroup(s.job("R1"), s.deps, { owner: "r1b" })).rejects.toThrow();
    s.advance(5_000); // both marks have settled
    const r1 = await rotateGroup(s.job("R1"), s.deps, { owner: "r1c" });
    const links = (await s.stream()).map((m) => m.invite_link);
    expect(links.at(-1)).toBe(g.current());
    // Contract: nothing published twice (unique links per group in the stream).
    expect(links, JSON.stringify({ r1, calls: g.calls })).toEqual([...new Set(links)]);
  });

  it("the same ordering with the read-back refused (stop) publishes the link Graph holds, not the stale one", async () => {
    const g = modelGraph();
    const s = setup(g.graph);
    s.failingPublisher.fail = 1;
    await expect(rotateGroup(s.job("R1"), s.deps, { owner: "r1a" })).rejects.toThrow();
    await rotateGroup(s.job("R2"), s.deps, { owner: "r2" });
    g.deletes.push("unsure-not-landed");
    await expect(rotateGroup(s.job("R3"), s.deps, { owner: "r3" })).rejects.toThrow();
    g.deletes.push("unsure-not-landed");
    await expect(rotateGroup(s.job("R1"), s.deps, { owner: "r1b" })).rejects.toThrow();
    s.advance(5_000);
    g.gets.push(refused());
    const r1 = await rotateGroup(s.job("R1"), s.deps, { owner: "r1c" });
    const last = (await s.stream()).at(-1)!;
    expect(last.invite_link, JSON.stringify({ r1, calls: g.calls })).toBe(g.current());
  });

  it("a stalled delivery's DELETE landing after the other delivery published: the sweep enqueues a recovery rotation", async () => {
    const g = modelGraph();
    const s = setup(g.graph, 300);
    const lines: string[] = [];
    const logger = createLogger("info", { write: (l: string) => void lines.push(l) });
    let release!: () => void;
    const hang = new Promise<void>((r) => (release = r));
    g.deletes.push({ hang, land: true });
    // Delivery A of R1 sends its DELETE and stalls; its lock expires (simulated) meanwhile.
    const a = rotateGroup(s.job("R1"), s.deps, { owner: "A" }).catch((e: unknown) => e);
    while (!g.calls.includes("DELETE")) await new Promise((r) => setTimeout(r, 5));
    await redis.del(s.keys.groupLock("G1"));
    // Delivery B of R1 runs the whole rotation and publishes.
    const b = await rotateGroup(s.job("R1"), s.deps, { owner: "B" });
    expect(b.kind).toBe("published");
    // A's DELETE lands late and times out; A records the unsure call.
    release();
    await a;
    expect(g.current()).toBeUndefined(); // the group has no link; subscribers hold a dead one
    expect(await redis.smembers(s.keys.withoutLinkIndex)).toContain("G1");
    expect(await redis.hget(s.keys.group("G1"), "graph_owner")).toBe("R1");

    // The job R1 is completed in BullMQ (B finished it). Run the sweep.
    const tq = await openTestQueue(redis, s.keys.prefix);
    queues.push(tq);
    await tq.queue.add("rotate", s.job("R1"), { jobId: "R1" });
    const w = new Worker(s.keys.rotationQueue, async () => b, {
      connection: redis.duplicate(),
      prefix: s.keys.prefix,
    });
    await (await tq.queue.getJob("R1"))!.waitUntilFinished(tq.events, 5_000);
    await w.close();
    const config = parseConfigText(
      policyYaml(["G1"], s.channel),
      "t.yaml",
      { WHATSAPP_ACCESS_TOKEN: TEST_TOKEN },
      {
        graphApiVersion: "v23.0",
      },
    );
    const probe = createAccountProbe({
      redis,
      keys: s.keys,
      queue: tq.queue,
      gate: createAccountGate({ redis, keys: s.keys, logger, recheckMs: 100 }),
      config: () => config,
      logger,
      intervalMs: 100,
      graph: { getGroup: async (_a, id) => ({ id }) },
    });
    await probe.tick();
    const counts = await tq.queue.getJobCounts("waiting", "delayed", "active", "prioritized");
    const redriven = Object.values(counts).reduce((x, y) => x + y, 0);
    expect(redriven).toBe(1);
    expect(await tq.queue.getJob("recover-R1")).toBeDefined();
    expect(lines.some((l) => l.includes("GROUP WITHOUT INVITE LINK"))).toBe(true);
    // A second sweep does not enqueue it again.
    await probe.tick();
    const again = await tq.queue.getJobCounts("waiting", "delayed", "active", "prioritized");
    expect(Object.values(again).reduce((x, y) => x + y, 0)).toBe(1);
  });

  it("without a read-back port the mark is cleared once its window has passed", async () => {
    const g = modelGraph(false);
    const s = setup(g.graph);
    g.deletes.push("unsure-not-landed");
    await expect(rotateGroup(s.job("R0"), s.deps, { owner: "r0" })).rejects.toThrow();
    s.advance(5_000);
    await rotateGroup(s.job("R0"), s.deps, { owner: "r0b" });
    expect(await redis.hget(s.keys.group("G1"), "unsure_until")).toBeNull();
  });
});
