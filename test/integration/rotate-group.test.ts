import type { Redis } from "ioredis";
import { getEventListeners } from "node:events";
import { afterAll, beforeEach, describe, expect, it, onTestFinished } from "vitest";
import { rotateGroup, type RotateGroupDeps } from "../../src/rotation/saga.js";
import { LockLostError } from "../../src/core/errors.js";
import { createGroupLock } from "../../src/rotation/group-lock.js";
import type {
  AccountContext,
  GraphPort,
  PublishInput,
  RotationJobData,
  RotationMessage,
} from "../../src/core/interfaces.js";
import { createKeys, PUBLISHED_ROTATION_TTL_MS } from "../../src/core/keys.js";
import { createLogger } from "../../src/infra/logger.js";
import { rotationMessage } from "../../src/publish/message.js";
import { createPublisher } from "../../src/publish/publisher.js";
import { createRotationStateStore } from "../../src/rotation/state.js";
import { createAccountGate, type AccountGateOptions } from "../../src/accounts/gate.js";
import { onEachCommand } from "../helpers/commands.js";
import { rotationJob } from "../helpers/faults.js";
import { deleteKeys, testRedis, uniquePrefix } from "../helpers/redis.js";

/** The saga alone: a scripted Graph, a recording publisher, real Redis for state and lock. */
const redis: Redis = testRedis();
afterAll(() => redis.quit());

const account: AccountContext = { name: "default", token: "tok", graphApiVersion: "v23.0" };

function scriptedGraph(script: { delete?: Array<Error | null>; create?: Array<Error | string> } = {}) {
  const calls: string[] = [];
  let links = 0;
  const graph: GraphPort = {
    async deleteInviteLink(_account, groupId) {
      calls.push(`DELETE ${groupId}`);
      const next = script.delete?.shift();
      if (next) throw next;
    },
    async createInviteLink(_account, groupId) {
      calls.push(`POST ${groupId}`);
      const next = script.create?.shift();
      if (next instanceof Error) throw next;
      return next ?? `https://chat.whatsapp.com/LINK${++links}_abcdefghij`;
    },
  };
  return { graph, calls };
}

function recordingPublisher() {
  const published: PublishInput[] = [];
  return {
    published,
    publisher: {
      async publish(input: PublishInput): Promise<RotationMessage> {
        published.push(input);
        return rotationMessage(input, published.length);
      },
    },
  };
}

let prefix: string;
beforeEach(async () => {
  if (prefix) await deleteKeys(redis, prefix);
  prefix = uniquePrefix("saga");
});
afterAll(async () => deleteKeys(redis, prefix));

function setup(graph: GraphPort, publisher = recordingPublisher().publisher) {
  const keys = createKeys(prefix);
  const deps: RotateGroupDeps = {
    graph,
    publisher,
    state: createRotationStateStore(redis, keys),
    lock: createGroupLock(redis, keys, 2_000),
    resolveAccount: () => account,
    clock: { now: () => Date.parse("2026-11-25T10:00:00.123Z") },
    logger: createLogger("silent"),
  };
  return { deps, keys };
}

const job = (groupId = "G1", rotationId = "r-1"): RotationJobData => rotationJob({ rotationId, groupId });

/**
 * The saga's real ports on a connection of their own (`counted`, quit when the test ends), with the
 * account gate (`options`) on it checked before each Graph call.
 */
function gatedDeps(options: Omit<AccountGateOptions, "redis" | "keys" | "logger">, graph: GraphPort) {
  const counted = redis.duplicate();
  onTestFinished(async () => void (await counted.quit()));
  const keys = createKeys(prefix);
  const gate = createAccountGate({ redis: counted, keys, logger: createLogger("silent"), ...options });
  const deps: RotateGroupDeps = {
    graph,
    publisher: createPublisher({ redis: counted, keys }),
    state: createRotationStateStore(counted, keys),
    lock: createGroupLock(counted, keys, 2_000),
    resolveAccount: () => account,
    beforeGraphCall: gate.beforeGraphCall,
    gateCheck: gate.checkCall,
    clock: { now: () => Date.now() },
    logger: createLogger("silent"),
  };
  return { counted, keys, gate, deps };
}

