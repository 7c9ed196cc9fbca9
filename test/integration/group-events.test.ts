import type { Redis } from "ioredis";
import { describe, expect } from "vitest";
import type { Keys } from "../../src/core/keys.js";
import { createDeliveryRecorder } from "../../src/gateway/webhook-receiver.js";
import { createGroupEventsConsumer, type GroupEventsConsumer } from "../../src/groups/consumer.js";
import { createGroupStateStore } from "../../src/groups/state.js";
import {
  groupDeleted,
  groupDeleteFailed,
  groupSettingsUpdated,
  groupSuspended,
  groupSuspensionCleared,
  joinedByInviteLink,
  joinedByInviteLinkBsuid,
  joinRequestCreated,
  joinRequestsApproved,
  participantLeft,
  participantRemoved,
  singularField,
} from "../helpers/meta-webhooks.js";
import { countedRedis } from "../helpers/commands.js";
import { redisTest } from "../helpers/fixture.js";
import { capturingLogger } from "../helpers/rotator.js";
import { until } from "../helpers/until.js";

const it = redisTest();
const G = "120363025246125486";
const T = 1_739_321_024; // seconds, as Meta sends them

let redis: Redis;
let keys: Keys;
let consumer: GroupEventsConsumer;
let joined: { group: string; joins: number; rotation: string }[];

it.beforeEach(({ rig }) => {
  redis = rig.redis;
  ({ keys } = rig.prefix("group-events"));
  joined = [];
  consumer = newConsumer();
  rig.defer(() => consumer.stop());
});

function newConsumer(name = "test-consumer", claimIdleMs = 60_000): GroupEventsConsumer {
  return createGroupEventsConsumer({
    redis,
    keys,
    store: createGroupStateStore(redis, keys),
    logger: capturingLogger([]),
    consumerName: name,
    claimIdleMs,
    blockMs: 100,
    onJoined: async (event, applied) =>
      void joined.push({ group: event.groupId, joins: applied.joins, rotation: applied.joinsRotation }),
  });
}

/** Records deliveries as the gateway does (a redelivered body is recorded once). */
async function deliver(...payloads: Record<string, unknown>[]): Promise<void> {
  const record = createDeliveryRecorder(redis, keys);
  for (const payload of payloads) await record(Buffer.from(JSON.stringify(payload)));
}

const participants = async (group = G) => Number((await redis.hget(keys.groupParticipants, group)) ?? 0);
const joins = async (group = G) => Number((await redis.hget(keys.group(group), "joins")) ?? 0);

describe("group_participants_update", () => {
  it("counts a join through the invite link, and a redelivery of the same change once", async () => {
    await deliver(joinedByInviteLink(G, "16505551234", T));
    expect(await consumer.drain()).toBe(1);
    expect(await participants()).toBe(1);
    expect(await joins()).toBe(1);
    // Meta redelivers the change in another body (another entry, other bytes): nothing counts twice.
    const again = joinedByInviteLink(G, "16505551234", T);
    (again as { redelivered?: boolean }).redelivered = true;
    await deliver(again);
    expect(await consumer.drain()).toBe(1);
    expect(await participants()).toBe(1);
    expect(await joins()).toBe(1);
    // Applied entries leave the stream.
    expect(await redis.xlen(keys.webhookStream)).toBe(0);
  });

  it("keys a participant on user_id when the webhook carries no wa_id, and reads the singular field", async () => {
    await deliver(
      joinedByInviteLinkBsuid(G, "US.13491208655302741918", T),
      singularField(joinedByInviteLink(G, "16505550000", T + 1)),
    );
    await consumer.drain();
    expect(await participants()).toBe(2);
    expect(await redis.hkeys(keys.groupMembers(G))).toEqual(
      expect.arrayContaining(["US.13491208655302741918", "16505550000"]),
    );
  });

  it("counts each participant of an approved batch, and a leave takes one away", async () => {
    await deliver(joinRequestsApproved(G, ["1111", "2222", "3333"], T), participantLeft(G, "2222", T + 5));
    await consumer.drain();
    expect(await participants()).toBe(2);
    expect(await joins()).toBe(3);
  });

  it("a business removal (input) and a leave of someone never seen joining change no count below zero", async () => {
    await deliver(participantLeft(G, "9999", T), participantRemoved(G, "+8888", T));
    await consumer.drain();
    expect(await participants()).toBe(0);
  });

  it("an older join delivered after the leave does not bring the participant back", async () => {
    await deliver(joinedByInviteLink(G, "1111", T), participantLeft(G, "1111", T + 10));
    await consumer.drain();
    expect(await participants()).toBe(0);
    const late = joinedByInviteLink(G, "1111", T);
    (late as { late?: boolean }).late = true;
    await deliver(late);
    await consumer.drain();
    expect(await participants()).toBe(0);
  });

  it("a join request is not a join", async () => {
    await deliver(joinRequestCreated(G, "1111", T));
    await consumer.drain();
    expect(await participants()).toBe(0);
    expect(joined).toEqual([]);
  });

  it("restarts the joins count with a new link and leaves out joins before it", async () => {
    await deliver(joinedByInviteLink(G, "1111", T), joinedByInviteLink(G, "2222", T + 1));
    await consumer.drain();
    expect(await joins()).toBe(2);
    // A rotation published a new link at T + 100 s.
    await redis.hset(keys.group(G), {
      last_rotation_id: "rot-2",
      last_rotated_at: new Date((T + 100) * 1000 + 250).toISOString(),
    });
    // A join through the old link that arrives late, then one through the new link.
    await deliver(joinedByInviteLink(G, "3333", T + 50), joinedByInviteLink(G, "4444", T + 100));
    await consumer.drain();
    expect(await joins()).toBe(1);
    expect(await participants()).toBe(4);
    expect(joined.at(-1)).toEqual({ group: G, joins: 1, rotation: "rot-2" });
  });
});

