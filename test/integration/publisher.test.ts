import { Redis } from "ioredis";
import { connect, createServer, type AddressInfo } from "node:net";
import { describe, expect } from "vitest";
import type { PublishInput, RotationMessage } from "../../src/core/interfaces.js";
import { LockLostError } from "../../src/core/errors.js";
import { channelKeys, PUBLISHED_ROTATION_TTL_MS, type Keys } from "../../src/core/keys.js";
import { parseMessage, serializeMessage, verifySignature } from "../../src/publish/message.js";
import { createPublisher, readLatest } from "../../src/publish/publisher.js";
import { onEachCommand } from "../helpers/commands.js";
import { redisTest } from "../helpers/fixture.js";
import { testRedisUrl } from "../helpers/redis.js";
import { until } from "../helpers/until.js";

const it = redisTest();
const SECRET = "publisher-test-secret";
const CREATED_AT = Date.parse("2026-03-04T05:06:07.089Z");

let redis: Redis;
let channel: string;
let keys: Keys;
const clock = { now: () => 1_700_000_000_000 };

it.beforeEach(({ rig }) => {
  redis = rig.redis;
  ({ channel, keys } = rig.prefix("publisher"));
});

function input(overrides: Partial<PublishInput> = {}): PublishInput {
  return {
    rotationId: "rot-1",
    groupId: "120363025246125486",
    inviteLink: "https://chat.whatsapp.com/AbC123dEfG",
    createdAt: CREATED_AT,
    policy: "nightly",
    account: "default",
    trigger: "schedule",
    channel,
    ...overrides,
  };
}

/** A second connection SUBSCRIBEd to the channel, collecting what arrives. */
async function listen(): Promise<{ received: string[]; close: () => Promise<void> }> {
  const sub = redis.duplicate();
  const received: string[] = [];
  sub.on("message", (_channel: string, text: string) => received.push(text));
  await sub.subscribe(channel);
  return { received, close: async () => void (await sub.quit()) };
}

