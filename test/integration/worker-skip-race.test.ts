import { describe, expect } from "vitest";
import { rotateGroup } from "../../src/rotation/saga.js";
import { resolveAccount } from "../../src/config/config.js";
import { createGraphClient } from "../../src/graph/client.js";
import { createGroupLock } from "../../src/rotation/group-lock.js";
import { systemClock } from "../../src/core/interfaces.js";
import { createPublisher } from "../../src/publish/publisher.js";
import { enqueueRotations } from "../../src/rotation/queue.js";
import { createRotationStateStore } from "../../src/rotation/state.js";
import { simTest } from "../helpers/fixture.js";
import {
  capturingLogger,
  messageOf,
  policyYaml,
  type LogLine,
  scheduledRotation,
} from "../helpers/rotator.js";

const it = simTest();

describe("a removed group's rotation and a second delivery of its job", () => {
  it("does not skip while another delivery holds the group's lock mid-DELETE; it finishes the rotation", async ({
    rig,
  }) => {
    const { sim, redis } = rig;
    const { prefix, channel } = rig.prefix("skip-race");
    // The live config no longer lists RD1 (a reload removed it).
    const tw = await rig.worker(prefix, { yaml: policyYaml(["RD2"], channel) });
    const tq = await rig.queue(prefix);
    const real = createGraphClient({ baseUrl: sim.url });
    rig.defer(() => real.close());
    sim.addGroup({ id: "RD1" });
    await real.createInviteLink(resolveAccount(tw.config.current, "default"), "RD1");
    const fireAt = Date.now();
    const data = scheduledRotation("RD1", channel, { fireAt });
    // The first delivery (a worker whose BullMQ job lock lapsed in a stall) is mid-DELETE.
    let release!: () => void;
    const gateOpen = new Promise<void>((r) => (release = r));
    const logs: LogLine[] = [];
    const first = rotateGroup(
      data,
      {
        graph: {
          deleteInviteLink: async (account, groupId, signal) => {
            await gateOpen;
            await real.deleteInviteLink(account, groupId, signal);
          },
          createInviteLink: async () => {
            throw new Error("worker crashed"); // or any failure after DELETE
          },
        },
        publisher: createPublisher({ redis, keys: tw.keys }),
        state: createRotationStateStore(redis, tw.keys),
        lock: createGroupLock(redis, tw.keys),
        resolveAccount: (name) => resolveAccount(tw.config.current, name),
        clock: systemClock,
        logger: capturingLogger(logs),
      },
      { owner: "first-delivery" },
    ).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 100));
    expect(await redis.get(tw.keys.groupLock("RD1"))).toBe("first-delivery");

    // The second delivery meets the held lock: it waits (busy), it does not skip.
    await enqueueRotations(tq.queue, [data]);
    const job = (await tq.queue.getJob(data.rotationId))!;
    await expect.poll(() => tw.attempts.some((a) => a.result === "busy"), { timeout: 5_000 }).toBe(true);
    expect(await job.isCompleted()).toBe(false);
    // The first delivery's DELETE lands, then its POST fails: the group has no link.
    release();
    expect(String(await first)).toContain("worker crashed");
    // The second delivery has touched nothing yet, but the rotation has: it finishes it.
    const result = await messageOf(redis, await job.waitUntilFinished(tq.events, 10_000));
    expect(result).toMatchObject({ group_id: "RD1", sequence: 1 });
    expect(sim.group("RD1")?.link).toBe(result.invite_link);
    expect(await redis.smembers(tw.keys.withoutLinkIndex)).toEqual([]);
  });
});
