import { UnrecoverableError, Worker } from "bullmq";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createAccountGate } from "../../src/accounts/gate.js";
import { createAccountProbe } from "../../src/accounts/probe.js";
import { parseConfigText } from "../../src/config/config.js";
import { GraphError, type GraphErrorCode } from "../../src/graph/errors.js";
import type { GraphGroup } from "../../src/graph/response.js";
import type { AccountContext, FailureScope, RetryAction } from "../../src/core/interfaces.js";
import { createKeys } from "../../src/core/keys.js";
import { createLogger } from "../../src/infra/logger.js";
import { enqueueRotations, manualRotationId } from "../../src/rotation/queue.js";
import { openTestQueue, type TestQueue } from "../helpers/faults.js";
import { deleteKeys, testRedis, uniquePrefix } from "../helpers/redis.js";
import { policyYaml, TEST_TOKEN } from "../helpers/rotator.js";

/** The recovery probe on a real Redis with a scripted read-only Graph call. */
const redis = testRedis();
const logger = createLogger("silent");
const prefixes: string[] = [];
const queues: TestQueue[] = [];
const INTERVAL_MS = 100;

afterEach(async () => {
  for (const q of queues.splice(0)) await q.close();
  await deleteKeys(redis, ...prefixes.splice(0));
});
afterAll(async () => redis.quit());

const graphError = (code: GraphErrorCode, action: RetryAction, scope: FailureScope, graphCode?: number) =>
  new GraphError({
    code,
    action,
    scope,
    operation: "get-group",
    detail: "probe answer",
    groupId: "G1",
    graphCode,
  });

const ANSWERS = {
  expired: () => graphError("GRAPH_AUTH", "stop", "account", 190),
  permission: () => graphError("GRAPH_PERMISSION", "stop", "account", 200),
  unknownGroup: () => graphError("GRAPH_GROUP_UNKNOWN", "stop", "group", 131041),
  suspendedGroup: () => graphError("GRAPH_GROUP_SUSPENDED", "stop", "group", 131207),
  transient: () => graphError("GRAPH_TRANSIENT", "retry", "request", 2),
  network: () => graphError("GRAPH_NETWORK", "retry", "request"),
  throttled: () => graphError("GRAPH_THROTTLED", "throttle", "account", 80007),
  timeout: () => new DOMException("The operation was aborted due to timeout", "TimeoutError"),
};

async function setup(options: { failing?: boolean; intervalMs?: number } = {}) {
  const prefix = uniquePrefix("probe");
  prefixes.push(prefix);
  const keys = createKeys(prefix);
  const env = { WHATSAPP_ACCESS_TOKEN: TEST_TOKEN };
  const config = parseConfigText(policyYaml(["G1"], `${prefix}-links`), "test.yaml", env, {
    graphApiVersion: "v23.0",
  });
  const gate = createAccountGate({ redis, keys, logger, recheckMs: INTERVAL_MS });
  const tq = await openTestQueue(redis, prefix);
  queues.push(tq);
  const answers: (() => Error)[] = [];
  const probed: string[] = [];
  const probe = createAccountProbe({
    redis,
    keys,
    queue: tq.queue,
    gate,
    config: () => config,
    logger,
    intervalMs: options.intervalMs ?? INTERVAL_MS,
    graph: {
      async getGroup(_account, groupId): Promise<GraphGroup> {
        probed.push(groupId);
        const next = answers.shift();
        if (next) throw next();
        return { id: groupId, subject: "group" };
      },
    },
  });
  const account: AccountContext = { name: "default", token: TEST_TOKEN, graphApiVersion: "v23.0" };
  if (options.failing ?? true) await gate.failed(account, ANSWERS.expired(), "G1");
  return { gate, probe, answers, probed, tq, keys };
}

const nextInterval = () => new Promise((resolve) => setTimeout(resolve, INTERVAL_MS + 20));