describe("rotation saga", () => {
  it("deletes, creates, then publishes the created link", async () => {
    const { graph, calls } = scriptedGraph();
    const rec = recordingPublisher();
    const { deps } = setup(graph, rec.publisher);
    const outcome = await rotateGroup(job(), deps, { owner: "a" });
    expect(calls).toEqual(["DELETE G1", "POST G1"]);
    expect(outcome).toMatchObject({ kind: "published", resumedAt: "delete" });
    expect(rec.published).toEqual([
      expect.objectContaining({
        inviteLink: "https://chat.whatsapp.com/LINK1_abcdefghij",
        rotationId: "r-1",
        policy: "nightly",
      }),
    ]);
  });

  it("a second delivery after the published saga state expired rotates nothing and publishes nothing", async () => {
    const { graph, calls } = scriptedGraph();
    const { deps, keys } = setup(graph);
    const publisher = createPublisher({ redis, keys, clock: deps.clock });
    // On a channel under the test's prefix, so its keys are deleted with it.
    const data = { ...job(), channel: `${prefix}:links` };
    const first = await rotateGroup(data, { ...deps, publisher }, { owner: "a" });
    expect(first.kind).toBe("published");
    // Published, the saga state expires within the hour (PUBLISHED_ROTATION_TTL_MS).
    const ttl = await redis.pttl(keys.rotation("r-1"));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(PUBLISHED_ROTATION_TTL_MS);
    await redis.del(keys.rotation("r-1"));
    const again = await rotateGroup(data, { ...deps, publisher }, { owner: "b" });
    expect(calls).toEqual(["DELETE G1", "POST G1"]);
    expect(again).toMatchObject({ kind: "published", resumedAt: "publish" });
    expect(await redis.xlen(`${prefix}:links:stream`)).toBe(1);
  });

  it("after a failed POST, a retry creates without deleting again", async () => {
    const { graph, calls } = scriptedGraph({ create: [new Error("socket hang up")] });
    const { deps, keys } = setup(graph);
    await expect(rotateGroup(job(), deps, { owner: "a" })).rejects.toThrow("socket hang up");
    expect(await redis.hget(keys.group("G1"), "without_link_since")).not.toBeNull();
    const outcome = await rotateGroup(job(), deps, { owner: "b" });
    expect(calls).toEqual(["DELETE G1", "POST G1", "POST G1"]);
    expect(outcome).toMatchObject({ kind: "published", resumedAt: "create" });
  });

  it("after a crash between POST and publish, a retry publishes the created link and creates none", async () => {
    const { graph, calls } = scriptedGraph();
    const { deps } = setup(graph);
    // The earlier attempt got as far as persisting the created link, then its process died.
    await deps.state.markDeleted("r-1", "G1", 1);
    await deps.state.markCreated("r-1", "G1", "https://chat.whatsapp.com/CREATED_abcdefghij", 2);
    const rec = recordingPublisher();
    const outcome = await rotateGroup(job(), { ...deps, publisher: rec.publisher }, { owner: "b" });
    expect(calls).toEqual([]);
    expect(outcome).toMatchObject({ kind: "published", resumedAt: "publish" });
    expect(rec.published.map((p) => [p.inviteLink, p.createdAt])).toEqual([
      ["https://chat.whatsapp.com/CREATED_abcdefghij", 2],
    ]);
  });

  it("a rotation left without link ends as superseded once a newer rotation of the group published", async () => {
    const { graph, calls } = scriptedGraph({ create: [new Error("token expired")] });
    const { deps, keys } = setup(graph);
    // r-1 deletes, then fails at POST: the group has no link.
    await expect(rotateGroup(job("G1", "r-1"), deps, { owner: "a" })).rejects.toThrow("token expired");
    // A newer rotation r-2 runs through and publishes (the real publisher's group fields, in short).
    expect(await rotateGroup(job("G1", "r-2"), deps, { owner: "b" })).toMatchObject({ kind: "published" });
    await redis.hset(
      keys.group("G1"),
      "sequence",
      "1",
      "last_message",
      JSON.stringify({ rotation_id: "r-2" }),
    );
    // r-1 is retried later: resuming at POST would reset the link r-2 just published. It must not.
    const outcome = await rotateGroup(job("G1", "r-1"), deps, { owner: "c" });
    expect(outcome).toMatchObject({ kind: "superseded", by: "r-2", message: { rotation_id: "r-2" } });
    expect(calls).toEqual(["DELETE G1", "POST G1", "DELETE G1", "POST G1"]);
  });

  it("a rotation whose created link was reset by another, unpublished rotation starts over", async () => {
    const { graph, calls } = scriptedGraph({ create: [new Error("boom")] });
    const rec = recordingPublisher();
    const { deps } = setup(graph, rec.publisher);
    // r-1 created a link, then its process died before publishing.
    await deps.state.markDeleted("r-1", "G1", 1);
    await deps.state.markCreated("r-1", "G1", "https://chat.whatsapp.com/MINE_abcdefghij", 2);
    // r-2 deleted the group's link (r-1's) and failed at POST: nothing was published.
    await expect(rotateGroup(job("G1", "r-2"), deps, { owner: "b" })).rejects.toThrow("boom");
    // r-1 resumes: its link is dead, so publishing it would hand out a dead link. It starts over.
    const outcome = await rotateGroup(job("G1", "r-1"), deps, { owner: "c" });
    expect(outcome).toMatchObject({ kind: "published", resumedAt: "delete" });
    expect(rec.published.map((p) => p.inviteLink)).toEqual(["https://chat.whatsapp.com/LINK1_abcdefghij"]);
    expect(calls).toEqual(["DELETE G1", "POST G1", "DELETE G1", "POST G1"]);
  });

  it("a rotation that started over and failed at POST again never resumes at its reset link", async () => {
    const { graph, calls } = scriptedGraph({ create: [new Error("boom"), new Error("503 again")] });
    const rec = recordingPublisher();
    const { deps, keys } = setup(graph, rec.publisher);
    // r-1 created a link, then its process died before publishing.
    await deps.state.markDeleted("r-1", "G1", 1);
    await deps.state.markCreated("r-1", "G1", "https://chat.whatsapp.com/MINE_abcdefghij", 2);
    // r-2 deleted the group's link (r-1's) and failed at POST: nothing was published.
    await expect(rotateGroup(job("G1", "r-2"), deps, { owner: "b" })).rejects.toThrow("boom");
    // r-1 starts over: its DELETE succeeds, its POST fails.
    await expect(rotateGroup(job("G1", "r-1"), deps, { owner: "c" })).rejects.toThrow("503 again");
    // The DELETE invalidated r-1's old link, so the stored state no longer names it.
    expect(await redis.hmget(keys.rotation("r-1"), "invite_link", "created_at")).toEqual([null, null]);
    // r-1's next retry resumes at POST; publishing MINE would hand out a link Graph deleted twice.
    const outcome = await rotateGroup(job("G1", "r-1"), deps, { owner: "d" });
    expect(outcome).toMatchObject({ kind: "published", resumedAt: "create" });
    expect(rec.published.map((p) => p.inviteLink)).toEqual(["https://chat.whatsapp.com/LINK1_abcdefghij"]);
    expect(calls).toEqual(["DELETE G1", "POST G1", "DELETE G1", "POST G1", "POST G1"]);
  });

  it("a rotation whose group is locked by another rotation reports busy and calls nothing", async () => {
    const { graph, calls } = scriptedGraph();
    const { deps } = setup(graph);
    expect(await deps.lock.acquire("G1", "someone-else")).toBe(true);
    expect(await rotateGroup(job(), deps, { owner: "a" })).toEqual({ kind: "busy" });
    expect(calls).toEqual([]);
  });

  it("releases the group lock when a step fails, so the retry can take it", async () => {
    const { graph } = scriptedGraph({ delete: [new Error("boom")] });
    const { deps, keys } = setup(graph);
    await expect(rotateGroup(job(), deps, { owner: "a" })).rejects.toThrow("boom");
    expect(await redis.exists(keys.groupLock("G1"))).toBe(0);
  });

  it("a paused account stops before the step it would call, and resumes there", async () => {
    const { graph, calls } = scriptedGraph();
    const { deps } = setup(graph);
    let pauseCreate = true;
    const gated: RotateGroupDeps = {
      ...deps,
      beforeGraphCall: async (_account, step) => (step === "create" && pauseCreate ? 5_000 : undefined),
    };
    expect(await rotateGroup(job(), gated, { owner: "a" })).toEqual({
      kind: "paused",
      waitMs: 5_000,
      step: "create",
    });
    pauseCreate = false;
    expect(await rotateGroup(job(), gated, { owner: "a" })).toMatchObject({
      kind: "published",
      resumedAt: "create",
    });
    expect(calls).toEqual(["DELETE G1", "POST G1"]);
  });

  it("never calls Graph when the account cannot be resolved", async () => {
    const { graph, calls } = scriptedGraph();
    const { deps } = setup(graph);
    const failing = {
      ...deps,
      resolveAccount: () => {
        throw new Error("no token");
      },
    };
    await expect(rotateGroup(job(), failing, { owner: "a" })).rejects.toThrow("no token");
    expect(calls).toEqual([]);
  });
});