describe("group_status_update and group_lifecycle_update", () => {
  it("marks a group suspended and clears it, whatever order redeliveries come in", async () => {
    await deliver(groupSuspended(G, T));
    await consumer.drain();
    expect(await redis.hget(keys.group(G), "suspended_at")).toBe(String(T * 1000));
    expect(await redis.sismember(keys.groupsUnavailable, G)).toBe(1);
    expect(await redis.sismember(keys.suspendedIndex, G)).toBe(1);

    await deliver(groupSuspensionCleared(G, T + 60));
    await consumer.drain();
    expect(await redis.hget(keys.group(G), "suspended_at")).toBeNull();
    expect(await redis.sismember(keys.groupsUnavailable, G)).toBe(0);

    // The suspension again, redelivered after its clearing: older, so it changes nothing.
    const again = groupSuspended(G, T);
    (again as { redelivered?: boolean }).redelivered = true;
    await deliver(again);
    await consumer.drain();
    expect(await redis.sismember(keys.suspendedIndex, G)).toBe(0);
  });

  it("marks a group deleted; a failed delete changes nothing", async () => {
    await deliver(groupDeleteFailed("G-STILL-THERE", T), groupDeleted(G, T));
    await consumer.drain();
    expect(await redis.hget(keys.group(G), "deleted_at")).toBe(String(T * 1000));
    expect(await redis.smembers(keys.deletedIndex)).toEqual([G]);
    expect(await redis.smembers(keys.groupsUnavailable)).toEqual([G]);
    // A suspension cleared later does not make a deleted group available again.
    await deliver(groupSuspended(G, T + 1), groupSuspensionCleared(G, T + 2));
    await consumer.drain();
    expect(await redis.smembers(keys.groupsUnavailable)).toEqual([G]);
  });

  it("acknowledges a field it does not read and changes nothing", async () => {
    await deliver(groupSettingsUpdated(G, T));
    expect(await consumer.drain()).toBe(1);
    expect(await redis.exists(keys.group(G))).toBe(0);
    expect(await redis.xlen(keys.webhookStream)).toBe(0);
  });
});

describe("the state store", () => {
  it("sends the apply script's text once per connection, then only its SHA1 (EVALSHA)", async ({ rig }) => {
    const { counted, sent } = await countedRedis(rig.defer);
    const store = createGroupStateStore(counted, keys);
    const applied = [];
    for (const [member, at] of [
      ["1111", T],
      ["2222", T + 1],
      ["1111", T],
    ] as const) {
      applied.push(
        await store.apply({
          kind: "joined",
          groupId: G,
          at: at * 1000,
          members: [member],
          viaInviteLink: true,
        }),
      );
    }
    expect(applied.map((a) => [a.changed, a.participants, a.joins])).toEqual([
      [1, 1, 1],
      [1, 2, 2],
      [0, 2, 2],
    ]);
    // A command's name and first argument are set as it is written to the socket: the script's
    // text goes with the first call only.
    expect(sent.map((c) => c.name)).toEqual(["eval", "evalsha", "evalsha"]);
    expect(sent.slice(1).every((c) => /^[0-9a-f]{40}$/.test(String(c.args[0])))).toBe(true);
  });
});

describe("the consumer loop", () => {
  it("applies what was recorded while no consumer ran, then what arrives while it runs", async () => {
    await deliver(joinedByInviteLink(G, "1111", T));
    await consumer.start();
    await until(async () => (await participants()) === 1);
    await deliver(joinedByInviteLink(G, "2222", T + 1));
    await until(async () => (await participants()) === 2);
  });

  it("an entry a dead consumer left unacknowledged is claimed and applied by another", async () => {
    await deliver(joinedByInviteLink(G, "1111", T));
    await redis.xgroup("CREATE", keys.webhookStream, keys.webhookConsumerGroup, "0", "MKSTREAM");
    // A consumer reads the entry and dies before applying it.
    await redis.xreadgroup(
      "GROUP",
      keys.webhookConsumerGroup,
      "dead",
      "COUNT",
      10,
      "STREAMS",
      keys.webhookStream,
      ">",
    );
    expect(await participants()).toBe(0);
    const other = newConsumer("survivor", 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await other.drain()).toBe(1);
    expect(await participants()).toBe(1);
    const pending = (await redis.xpending(keys.webhookStream, keys.webhookConsumerGroup)) as [number];
    expect(pending[0]).toBe(0);
  });
});