describe("publisher", () => {
  it("publishes one rotation: C:latest, C:stream, PUBLISH and the group's state", async () => {
    const listener = await listen();
    await redis.hset(keys.group("120363025246125486"), "without_link_since", "123");
    await redis.sadd(keys.withoutLinkIndex, "120363025246125486");
    const publisher = createPublisher({ redis, keys, clock });

    const message = await publisher.publish(input());

    const expected: RotationMessage = {
      event: "invite_link.rotated",
      schema: 1,
      rotation_id: "rot-1",
      group_id: "120363025246125486",
      invite_link: "https://chat.whatsapp.com/AbC123dEfG",
      rotated_at: "2026-03-04T05:06:07.089Z",
      sequence: 1,
      policy: "nightly",
      account: "default",
      trigger: "schedule",
    };
    expect(message).toEqual(expected);
    const json = serializeMessage(expected);
    const c = channelKeys(channel);

    expect(await redis.hget(c.latest, "120363025246125486")).toBe(json);
    const stream = await redis.xrange(c.stream, "-", "+");
    expect(stream).toHaveLength(1);
    expect(stream[0]![1]).toEqual(["message", json]);
    await until(() => listener.received.length === 1);
    expect(listener.received).toEqual([json]);
    await listener.close();

    expect(await redis.hgetall(keys.group("120363025246125486"))).toEqual({
      sequence: "1",
      [`sequence:${channel}`]: "1",
      last_sequence: "1",
      last_rotation_id: "rot-1",
      last_rotated_at: "2026-03-04T05:06:07.089Z",
      last_trigger: "schedule",
      last_policy: "nightly",
      last_account: "default",
      last_channel: channel,
      last_message: json,
    });
    expect(await redis.sismember(keys.groupsIndex, "120363025246125486")).toBe(1);
    expect(await redis.sismember(keys.withoutLinkIndex, "120363025246125486")).toBe(0);
    expect(await redis.hgetall(keys.rotation("rot-1"))).toEqual({
      message: json,
      published_at: "1700000000000",
    });
    const ttl = await redis.pttl(keys.rotation("rot-1"));
    // Published, the saga state is kept only for a second delivery of the job (keys.ts).
    expect(ttl).toBeGreaterThan(PUBLISHED_ROTATION_TTL_MS - 60_000);
    expect(ttl).toBeLessThanOrEqual(PUBLISHED_ROTATION_TTL_MS);

    expect(await readLatest(redis, channel, "120363025246125486")).toEqual(expected);
    expect(await readLatest(redis, channel, "nope")).toBeNull();
    expect([...(await readLatest(redis, channel)).entries()]).toEqual([["120363025246125486", expected]]);
  });

  it("stores an empty last_policy for a manual rotation and null in the message", async () => {
    const publisher = createPublisher({ redis, keys });
    const message = await publisher.publish(input({ policy: null, trigger: "manual" }));
    expect(message.policy).toBeNull();
    expect(await redis.hget(keys.group("120363025246125486"), "last_policy")).toBe("");
  });

  it("counts sequences 1, 2, 3 per group, independently for each group", async () => {
    const publisher = createPublisher({ redis, keys });
    const seqA: number[] = [];
    const seqB: number[] = [];
    for (let i = 1; i <= 3; i++) {
      seqA.push((await publisher.publish(input({ rotationId: `a-${i}`, groupId: "A" }))).sequence);
      if (i <= 2)
        seqB.push((await publisher.publish(input({ rotationId: `b-${i}`, groupId: "B" }))).sequence);
    }
    expect(seqA).toEqual([1, 2, 3]);
    expect(seqB).toEqual([1, 2]);
    expect((await readLatest(redis, channel, "A"))?.rotation_id).toBe("a-3");
    expect(await redis.xlen(channelKeys(channel).stream)).toBe(5);
  });

  it("is idempotent per rotation id: the second publish returns the stored message", async () => {
    const listener = await listen();
    const publisher = createPublisher({ redis, keys, signingSecret: SECRET });
    const first = await publisher.publish(input());
    // A retry on another process, after the link was created again with another timestamp.
    const again = await createPublisher({ redis, keys, signingSecret: SECRET }).publish(
      input({ createdAt: CREATED_AT + 5_000 }),
    );
    expect(again).toEqual(first);
    expect(await redis.xlen(channelKeys(channel).stream)).toBe(1);
    expect(await redis.hget(keys.group("120363025246125486"), "sequence")).toBe("1");
    await new Promise((r) => setTimeout(r, 50));
    expect(listener.received).toHaveLength(1);
    await listener.close();
  });

  it("signs iff a signing secret is set, and never puts the secret in the message", async () => {
    const signed = await createPublisher({ redis, keys, signingSecret: SECRET }).publish(input());
    expect(signed.signature).toMatch(/^v2=[0-9a-f]{64}$/);
    expect(verifySignature(signed, SECRET, { channel })).toBe(true);
    // Signed for its channel: the same message read from another channel does not verify.
    expect(verifySignature(signed, SECRET, { channel: `${channel}:elsewhere` })).toBe(false);
    const stored = await redis.hget(channelKeys(channel).latest, signed.group_id);
    expect(stored).not.toContain(SECRET);
    expect(parseMessage(stored!)).toEqual(signed);

    const unsigned = await createPublisher({ redis, keys }).publish(input({ rotationId: "rot-2" }));
    expect(unsigned).not.toHaveProperty("signature");
    expect(unsigned.sequence).toBe(2);
  });

  it("gives 20 concurrent rotations of one group the sequences 1..20, without gaps or duplicates", async () => {
    // Three publishers on their own connections stand for three worker processes; the fourth shares
    // the test's connection with the reads below.
    const clients = [redis.duplicate(), redis.duplicate(), redis.duplicate()];
    const publishers = [...clients, redis].map((client) => createPublisher({ redis: client, keys }));
    try {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          publishers[i % publishers.length]!.publish(input({ rotationId: `rot-${i}`, groupId: "G" })),
        ),
      );
      const sequences = results.map((m) => m.sequence).sort((a, b) => a - b);
      expect(sequences).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(new Set(results.map((m) => m.rotation_id)).size).toBe(20);
      const stream = await redis.xrange(channelKeys(channel).stream, "-", "+");
      expect(stream.map(([, fields]) => parseMessage(fields[1]!).sequence)).toEqual(sequences);
      expect(await redis.hget(keys.group("G"), "sequence")).toBe("20");
      expect((await readLatest(redis, channel, "G"))?.sequence).toBe(20);
    } finally {
      await Promise.all(clients.map((client) => client.quit()));
    }
  });
});