describe("rotation saga fenced by the group lock", () => {
  // Each case stands for an owner that stalled (a long GC pause, a frozen VM) past its lock's ttl
  // between two steps: its heartbeat never got to notice, so only the write itself can refuse.
  const fencedJob = (rotationId: string) => ({ ...job("G1", rotationId), channel: `${prefix}:links` });

  it("a stalled owner whose lock another rotation took cannot publish over that rotation", async () => {
    const { graph, calls } = scriptedGraph();
    const { deps, keys } = setup(graph, createPublisher({ redis, keys: createKeys(prefix) }));
    const stalled: RotateGroupDeps = {
      ...deps,
      publisher: {
        async publish(input) {
          // A created LINK1, then stalled: its lock expired, B took the group and rotated it.
          await redis.del(keys.groupLock("G1"));
          const b = await rotateGroup(fencedJob("r-b"), deps, { owner: "b" });
          expect(b).toMatchObject({ kind: "published", message: { sequence: 1 } });
          return deps.publisher.publish(input);
        },
      },
    };
    const a = rotateGroup(fencedJob("r-a"), stalled, { owner: "a" });
    await expect(a).rejects.toBeInstanceOf(LockLostError);
    await expect(a).rejects.toMatchObject({ code: "E_LOCK_LOST" });
    expect(calls).toEqual(["DELETE G1", "POST G1", "DELETE G1", "POST G1"]);
    // LINK1 (A's) was reset by B's DELETE: C:latest keeps B's LINK2, and A published nothing.
    const latest = JSON.parse((await redis.hget(`${prefix}:links:latest`, "G1")) ?? "{}") as RotationMessage;
    expect(latest).toMatchObject({
      rotation_id: "r-b",
      invite_link: "https://chat.whatsapp.com/LINK2_abcdefghij",
    });
    expect(await redis.xlen(`${prefix}:links:stream`)).toBe(1);
    expect(await redis.hget(keys.rotation("r-a"), "message")).toBeNull();
  });

  it("an owner that lost its lock during DELETE records nothing and calls no POST", async () => {
    const { graph, calls } = scriptedGraph();
    const { deps, keys } = setup(graph);
    const stealing: GraphPort = {
      ...graph,
      async deleteInviteLink(account, groupId) {
        await graph.deleteInviteLink(account, groupId);
        await redis.set(keys.groupLock("G1"), "b");
      },
    };
    await expect(rotateGroup(fencedJob("r-a"), { ...deps, graph: stealing }, { owner: "a" })).rejects.toThrow(
      LockLostError,
    );
    expect(calls).toEqual(["DELETE G1"]);
    expect(await redis.exists(keys.rotation("r-a"))).toBe(0);
    expect(await redis.hget(keys.group("G1"), "graph_owner")).toBeNull();
    expect(await redis.get(keys.groupLock("G1"))).toBe("b"); // not released: it is b's
  });

  it("an owner that lost its lock during POST does not record the created link", async () => {
    const { graph, calls } = scriptedGraph();
    const rec = recordingPublisher();
    const { deps, keys } = setup(graph, rec.publisher);
    const stealing: GraphPort = {
      ...graph,
      async createInviteLink(account, groupId) {
        const link = await graph.createInviteLink(account, groupId);
        await redis.set(keys.groupLock("G1"), "b");
        return link;
      },
    };
    await expect(rotateGroup(fencedJob("r-a"), { ...deps, graph: stealing }, { owner: "a" })).rejects.toThrow(
      LockLostError,
    );
    expect(calls).toEqual(["DELETE G1", "POST G1"]);
    expect(await redis.hget(keys.rotation("r-a"), "invite_link")).toBeNull();
    expect(rec.published).toEqual([]);
  });
});

