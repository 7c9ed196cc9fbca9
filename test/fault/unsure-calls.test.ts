import type { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { parseConfigText } from "../../src/config/config.js";
import type { GraphSimulator } from "../../src/graph-sim/simulator.js";
import type { App } from "../../src/app.js";
import type { RotationJobData } from "../../src/core/interfaces.js";
import { manualRotationId, ROTATION_JOB } from "../../src/rotation/queue.js";
import { readGroupStatuses, type GroupStatus } from "../../src/ops/status.js";
import { accountsYaml, assertPromise, settleAll, type TestQueue } from "../helpers/faults.js";
import { simTest, type Rig } from "../helpers/fixture.js";
import { messageOf, scheduledRotation } from "../helpers/rotator.js";

/**
 * A DELETE or POST that times out may still be carried out by Graph after the retry succeeded.
 * The simulator's latency fault does exactly that: it answers (and applies the call) late, after the
 * client gave up. Request timeout 300 ms and settle 1.5 s: an unsure call's group is read back 1.5 s
 * after it failed; the late call lands 800 ms after it was sent, after the retry's own calls and well
 * inside that window, however loaded the machine.
 */
const TOKEN = "unsure-token-0123456789";
const it = simTest({ tokens: { [TOKEN]: { name: "acct", phoneNumberId: "1" } } });

// The current test's, set by start().
let sim: GraphSimulator;
let redis: Redis;
let app: App;
let tq: TestQueue;
let channel: string;

async function start(rig: Rig, groups: string[], backoffMs = 50): Promise<void> {
  ({ sim, redis } = rig);
  const fresh = rig.prefix("unsure");
  channel = fresh.channel;
  for (const id of groups) sim.addGroup({ id, token: TOKEN, phoneNumberId: "1" });
  app = await rig.rotator(fresh.prefix, {
    yaml: accountsYaml([{ name: "a", tokenEnv: "TOKEN_A", phone: "1", groups }], channel),
    env: { TOKEN_A: TOKEN, GRAPH_REQUEST_TIMEOUT: "300ms", ROTATOR_UNSURE_SETTLE: "1500ms" },
  });
  tq = await rig.queue(fresh.prefix, backoffMs);
}

const calls = (groupId: string) => sim.calls.filter((c) => c.groupId === groupId).map((c) => c.method);

async function rotateOnce(groupId: string): Promise<void> {
  const jobs = await tq.rotate([{ groupId, account: "a" }], channel);
  const [outcome] = await settleAll(jobs, tq, 10_000);
  expect(outcome).not.toBeInstanceOf(Error);
  await new Promise((resolve) => setTimeout(resolve, 900)); // every late call has landed by now
  await assertPromise({
    redis,
    sim,
    keys: tq.keys,
    channel,
    groups: [groupId],
    secrets: [TOKEN],
    minPublished: 1,
  });
}

describe("a Graph call that may still land after it failed", () => {
  it("a late POST: the link Graph holds is published, not the one the retry created", async ({ rig }) => {
    await start(rig, ["UG1"]);
    sim.inject({ kind: "latency", ms: 800, match: { groupId: "UG1", method: "POST" } });
    await rotateOnce("UG1");
    // DELETE, the POST that timed out, the retried POST, then the read-back.
    expect(calls("UG1")).toEqual(["DELETE", "POST", "POST", "GET"]);
  });

  it("a late DELETE: the group is not left without a link; the rotation creates one again", async ({
    rig,
  }) => {
    await start(rig, ["UG2"]);
    sim.inject({ kind: "latency", ms: 800, match: { groupId: "UG2", method: "DELETE" } });
    await rotateOnce("UG2");
    expect(calls("UG2")).toEqual(["DELETE", "DELETE", "POST", "GET", "POST"]);
  });

  it("a rotation without an unsure call reads nothing back", async ({ rig }) => {
    await start(rig, ["UG3"]);
    await rotateOnce("UG3");
    expect(calls("UG3")).toEqual(["DELETE", "POST"]);
  });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const manual = (groupId: string): RotationJobData => ({
  rotationId: manualRotationId(),
  groupId,
  account: "a",
  policy: null,
  channel,
  trigger: "manual",
  requestedAt: Date.now(),
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error("timed out waiting");
    await sleep(5);
  }
}

describe("an unsure call and the rest of the group's rotations", () => {
  it("an unsure DELETE on the last attempt marks the group as possibly without a link, so it is loud and re-driven", async ({
    rig,
  }) => {
    await start(rig, ["RA1"]);
    const first = manual("RA1");
    await tq.queue.add(ROTATION_JOB, first, { jobId: first.rotationId });
    await (await tq.queue.getJob(first.rotationId))!.waitUntilFinished(tq.events, 10_000);

    sim.inject({ kind: "latency", ms: 800, match: { groupId: "RA1", method: "DELETE" } });
    const data = manual("RA1");
    await tq.queue.add(ROTATION_JOB, data, { jobId: data.rotationId, attempts: 1 });
    await expect(
      (await tq.queue.getJob(data.rotationId))!.waitUntilFinished(tq.events, 10_000),
    ).rejects.toThrow();
    await sleep(1_000); // the late DELETE lands
    expect(sim.group("RA1")?.link).toBeUndefined(); // Graph carried out the DELETE
    // The group is known to (possibly) have no link, and whose rotation to re-drive: the sweep's cue.
    expect(await redis.smembers(tq.keys.withoutLinkIndex)).toContain("RA1");
    expect(await redis.hget(tq.keys.group("RA1"), "graph_owner")).toBe(data.rotationId);
    const batches = readGroupStatuses({ redis, keys: tq.keys, config: app.config.current, now: Date.now() }, [
      "RA1",
    ]);
    const [status] = (await batches.next()).value as GroupStatus[];
    expect(status?.state).toBe("no-link");
  });

  it("a rotation whose DELETE was unsure is not skipped after a reload removed its group: it finishes", async ({
    rig,
  }) => {
    await start(rig, ["RB1", "RB2"]);
    const fireAt = Date.now();
    const data = scheduledRotation("RB1", channel, { policy: "p-a", account: "a", fireAt });
    sim.inject({ kind: "latency", ms: 800, match: { groupId: "RB1", method: "DELETE" } });
    await tq.queue.add(ROTATION_JOB, data, {
      jobId: data.rotationId,
      backoff: { type: "fixed", delay: 400 },
    });
    await waitFor(() => sim.calls.some((c) => c.groupId === "RB1" && c.method === "DELETE"));
    // The operator removes RB1 from the policy while the first DELETE is in flight.
    app.reload(
      parseConfigText(
        accountsYaml([{ name: "a", tokenEnv: "TOKEN_A", phone: "1", groups: ["RB2"] }], channel),
        "test.yaml",
        { TOKEN_A: TOKEN },
        { graphApiVersion: "v23.0" },
      ),
    );
    const result = await messageOf(
      redis,
      await (await tq.queue.getJob(data.rotationId))!.waitUntilFinished(tq.events, 10_000),
    );
    expect(result).toMatchObject({ group_id: "RB1", trigger: "schedule" });
    await sleep(600);
    await assertPromise({
      redis,
      sim,
      keys: tq.keys,
      channel,
      groups: ["RB1"],
      secrets: [TOKEN],
      minPublished: 1,
    });
  });

  it("another rotation publishing while one waits out its unsure window reads the link back first", async ({
    rig,
  }) => {
    await start(rig, ["RC1"], 1000);
    const a = manual("RC1");
    sim.inject({ kind: "latency", ms: 800, match: { groupId: "RC1", method: "POST" } });
    await tq.queue.add(ROTATION_JOB, a, { jobId: a.rotationId });
    await waitFor(() => sim.calls.some((c) => c.groupId === "RC1" && c.method === "POST"));
    await sleep(330); // A's POST timed out; A released the lock and backs off 1 s
    const b = manual("RC1");
    await tq.queue.add(ROTATION_JOB, b, { jobId: b.rotationId });
    const results = await Promise.all(
      [a, b].map(async (d) =>
        (await tq.queue.getJob(d.rotationId))!.waitUntilFinished(tq.events, 10_000).catch((e: unknown) => e),
      ),
    );
    expect(results.filter((r) => r instanceof Error)).toEqual([]);
    await sleep(600);
    await assertPromise({ redis, sim, keys: tq.keys, channel, groups: ["RC1"], secrets: [TOKEN] });
  });
});