describe("publisher sequences per channel", () => {
  const other = () => `${channel}:second`; // under the test's prefix: deleted with its keys

  it("counts each channel's messages of a group on their own, so every stream is gap-free", async () => {
    const publisher = createPublisher({ redis, keys, signingSecret: SECRET });
    const onFirst = (id: string) => publisher.publish(input({ rotationId: id, groupId: "G" }));
    const onSecond = (id: string) =>
      publisher.publish(input({ rotationId: id, groupId: "G", channel: other() }));
    const published = [
      await onFirst("r1"),
      await onFirst("r2"),
      await onSecond("r3"),
      await onFirst("r4"),
      await onSecond("r5"),
    ];
    expect(published.map((m) => m.sequence)).toEqual([1, 2, 1, 3, 2]);
    for (const [name, expected] of [
      [channel, [1, 2, 3]],
      [other(), [1, 2]],
    ] as const) {
      const stream = await redis.xrange(channelKeys(name).stream, "-", "+");
      expect(stream.map(([, fields]) => parseMessage(fields[1]!).sequence)).toEqual(expected);
      const latest = await readLatest(redis, name, "G");
      expect(latest?.sequence).toBe(expected.at(-1));
      expect(verifySignature(latest!, SECRET, { channel: name })).toBe(true);
    }
    // status shows the last message's own sequence; the group's publish count stays whole.
    expect(await redis.hmget(keys.group("G"), "last_sequence", "sequence")).toEqual(["2", "5"]);
  });

  it("goes on from the group's newest message on a channel when state predates per-channel counting", async () => {
    const publisher = createPublisher({ redis, keys });
    await publisher.publish(input({ rotationId: "old-1", groupId: "G" }));
    await publisher.publish(input({ rotationId: "old-2", groupId: "G" }));
    // As an earlier version left it: one counter for the group, no per-channel field.
    await redis.hdel(keys.group("G"), `sequence:${channel}`, "last_sequence");
    await redis.hset(keys.group("G"), "sequence", "7");
    expect((await publisher.publish(input({ rotationId: "new-1", groupId: "G" }))).sequence).toBe(3);
    expect(
      (await publisher.publish(input({ rotationId: "new-2", groupId: "G", channel: other() }))).sequence,
    ).toBe(1);
  });
});