describe("rotation saga and the worker's shutdown signal", () => {
  /** Signals Node derived from `signal` through AbortSignal.any and still tracks (0 if none). */
  const derivedFrom = (signal: AbortSignal): number => {
    const symbol = Object.getOwnPropertySymbols(signal).find((s) => s.description === "kDependantSignals");
    const set = symbol === undefined ? undefined : (signal as unknown as Record<symbol, unknown>)[symbol];
    return (set as { size?: number } | undefined)?.size ?? 0;
  };

  it("leaves nothing attached to the worker-lived signal after each attempt", async () => {
    const { graph } = scriptedGraph();
    const { deps } = setup(graph);
    const shutdown = new AbortController();
    for (let i = 0; i < 5; i++) {
      const outcome = await rotateGroup(job("G1", `r-${i}`), deps, {
        owner: `o-${i}`,
        signal: shutdown.signal,
      });
      expect(outcome).toMatchObject({ kind: "published" });
    }
    expect(derivedFrom(shutdown.signal)).toBe(0);
    expect(getEventListeners(shutdown.signal, "abort")).toHaveLength(0);
  });

  it("a forced shutdown still aborts the Graph call in flight", async () => {
    const { graph } = scriptedGraph();
    const { deps } = setup(graph);
    const shutdown = new AbortController();
    const hanging: GraphPort = {
      ...graph,
      deleteInviteLink: (_account, _groupId, signal) =>
        new Promise<void>((_resolve, reject) => {
          signal?.addEventListener("abort", () => reject(signal.reason as Error), { once: true });
          setTimeout(() => shutdown.abort(new Error("worker closed by force")), 10);
        }),
    };
    await expect(
      rotateGroup(job(), { ...deps, graph: hanging }, { owner: "a", signal: shutdown.signal }),
    ).rejects.toThrow("worker closed by force");
    expect(getEventListeners(shutdown.signal, "abort")).toHaveLength(0);
  });
});

