import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseConfigText, type ResolvedConfig } from "../../src/config/config.js";
import type { RotationJobData } from "../../src/core/interfaces.js";
import { createKeys, type Keys } from "../../src/core/keys.js";
import { createDeliveryRecorder } from "../../src/gateway/webhook-receiver.js";
import { createGroupEventsConsumer, type GroupEventsConsumer } from "../../src/groups/consumer.js";
import { createJoinsTrigger, joinsRotationId } from "../../src/groups/joins.js";
import { createGroupStateStore } from "../../src/groups/state.js";
import { createRotationQueue } from "../../src/rotation/queue.js";
import { joinedByInviteLink, participantLeft } from "../helpers/meta-webhooks.js";
import { capturingLogger } from "../helpers/rotator.js";
import { deleteKeys, testRedis, uniquePrefix } from "../helpers/redis.js";

const G = "G-JOINS-1";
const T = 1_739_321_024;

let redis: Redis;
let prefix: string;
let keys: Keys;
let queue: Queue<RotationJobData>;
let consumer: GroupEventsConsumer;
let config: ResolvedConfig;

beforeEach(() => {
  redis = testRedis();
  prefix = uniquePrefix("joins");
  keys = createKeys(prefix);
  queue = createRotationQueue(keys, redis.duplicate());
  config = parseConfigText(
    `policies:\n  - name: door\n    schedule: "0 3 * * *"\n    channel: c-${prefix}\n    groups: ["${G}", "G-NO-LIMIT"]\n    rotate_after_joins: 3\n`,
    "joins.yaml",
    { WHATSAPP_ACCESS_TOKEN: "unused-token" },
    { graphApiVersion: "v23.0" },
  );
  const trigger = createJoinsTrigger({
    queue,
    config: () => config,
    logger: capturingLogger([]),
    clock: { now: () => 1_000 },
  });
  consumer = createGroupEventsConsumer({
    redis,
    keys,
    store: createGroupStateStore(redis, keys),
    logger: capturingLogger([]),
    onJoined: (event, applied) => trigger(event.groupId, applied),
  });
});

afterEach(async () => {
  await queue.close();
  await deleteKeys(redis, prefix);
  await redis.quit();
});

async function join(member: string, at: number): Promise<void> {
  await createDeliveryRecorder(redis, keys)(Buffer.from(JSON.stringify(joinedByInviteLink(G, member, at))));
  await consumer.drain();
}

const jobs = async () =>
  (await queue.getJobs(["waiting", "delayed", "active", "completed"])).map((j) => j.data);

describe("rotate_after_joins: 3", () => {
  it("enqueues one rotation (trigger joins) at the third join and not before, however many follow", async () => {
    await join("1111", T);
    await join("2222", T + 1);
    // A leave does not undo a join through the link: the link was used.
    await createDeliveryRecorder(redis, keys)(Buffer.from(JSON.stringify(participantLeft(G, "2222", T + 2))));
    await consumer.drain();
    expect(await jobs()).toEqual([]);
    await join("3333", T + 3);
    const [job, ...rest] = await jobs();
    expect(rest).toEqual([]);
    expect(job).toMatchObject({ groupId: G, trigger: "joins", policy: "door", account: "default" });
    expect(job!.rotationId).toBe(joinsRotationId(G, ""));
    // Joins keep arriving while the rotation waits or runs: still the one rotation.
    await join("4444", T + 4);
    await join("5555", T + 5);
    expect(await jobs()).toHaveLength(1);
  });

  it("counts again from 0 for the new link", async () => {
    for (const [i, member] of ["1", "2", "3"].entries()) await join(member, T + i);
    const first = joinsRotationId(G, "");
    // The joins rotation published the new link.
    await redis.hset(keys.group(G), {
      last_rotation_id: first,
      last_rotated_at: new Date((T + 10) * 1000).toISOString(),
    });
    await join("4", T + 11);
    await join("5", T + 12);
    expect((await jobs()).map((j) => j.rotationId)).toEqual([first]);
    await join("6", T + 13);
    expect((await jobs()).map((j) => j.rotationId).sort()).toEqual([first, joinsRotationId(G, first)].sort());
  });

  it("a group whose policy sets no limit is never rotated by joins", async () => {
    config = parseConfigText(
      `policies:\n  - name: door\n    schedule: "0 3 * * *"\n    groups: ["${G}"]\n`,
      "joins.yaml",
      {},
      { graphApiVersion: "v23.0" },
    );
    for (const [i, member] of ["1", "2", "3", "4"].entries()) await join(member, T + i);
    expect(await jobs()).toEqual([]);
  });
});
