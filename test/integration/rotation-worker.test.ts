import type { RotationJobResult } from "../../src/rotation/worker.js";
import type { Job } from "bullmq";
import { describe, expect } from "vitest";
import type { App } from "../../src/app.js";
import type { RotationJobData } from "../../src/core/interfaces.js";
import { parseMessage } from "../../src/publish/message.js";
import { enqueueRotations, manualRotationId } from "../../src/rotation/queue.js";
import { simTest, type Rig } from "../helpers/fixture.js";
import { uniquePrefix } from "../helpers/redis.js";
import { messageOf, policyYaml, TEST_TOKEN } from "../helpers/rotator.js";
import type { GraphSimulator } from "../../src/graph-sim/simulator.js";
import { createKeys } from "../../src/core/keys.js";
import { createLogger } from "../../src/infra/logger.js";
import { createRotationWorker, type RotationWorkerOptions } from "../../src/rotation/worker.js";

/** The worker end to end: BullMQ on a real Redis, the Graph simulator over HTTP, the real publisher. */
const it = simTest({ tokens: { [TEST_TOKEN]: { phoneNumberId: "15550001" } } });

/** The rotator on a fresh prefix, and the queue's events to wait on its jobs with. */
async function start(rig: Rig, groups: string[], env: Record<string, string> = {}) {
  const { prefix, channel } = rig.prefix("worker");
  const app = await rig.rotator(prefix, { yaml: policyYaml(groups, channel), env });
  const { events } = await rig.queue(prefix);
  return {
    app,
    channel,
    events,
    sim: rig.sim,
    redis: rig.redis,
    callsOf: (g: string) => callsOf(rig.sim, g),
  };
}

async function rotate(
  a: App,
  groupId: string,
  channel: string,
): Promise<Job<RotationJobData, RotationJobResult>> {
  const data: RotationJobData = {
    rotationId: manualRotationId(),
    groupId,
    account: "default",
    policy: null,
    channel,
    trigger: "manual",
    requestedAt: Date.now(),
  };
  await enqueueRotations(a.queue, [data]);
  return (await a.queue.getJob(data.rotationId)) as Job<RotationJobData, RotationJobResult>;
}

const callsOf = (sim: GraphSimulator, groupId: string) =>
  sim.calls.filter((c) => c.groupId === groupId).map((c) => `${c.method} ${c.status ?? "-"}`);