describe("publisher across a lost reply", () => {
  it("publishes once when the connection drops after the publish ran but before its reply arrived", async () => {
    // A proxy in front of Redis that lets the first publish script through, then cuts the client
    // off before Redis's reply reaches it: the client resends it on its new connection, and the
    // resent call must find the rotation published instead of publishing twice.
    const target = new URL(testRedisUrl());
    let cut = false;
    const proxy = createServer((client) => {
      const upstream = connect(Number(target.port || 6379), target.hostname);
      client.on("error", () => undefined);
      upstream.on("error", () => undefined);
      client.on("data", (chunk: Buffer) => {
        upstream.write(chunk);
        if (!cut && /\r\nEVAL(SHA)?\r\n/i.test(chunk.toString("latin1"))) {
          cut = true;
          setTimeout(() => {
            client.destroy();
            upstream.destroy();
          }, 0);
          upstream.pause();
        }
      });
      upstream.on("data", (chunk: Buffer) => client.write(chunk));
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const port = (proxy.address() as AddressInfo).port;
    const viaProxy = new Redis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: null });
    viaProxy.on("error", () => undefined);
    try {
      const publisher = createPublisher({ redis: viaProxy, keys, clock });
      const first = await publisher.publish(input()).then(
        (message) => message,
        (error: unknown) => error,
      );
      expect(cut).toBe(true);
      // The retry (the job's next attempt) finds the rotation published and publishes nothing more.
      const again = await publisher.publish(input());
      if (!(first instanceof Error)) expect(first).toEqual(again);
      expect(again.sequence).toBe(1);
      expect(await redis.xlen(channelKeys(channel).stream)).toBe(1);
      expect(await redis.hget(keys.group(input().groupId), "sequence")).toBe("1");
    } finally {
      viaProxy.disconnect();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });
});

describe("publisher fenced by the group lock", () => {
  const GROUP = "120363025246125486";
  const publishedNothing = async () => {
    expect(await redis.hget(channelKeys(channel).latest, GROUP)).toBeNull();
    expect(await redis.xlen(channelKeys(channel).stream)).toBe(0);
    expect(await redis.hget(keys.group(GROUP), "sequence")).toBeNull();
    expect(await redis.hget(keys.rotation("rot-1"), "message")).toBeNull();
  };

  it("publishes only while the owner holds the group's lock", async () => {
    const publisher = createPublisher({ redis, keys });
    await redis.set(keys.groupLock(GROUP), "someone-else");
    const refused = publisher.publish(input({ lockOwner: "me" }));
    await expect(refused).rejects.toBeInstanceOf(LockLostError);
    await expect(refused).rejects.toMatchObject({ code: "E_LOCK_LOST" });
    await redis.del(keys.groupLock(GROUP)); // expired, and nobody took it: still not ours
    await expect(publisher.publish(input({ lockOwner: "me" }))).rejects.toThrow(LockLostError);
    await publishedNothing();

    await redis.set(keys.groupLock(GROUP), "me");
    expect((await publisher.publish(input({ lockOwner: "me" }))).sequence).toBe(1);
  });

  it("publishes on the shared connection: one call, no connection of its own", async () => {
    const shared = redis.duplicate();
    shared.duplicate = () => {
      throw new Error("the publisher opened a connection");
    };
    const sent: string[] = [];
    onEachCommand(shared, (command) => sent.push(command.name));
    try {
      await shared.set(keys.groupLock(GROUP), "me");
      sent.length = 0;
      const publisher = createPublisher({ redis: shared, keys });
      expect((await publisher.publish(input({ lockOwner: "me" }))).sequence).toBe(1);
      expect(sent).toEqual(["evalsha"]);
    } finally {
      await shared.quit();
    }
  });

  it("a wrong expected sequence costs one more call, never a wrong message", async () => {
    const publisher = createPublisher({ redis, keys, signingSecret: SECRET });
    await redis.set(keys.groupLock(GROUP), "me");
    await publisher.publish(input({ lockOwner: "me" }));
    const second = await publisher.publish(
      input({ rotationId: "rot-2", lockOwner: "me", expectedSequence: 7 }),
    );
    expect(second.sequence).toBe(2);
    expect(verifySignature(second, SECRET, { channel })).toBe(true);
    const [, fields] = (await redis.xrange(channelKeys(channel).stream, "-", "+"))[1]!;
    expect(parseMessage(fields[1]!)).toEqual(second);
  });

  it("finishes the rotation in the same call when asked: failure cleared, settled, lock released", async () => {
    const publisher = createPublisher({ redis, keys });
    const group = keys.group(GROUP);
    await redis.set(keys.groupLock(GROUP), "me");
    await redis.hset(group, {
      failed_rotation_id: "rot-0",
      failure_code: "GRAPH_TIMEOUT",
      failure_message: "timed out",
      failed_at: "1",
      pending_rotation: "rot-1",
      pending_since: "1",
    });
    expect(publisher.finishes).toBe(true);
    await publisher.publish(input({ lockOwner: "me", finish: true }));
    expect(await redis.exists(keys.groupLock(GROUP))).toBe(0);
    expect(
      await redis.hmget(
        group,
        "failed_rotation_id",
        "failure_code",
        "pending_rotation",
        "without_link_since",
      ),
    ).toEqual([null, null, null, null]);
    expect(await redis.sismember(keys.withoutLinkIndex, GROUP)).toBe(0);

    // Another owner's lock is never released, even when the rotation was published already.
    await redis.set(keys.groupLock(GROUP), "next-owner");
    await publisher.publish(input({ lockOwner: "me", finish: true }));
    expect(await redis.get(keys.groupLock(GROUP))).toBe("next-owner");
  });

  it("a rotation already published gets its message back after its lock is gone", async () => {
    const publisher = createPublisher({ redis, keys });
    await redis.set(keys.groupLock(GROUP), "me");
    const first = await publisher.publish(input({ lockOwner: "me" }));
    // The reply was lost, the lock expired and another owner holds it when the job retries.
    await redis.set(keys.groupLock(GROUP), "next-owner");
    expect(await publisher.publish(input({ lockOwner: "me" }))).toEqual(first);
    expect(await redis.xlen(channelKeys(channel).stream)).toBe(1);
  });
});