describe("account probe", () => {
  it.each(["expired", "permission"] as const)(
    "a token failure (%s) keeps the account failing",
    async (name) => {
      const { gate, probe, answers, probed } = await setup();
      answers.push(ANSWERS[name]);
      await probe.tick();
      expect(probed).toEqual(["G1"]);
      expect(await gate.failing("default")).toMatchObject({ code: "GRAPH_AUTH" });
    },
  );

  it.each(["unknownGroup", "suspendedGroup"] as const)(
    "any other Graph answer (%s) proves the token authenticated: the account recovers",
    async (name) => {
      const { gate, probe, answers } = await setup();
      answers.push(ANSWERS[name]);
      await probe.tick();
      expect(await gate.failing("default")).toBeUndefined();
    },
  );

  it.each(["transient", "network", "throttled", "timeout"] as const)(
    "a %s failure is inconclusive: the account stays failing and the next interval probes again",
    async (name) => {
      const { gate, probe, answers, probed } = await setup();
      answers.push(ANSWERS[name]);
      await probe.tick();
      expect(await gate.failing("default")).toMatchObject({ code: "GRAPH_AUTH" });
      // Within the interval no second probe (the lease), after it one that succeeds.
      await probe.tick();
      expect(probed).toEqual(["G1"]);
      await nextInterval();
      await probe.tick();
      expect(probed).toEqual(["G1", "G1"]);
      expect(await gate.failing("default")).toBeUndefined();
    },
  );
});

/** A rotation failed by BullMQ itself (here: a processor that throws), with no failure recorded. */
async function failedRotation(tq: TestQueue, prefix: string, groupId: string): Promise<string> {
  const rotationId = manualRotationId();
  await enqueueRotations(tq.queue, [
    {
      rotationId,
      groupId,
      account: "default",
      policy: null,
      channel: "c",
      trigger: "manual",
      requestedAt: 0,
    },
  ]);
  const connection = redis.duplicate();
  const worker = new Worker(
    tq.keys.rotationQueue,
    async () => {
      throw new UnrecoverableError("job stalled more than allowable limit");
    },
    { connection, prefix },
  );
  try {
    await expect.poll(async () => (await tq.queue.getJob(rotationId))?.getState()).toBe("failed");
  } finally {
    await worker.close();
    connection.disconnect();
  }
  return rotationId;
}

describe("sweep of groups without link", () => {
  it("re-drives a linkless group whose failed rotation recorded no failure", async () => {
    // A wide interval: "failed within the last interval" must hold on a loaded machine too.
    const intervalMs = 1_500;
    const { probe, tq, keys } = await setup({ failing: false, intervalMs });
    const rotationId = await failedRotation(tq, keys.prefix, "G1");
    // As MARK_DELETED leaves it: the group in the without-link index, the rotation as its owner.
    await redis.hset(keys.group("G1"), { graph_owner: rotationId, without_link_since: String(Date.now()) });
    await redis.sadd(keys.withoutLinkIndex, "G1");
    // A rotation that failed within the last interval is left alone; after it, re-driven.
    await probe.tick();
    expect(await (await tq.queue.getJob(rotationId))?.getState()).toBe("failed");
    await new Promise((resolve) => setTimeout(resolve, intervalMs + 20));
    await probe.tick();
    expect(await (await tq.queue.getJob(rotationId))?.getState()).toBe("waiting");
  });

  it("re-drives the rotation that deleted the link, not the one a later failure names", async () => {
    const { probe, tq, keys } = await setup({ failing: false });
    const deleter = await failedRotation(tq, keys.prefix, "G1");
    const other = await failedRotation(tq, keys.prefix, "G1");
    await redis.hset(keys.group("G1"), {
      graph_owner: deleter,
      failed_rotation_id: other,
      failure_code: "GRAPH_GROUP_UNKNOWN",
      failed_at: "0",
    });
    await redis.sadd(keys.withoutLinkIndex, "G1");
    await nextInterval();
    await probe.tick();
    expect(await (await tq.queue.getJob(deleter))?.getState()).toBe("waiting");
    expect(await (await tq.queue.getJob(other))?.getState()).toBe("failed");
  });
});

describe("rotations held for a failing account", () => {
  it("are promoted as soon as the account has recovered, and forgotten", async () => {
    const { gate, probe, tq, answers } = await setup();
    const rotationId = manualRotationId();
    await enqueueRotations(
      tq.queue,
      [
        {
          rotationId,
          groupId: "G2",
          account: "default",
          policy: null,
          channel: "c",
          trigger: "manual",
          requestedAt: 0,
        },
      ],
      { delays: [60_000] },
    );
    expect(await gate.hold("default", rotationId)).toBe(true);
    expect(await gate.hold("default", rotationId)).toBe(false);
    const state = async () => (await tq.queue.getJob(rotationId))?.getState();
    // Still failing: held. Recovered (the probe's GET succeeds): promoted at once, not after its delay.
    answers.push(ANSWERS.expired);
    await probe.tick();
    expect(await state()).toBe("delayed");
    await nextInterval();
    await probe.tick();
    expect(await gate.failing("default")).toBeUndefined();
    expect(await state()).toBe("waiting");
    expect(await gate.takeHeld("default")).toEqual([]);
  });
});