describe("rotation worker", () => {
  it("publishes exactly the simulator's new link on the channel, in C:latest and in C:stream", async ({
    rig,
  }) => {
    const { app, channel, events, sim, redis, callsOf } = await start(rig, ["G1"]);
    const subscriber = redis.duplicate();
    const received: string[] = [];
    subscriber.on("message", (_channel: string, text: string) => received.push(text));
    await subscriber.subscribe(channel);
    try {
      const job = await rotate(app, "G1", channel);
      const message = await messageOf(redis, await job.waitUntilFinished(events, 10_000));
      const link = sim.group("G1")?.link;
      expect(link).toMatch(/^https:\/\/chat\.whatsapp\.com\//);
      expect(message).toMatchObject({ group_id: "G1", invite_link: link, sequence: 1, trigger: "manual" });
      expect(callsOf("G1")).toEqual(["DELETE 200", "POST 200"]);

      const latest = parseMessage((await redis.hget(`${channel}:latest`, "G1"))!);
      expect(latest.invite_link).toBe(link);
      const stream = await redis.xrange(`${channel}:stream`, "-", "+");
      expect(stream.map(([, fields]) => parseMessage(fields[1]!).invite_link)).toEqual([link]);
      await expect.poll(() => received.length).toBe(1);
      expect(parseMessage(received[0]!)).toEqual(latest);

      // The rotation is counted in /metrics.
      const metrics = await app.metrics.text();
      expect(metrics).toContain(
        'wa_rotator_rotations_total{result="published",account="default",trigger="manual"} 1',
      );
      expect(metrics).toMatch(
        /wa_rotator_graph_calls_total\{operation="delete-invite-link",outcome="ok",code="none"\} 1/,
      );
      expect(metrics).toMatch(/wa_rotator_link_gap_seconds_count\{account="default"\} 1/);
      expect(metrics).toContain("wa_rotator_groups_without_link 0");
    } finally {
      await subscriber.quit();
    }
  });

  it("counts sequences 1, 2, 3 across rotations of one group", async ({ rig }) => {
    const { app, channel, events, redis, callsOf } = await start(rig, ["G2"]);
    const sequences: number[] = [];
    for (let i = 0; i < 3; i++) {
      const job = await rotate(app, "G2", channel);
      sequences.push((await messageOf(redis, await job.waitUntilFinished(events, 10_000))).sequence);
    }
    expect(sequences).toEqual([1, 2, 3]);
    expect(callsOf("G2")).toEqual([
      "DELETE 200",
      "POST 200",
      "DELETE 200",
      "POST 200",
      "DELETE 200",
      "POST 200",
    ]);
  });

  it("runs more than 10 rotations at once without a MaxListenersExceededWarning", async ({ rig }) => {
    const groups = Array.from({ length: 16 }, (_, i) => `ML${i + 1}`);
    const { app, channel, events, sim } = await start(rig, groups, {
      ROTATOR_CONCURRENCY: "16",
    });
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on("warning", onWarning);
    try {
      // Slow answers keep all 16 in flight together.
      for (const groupId of groups) sim.inject({ kind: "latency", ms: 300, match: { groupId } });
      const jobs = await Promise.all(groups.map((groupId) => rotate(app, groupId, channel)));
      for (const job of jobs) await job.waitUntilFinished(events, 15_000);
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings.map((w) => `${w.name}: ${w.message}`)).toEqual([]);
  });

  it("sends a group id with + / = as one percent-encoded path segment", async ({ rig }) => {
    const { app, channel, events, sim } = await start(rig, ["Y2Fw+aV9/ncm=="]);
    const job = await rotate(app, "Y2Fw+aV9/ncm==", channel);
    const message = await job.waitUntilFinished(events, 10_000);
    expect(message.group_id).toBe("Y2Fw+aV9/ncm==");
    const paths = sim.calls.map((c) => `${c.method} ${c.path}`);
    expect(paths).toEqual([
      "DELETE /v23.0/Y2Fw%2BaV9%2Fncm%3D%3D/invite_link",
      "POST /v23.0/Y2Fw%2BaV9%2Fncm%3D%3D/invite_link",
    ]);
  });

  it("retries a failed POST without a second DELETE", async ({ rig }) => {
    const { app, channel, events, sim, redis, callsOf } = await start(rig, ["G3"]);
    sim.inject({
      match: { method: "POST", groupId: "G3" },
      kind: "error",
      status: 503,
      code: 2,
      isTransient: true,
    });
    const job = await rotate(app, "G3", channel);
    const message = await messageOf(redis, await job.waitUntilFinished(events, 15_000));
    expect(callsOf("G3")).toEqual(["DELETE 200", "POST 503", "POST 200"]);
    expect(message.invite_link).toBe(sim.group("G3")?.link);
    expect(message.sequence).toBe(1);
  });

  it("a rotation that lost its group lock tries again without using an attempt", async ({ rig }) => {
    // The hung POST may still land: the retry reads the link back once it cannot (2 s later).
    const { app, channel, events, sim, redis } = await start(rig, ["G6"], {
      ROTATOR_GROUP_LOCK_TTL: "600ms",
      ROTATOR_UNSURE_SETTLE: "2s",
    });
    sim.inject({ kind: "hang", match: { groupId: "G6", method: "POST" } });
    const job = await rotate(app, "G6", channel);
    await expect
      .poll(() => sim.calls.some((c) => c.groupId === "G6" && c.method === "POST" && c.status === undefined))
      .toBe(true);
    // Another owner takes the lock: the heartbeat finds it lost and the attempt stops, writing nothing.
    await redis.set(app.keys.groupLock("G6"), "someone-else", "PX", 1_000);
    const message = await messageOf(redis, await job.waitUntilFinished(events, 15_000));
    expect(message.invite_link).toBe(sim.group("G6")?.link);
    expect((await app.queue.getJob(job.id!))?.attemptsMade).toBe(1);
    expect(await app.metrics.text()).toContain(
      'wa_rotator_rotations_total{result="busy",account="default",trigger="manual"}',
    );
  });

  it("stops at once on an expired token (190): no retry, no POST, the old link untouched", async ({
    rig,
  }) => {
    const { app, channel, events, sim, redis, callsOf } = await start(rig, ["G4"]);
    const before = sim.addGroup({ id: "G4" }).link;
    sim.inject({ match: { groupId: "G4" }, kind: "error", status: 401, code: 190, times: Infinity });
    const job = await rotate(app, "G4", channel);
    const error = await job.waitUntilFinished(events, 10_000).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect(String((error as Error).message)).toMatch(/G4.*190/s);
    expect(callsOf("G4")).toEqual(["DELETE 401"]);
    expect(sim.group("G4")?.link).toBe(before);
    const failed = await app.queue.getJob(job.id!);
    expect(failed?.attemptsMade).toBe(1);
    const state = await redis.hgetall(app.keys.group("G4"));
    expect(state).toMatchObject({ failure_code: "GRAPH_AUTH" });
    expect(JSON.stringify(state)).not.toContain(TEST_TOKEN);
  });

  it("a group that is unknown to Graph (131041) fails for good with the reason recorded", async ({ rig }) => {
    const { app, channel, events, sim, redis, callsOf } = await start(rig, ["G5"]);
    sim.inject({ match: { groupId: "G5" }, kind: "error", status: 400, code: 131041, times: Infinity });
    const job = await rotate(app, "G5", channel);
    await expect(job.waitUntilFinished(events, 10_000)).rejects.toThrow(/G5/);
    expect(callsOf("G5")).toEqual(["DELETE 400"]);
    expect(await redis.hget(app.keys.group("G5"), "failure_code")).toBe("GRAPH_GROUP_UNKNOWN");
  });

  it("tries Redis again 1 s after an error, not after BullMQ's 15 s", async ({ rig }) => {
    const connection = rig.redis.duplicate();
    const worker = createRotationWorker({
      keys: createKeys(uniquePrefix("worker-opts")),
      connection,
      concurrency: 1,
      deps: {} as RotationWorkerOptions["deps"],
      logger: createLogger("silent"),
    });
    try {
      expect(worker.bull.opts.runRetryDelay).toBe(1_000);
    } finally {
      await worker.close();
      connection.disconnect();
    }
  });
});
