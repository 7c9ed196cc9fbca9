import { describe, expect } from "vitest";
import type { RotationJobData } from "../../src/core/interfaces.js";
import { createDeliveryRecorder } from "../../src/gateway/webhook-receiver.js";
import { createGroupEventsConsumer } from "../../src/groups/consumer.js";
import { createGroupStateStore } from "../../src/groups/state.js";
import { enqueueRotations, manualRotationId } from "../../src/rotation/queue.js";
import { callsOf, type TestQueue } from "../helpers/faults.js";
import { simTest, type Rig } from "../helpers/fixture.js";
import { reason } from "../../src/commands/status.js";
import { listGroupIds, readGroupStatuses, type GroupStatus } from "../../src/ops/status.js";
import {
  groupDeleted,
  groupSuspended,
  groupSuspensionCleared,
  joinedByInviteLink,
} from "../helpers/meta-webhooks.js";
import { capturingLogger, policyYaml, TEST_TOKEN, scheduledRotation } from "../helpers/rotator.js";

/** WhatsApp suspended or deleted a group (its webhooks say so): its rotations make no Graph call. */
const it = simTest({ tokens: { [TEST_TOKEN]: { phoneNumberId: "15550001" } } });
const T = 1_739_321_024;

async function start(rig: Rig, groups: string[]) {
  const { sim, redis } = rig;
  const { prefix, channel } = rig.prefix("suspended");
  const tw = await rig.worker(prefix, { yaml: policyYaml(groups, channel) });
  const tq = await rig.queue(prefix);
  const consumer = createGroupEventsConsumer({
    redis,
    keys: tq.keys,
    store: createGroupStateStore(redis, tq.keys),
    logger: capturingLogger([]),
  });
  const webhook = async (payload: Record<string, unknown>) => {
    await createDeliveryRecorder(redis, tq.keys)(Buffer.from(JSON.stringify(payload)));
    await consumer.drain();
  };
  return { tw, tq, channel, webhook, redis, callsOf: (groupId: string) => callsOf(sim, groupId) };
}

function fire(groupId: string, channel: string, at = Date.now()): RotationJobData {
  return scheduledRotation(groupId, channel, { fireAt: at });
}

async function run(tq: TestQueue, data: RotationJobData): Promise<unknown> {
  await enqueueRotations(tq.queue, [data]);
  return (await tq.queue.getJob(data.rotationId))!.waitUntilFinished(tq.events, 10_000);
}

describe("suspended and deleted groups", () => {
  it("a suspended group's fire ends skipped with the reason and no Graph call; once cleared it rotates", async ({
    rig,
  }) => {
    const { tw, tq, channel, webhook, callsOf } = await start(rig, ["S1"]);
    await webhook(groupSuspended("S1", T));
    const skipped = await run(tq, fire("S1", channel));
    expect(skipped).toMatchObject({
      skipped: "group suspended",
      reason: `WhatsApp suspended the group at ${new Date(T * 1000).toISOString()}`,
      group_id: "S1",
    });
    expect(callsOf("S1")).toEqual([]);
    // A manual rotation is skipped too: Graph would refuse it (131207).
    const manual = {
      ...fire("S1", channel),
      rotationId: manualRotationId(),
      trigger: "manual" as const,
      policy: null,
    };
    expect(await run(tq, manual)).toMatchObject({ skipped: "group suspended" });
    expect(callsOf("S1")).toEqual([]);
    expect(tw.logs.some((l) => /rotation skipped: group suspended/.test(l.msg))).toBe(true);

    await webhook(groupSuspensionCleared("S1", T + 60));
    expect(await run(tq, fire("S1", channel, Date.now() + 1))).toMatchObject({ group_id: "S1", sequence: 1 });
    expect(callsOf("S1")).toEqual(["DELETE", "POST"]);
  });

  it("a deleted group is dropped: its fires end skipped as deleted, without a Graph call", async ({
    rig,
  }) => {
    const { tq, channel, webhook, callsOf } = await start(rig, ["D1"]);
    await webhook(groupDeleted("D1", T));
    expect(await run(tq, fire("D1", channel))).toMatchObject({ skipped: "group deleted" });
    expect(callsOf("D1")).toEqual([]);
  });

  it("status says why: deleted, suspended, and the participants and joins the webhooks told", async ({
    rig,
  }) => {
    const { tw, tq, channel, webhook, redis } = await start(rig, ["D2", "S2", "OK2"]);
    await run(tq, fire("OK2", channel));
    await webhook(groupDeleted("D2", T));
    await webhook(groupSuspended("S2", T));
    await webhook(joinedByInviteLink("OK2", "1001", Math.floor(Date.now() / 1000) + 1));
    const config = tw.config.current;
    const rows: GroupStatus[] = [];
    for await (const batch of readGroupStatuses(
      { redis, keys: tq.keys, config, now: Date.now() },
      await listGroupIds(redis, tq.keys, config),
    ))
      rows.push(...batch);
    const byId = new Map(rows.map((r) => [r.group_id, r]));
    expect(byId.get("D2")).toMatchObject({ state: "deleted", deleted_at: new Date(T * 1000).toISOString() });
    expect(reason(byId.get("D2")!)).toMatch(/^DELETED by WhatsApp at .*: not rotated, not offered/);
    expect(byId.get("S2")).toMatchObject({
      state: "suspended",
      suspended_since: new Date(T * 1000).toISOString(),
    });
    expect(reason(byId.get("S2")!)).toMatch(/^SUSPENDED by WhatsApp since/);
    expect(byId.get("OK2")).toMatchObject({ state: "ok", participants: 1, joins_since_rotation: 1 });
    // A healthy group reads "ok" first; the number's learned rate and the webhook facts follow.
    expect(reason(byId.get("OK2")!)).toMatch(
      /^ok; (number rate [\d.]+\/s; )?1 participants; 1 joined through this link$/,
    );
  });
});
