import type { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { parseConfigText } from "../../src/config/config.js";
import type { RotationJobData, Trigger } from "../../src/core/interfaces.js";
import { enqueueRotations, manualRotationId } from "../../src/rotation/queue.js";
import { callsOf, type TestQueue } from "../helpers/faults.js";
import { simTest, type Rig } from "../helpers/fixture.js";
import { policyYaml, TEST_TOKEN, messageOf, scheduledRotation } from "../helpers/rotator.js";

/** A reload removed a group from its policy: its already-queued scheduled rotations do not rotate it. */
const it = simTest({ tokens: { [TEST_TOKEN]: { phoneNumberId: "15550001" } } });

async function start(rig: Rig, groups: string[]) {
  const { prefix, channel } = rig.prefix("membership");
  const tw = await rig.worker(prefix, { yaml: policyYaml(groups, channel) });
  const tq = await rig.queue(prefix);
  const reload = (yaml: string) => {
    tw.config.current = parseConfigText(
      yaml,
      "test.yaml",
      { WHATSAPP_ACCESS_TOKEN: TEST_TOKEN },
      {
        graphApiVersion: "v23.0",
      },
    );
  };
  return {
    tw,
    tq,
    channel,
    reload,
    redis: rig.redis,
    callsOf: (groupId: string) => callsOf(rig.sim, groupId),
  };
}

/** A rotation as the scheduler enqueues it: with the group's pending mark. */
async function scheduled(
  redis: Redis,
  tq: TestQueue,
  groupId: string,
  channel: string,
  trigger: Trigger = "schedule",
  policy = "test",
): Promise<RotationJobData> {
  const data = scheduledRotation(groupId, channel, { policy, trigger });
  await redis.hset(tq.keys.group(groupId), {
    pending_rotation: data.rotationId,
    pending_since: String(data.fireAt),
  });
  return data;
}

describe("worker and the live policy file", () => {
  it("skips a scheduled rotation of a group a reload removed, without a Graph call; others rotate", async ({
    rig,
  }) => {
    const { tw, tq, channel, reload, redis, callsOf } = await start(rig, ["P1", "P2"]);
    reload(policyYaml(["P2"], channel));
    const gone = await scheduled(redis, tq, "P1", channel);
    const kept = await scheduled(redis, tq, "P2", channel, "catch-up");
    const manual: RotationJobData = {
      rotationId: manualRotationId(),
      groupId: "P1",
      account: "default",
      policy: null,
      channel,
      trigger: "manual",
      requestedAt: Date.now(),
    };
    await enqueueRotations(tq.queue, [gone, kept]);
    const job = await tq.queue.getJob(gone.rotationId);
    expect(await job!.waitUntilFinished(tq.events, 10_000)).toEqual({
      skipped: "removed from policy",
      reason: "policy test no longer lists group P1",
      rotation_id: gone.rotationId,
      group_id: "P1",
    });
    const rotated = await (await tq.queue.getJob(kept.rotationId))!.waitUntilFinished(tq.events, 10_000);
    expect(rotated).toMatchObject({ group_id: "P2", sequence: 1 });
    expect(callsOf("P1")).toEqual([]);
    expect(await redis.hget(tq.keys.group("P1"), "pending_rotation")).toBeNull();
    expect(tw.logs.some((l) => /rotation skipped: removed from policy/.test(l.msg))).toBe(true);
    expect(tw.attempts.filter((a) => a.result === "skipped").map((a) => a.data.groupId)).toEqual(["P1"]);

    // A manual rotation of the removed group still rotates it.
    await enqueueRotations(tq.queue, [manual]);
    const message = await messageOf(
      redis,
      await (await tq.queue.getJob(manual.rotationId))!.waitUntilFinished(tq.events, 10_000),
    );
    expect(message).toMatchObject({ group_id: "P1", trigger: "manual" });
    expect(callsOf("P1")).toEqual(["DELETE", "POST"]);
  });

  it("skips the rotations of a policy the reload removed altogether", async ({ rig }) => {
    const { tq, channel, reload, redis, callsOf } = await start(rig, ["P3"]);
    reload(policyYaml(["P4"], channel).replace("name: test", "name: other"));
    const gone = await scheduled(redis, tq, "P3", channel, "catch-up");
    await enqueueRotations(tq.queue, [gone]);
    const result = await (await tq.queue.getJob(gone.rotationId))!.waitUntilFinished(tq.events, 10_000);
    expect(result).toMatchObject({ skipped: "removed from policy" });
    expect(callsOf("P3")).toEqual([]);
  });

  it("a groups: all policy keeps every group no other policy lists", async ({ rig }) => {
    const { tq, channel, reload, redis } = await start(rig, ["P7"]);
    reload(
      [
        "accounts:",
        "  default:",
        "    token_env: WHATSAPP_ACCESS_TOKEN",
        '    phone_number_id: "15550001"',
        "policies:",
        "  - name: test",
        '    schedule: "0 3 * * *"',
        `    channel: "${channel}"`,
        "    groups: all",
        "  - name: listed",
        '    schedule: "0 4 * * *"',
        `    channel: "${channel}"`,
        '    groups: ["P8"]',
      ].join("\n"),
    );
    const discovered = await scheduled(redis, tq, "P7", channel);
    const moved = await scheduled(redis, tq, "P8", channel);
    await enqueueRotations(tq.queue, [discovered, moved]);
    const [rotated, skipped] = await Promise.all(
      [discovered, moved].map(async (d) =>
        (await tq.queue.getJob(d.rotationId))!.waitUntilFinished(tq.events, 10_000),
      ),
    );
    expect(await messageOf(redis, rotated!)).toMatchObject({ group_id: "P7", policy: "test" });
    expect(skipped).toMatchObject({ skipped: "removed from policy", group_id: "P8" });
  });

  it("finishes a removed group's rotation that had already deleted its link", async ({ rig }) => {
    const { tq, channel, reload, redis, callsOf } = await start(rig, ["P5"]);
    reload(policyYaml(["P6"], channel));
    const halfway = await scheduled(redis, tq, "P5", channel);
    // As a rotation that stopped after its DELETE leaves it.
    const deletedAt = String(Date.now());
    await redis.hset(tq.keys.rotation(halfway.rotationId), {
      deleted_at: deletedAt,
      sequence_at_delete: "0",
    });
    await redis.hset(tq.keys.group("P5"), { graph_owner: halfway.rotationId, without_link_since: deletedAt });
    await redis.sadd(tq.keys.withoutLinkIndex, "P5");
    await enqueueRotations(tq.queue, [halfway]);
    const message = await (await tq.queue.getJob(halfway.rotationId))!.waitUntilFinished(tq.events, 10_000);
    expect(message).toMatchObject({ group_id: "P5", sequence: 1 });
    expect(callsOf("P5")).toEqual(["POST"]);
    expect(await redis.smembers(tq.keys.withoutLinkIndex)).toEqual([]);
  });
});

describe("the app wires the live policy file into its worker", () => {
  it("after app.reload, a queued scheduled rotation of a removed group is skipped", async ({ rig }) => {
    const { redis, sim } = rig;
    const { prefix, channel } = rig.prefix("membership-app");
    const app = await rig.rotator(prefix, { yaml: policyYaml(["PA1", "PA2"], channel) });
    const tq = await rig.queue(prefix);
    app.reload(
      parseConfigText(
        policyYaml(["PA2"], channel),
        "test.yaml",
        { WHATSAPP_ACCESS_TOKEN: TEST_TOKEN },
        {
          graphApiVersion: "v23.0",
        },
      ),
    );
    const gone = await scheduled(redis, tq, "PA1", channel);
    await enqueueRotations(tq.queue, [gone]);
    const result = await (await tq.queue.getJob(gone.rotationId))!.waitUntilFinished(tq.events, 10_000);
    expect(result).toMatchObject({ skipped: "removed from policy" });
    expect(callsOf(sim, "PA1")).toEqual([]);
  });
});
