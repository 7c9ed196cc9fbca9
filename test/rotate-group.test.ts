import type { Redis } from "ioredis";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { rotateGroup, type RotateGroupDeps } from "../jobs/rotate-group.js";
import { createGroupLock } from "../src/group-lock.js";
import type {
  AccountContext,
  GraphPort,
  PublishInput,
  RotationJobData,
  RotationMessage,
} from "../src/interfaces.js";
import { createKeys } from "../src/keys.js";
import { createLogger } from "../src/logger.js";
import { createRotationStateStore } from "../src/rotation-state.js";
import { deleteKeys, testRedis, uniquePrefix } from "./helpers/redis.js";

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
      return next ?? `https://chat.whatsapp.com/LINK${++links}`;
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
        return {
          event: "invite_link.rotated",
          schema: 1,
          rotation_id: input.rotationId,
          group_id: input.groupId,
          invite_link: input.inviteLink,
          rotated_at: new Date(input.createdAt).toISOString(),
          sequence: published.length,
          policy: input.policy,
          account: input.account,
          trigger: input.trigger,
        };
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

const job = (groupId = "G1", rotationId = "r-1"): RotationJobData => ({
  rotationId,
  groupId,
  account: "default",
  policy: "nightly",
  channel: "test:links",
  trigger: "schedule",
  requestedAt: 0,
});

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
        inviteLink: "https://chat.whatsapp.com/LINK1",
        rotationId: "r-1",
        policy: "nightly",
      }),
    ]);
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
    await deps.state.markCreated("r-1", "https://chat.whatsapp.com/CREATED", 2);
    const rec = recordingPublisher();
    const outcome = await rotateGroup(job(), { ...deps, publisher: rec.publisher }, { owner: "b" });
    expect(calls).toEqual([]);
    expect(outcome).toMatchObject({ kind: "published", resumedAt: "publish" });
    expect(rec.published.map((p) => [p.inviteLink, p.createdAt])).toEqual([
      ["https://chat.whatsapp.com/CREATED", 2],
    ]);
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