describe("what a rotation costs in Redis", () => {
  it("four calls from lock to publish: start with the DELETE's check, its record with the POST's check, the POST's record, the publish", async () => {
    const sent: string[] = [];
    const graphCalls: string[] = [];
    const graph: GraphPort = {
      async deleteInviteLink() {
        graphCalls.push(`DELETE after ${sent.length}`);
      },
      async createInviteLink() {
        graphCalls.push(`POST after ${sent.length}`);
        return "https://chat.whatsapp.com/COUNTED_abcdefghij";
      },
    };
    const { counted, keys, deps } = gatedDeps({ startRate: 1_000 }, graph);
    await counted.ping();
    const events: string[] = [];
    onEachCommand(counted, (command) => {
      sent.push(command.name);
      const n = sent.length;
      events.push(`sent ${n}`);
      command.promise.then(
        () => events.push(`answered ${n}`),
        () => events.push(`answered ${n}`),
      );
    });
    // A channel of its own (deleted with the prefix): another test's message there would make
    // the publish sign again with the right sequence (one more call).
    const data = { ...job("G1", "r-counted"), channel: `${prefix}:links` };
    const outcome = await rotateGroup(data, deps, { owner: "a" });
    expect(outcome).toMatchObject({ kind: "published", finished: true });
    // Scripts go by SHA1 after their first call on a connection: count calls, not their names.
    expect(sent).toHaveLength(4);
    expect(graphCalls).toEqual(["DELETE after 1", "POST after 2"]);
    // The publish goes out behind the POST's record, not after its answer (Redis runs them in order).
    expect(events.indexOf("sent 4")).toBeLessThan(events.indexOf("answered 3"));
    // The publish released the lock and settled the rotation in its own call.
    expect(await redis.exists(keys.groupLock("G1"))).toBe(0);
  });
  it("a rotation the gate delays at its start never holds the group's lock: one call, paused, the lock free", async () => {
    let sent = 0;
    const graph: GraphPort = {
      async deleteInviteLink() {},
      async createInviteLink() {
        return "https://chat.whatsapp.com/DELAYED_abcdefghij";
      },
    };
    const { counted, keys, gate, deps } = gatedDeps(
      { startRate: 1, maxInlineWaitMs: 0 }, // one call a second: the second group's DELETE waits a second
      graph,
    );
    expect(await gate.beforeGraphCall(account, "create", "OTHER")).toBeUndefined(); // takes the slot
    await counted.ping();
    onEachCommand(counted, () => void sent++);
    const outcome = await rotateGroup(job("G2", "r-delayed"), deps, { owner: "b" });
    expect(outcome).toMatchObject({ kind: "paused", step: "delete" });
    expect((outcome as { waitMs: number }).waitMs).toBeGreaterThan(0);
    expect(sent).toBe(1);
    expect(await redis.exists(keys.groupLock("G2"))).toBe(0);
  });
});
