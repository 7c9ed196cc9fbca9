import { createServer, connect, type Server, type Socket } from "node:net";
import type { Redis } from "ioredis";
import { describe, expect } from "vitest";
import type { PublishInput, RotationMessage } from "../../src/core/interfaces.js";
import { channelKeys, type Keys } from "../../src/core/keys.js";
import { serializeMessage, signMessage, signMessageV1 } from "../../src/publish/message.js";
import { createPublisher } from "../../src/publish/publisher.js";
import { subscribe, type DeliverySource, type Subscription } from "../../src/publish/subscriber.js";
import { redisTest } from "../helpers/fixture.js";
import { testRedisUrl } from "../helpers/redis.js";
import { until } from "../helpers/until.js";

const it = redisTest();
const SECRET = "subscriber-test-secret";

let redis: Redis;
let channel: string;
let keys: Keys;
let subscription: Subscription | undefined;
let proxy: Proxy | undefined;

it.beforeEach(({ rig }) => {
  redis = rig.redis;
  ({ channel, keys } = rig.prefix("subscriber"));
  rig.defer(async () => {
    await proxy?.close();
    proxy = undefined;
  });
  rig.defer(async () => {
    await subscription?.close();
    subscription = undefined;
  });
});

function message(groupId: string, sequence: number, extra: Partial<RotationMessage> = {}): RotationMessage {
  return {
    event: "invite_link.rotated",
    schema: 1,
    rotation_id: `rot-${groupId}-${sequence}`,
    group_id: groupId,
    invite_link: `https://chat.whatsapp.com/Link${groupId}x${sequence}abcdefgh`,
    rotated_at: new Date(Date.UTC(2026, 0, 1, 0, 0, sequence % 86_400)).toISOString(),
    sequence,
    policy: "nightly",
    account: "default",
    trigger: "schedule",
    ...extra,
  };
}

const signed = (msg: RotationMessage): RotationMessage => ({
  ...msg,
  signature: signMessage(msg, SECRET, channel),
});

function input(groupId: string, rotationId: string): PublishInput {
  return {
    rotationId,
    groupId,
    inviteLink: `https://chat.whatsapp.com/Link${rotationId.replace(/[^\w-]/g, "")}abcdefgh`,
    createdAt: Date.UTC(2026, 0, 1),
    policy: "nightly",
    account: "default",
    trigger: "schedule",
    channel,
  };
}

interface Recorder {
  delivered: { group: string; sequence: number; source: DeliverySource }[];
  invalid: { error: Error; raw: string }[];
}

function recorder(): Recorder & {
  onMessage: (m: RotationMessage, meta: { source: DeliverySource }) => void;
  onInvalid: (error: Error, raw: string) => void;
} {
  const r: Recorder = { delivered: [], invalid: [] };
  return {
    ...r,
    onMessage: (m, meta) =>
      r.delivered.push({ group: m.group_id, sequence: m.sequence, source: meta.source }),
    onInvalid: (error, raw) => r.invalid.push({ error, raw }),
  };
}

/**
 * Publishes a marker as the publisher would (C:latest first) and waits for it, so everything
 * published before it has been handled.
 */
async function flush(rec: Recorder, group = "marker"): Promise<void> {
  const before = rec.delivered.length;
  const text = serializeMessage(signed(message(group, 1_000 + before)));
  await redis.hset(channelKeys(channel).latest, group, text);
  await redis.publish(channel, text);
  await until(() => rec.delivered.some((d) => d.group === group && d.sequence === 1_000 + before));
}

describe("subscribe", () => {
  it("sends bad signatures and bad messages to onInvalid and delivers only valid ones", async () => {
    const rec = recorder();
    subscription = await subscribe({ redis: testRedisUrl(), channel, secret: SECRET, ...rec });
    const good = signed(message("A", 1));
    const tampered = { ...signed(message("A", 2)), invite_link: "https://chat.whatsapp.com/EvilEvilEvil1" };
    const unsignedMsg = message("A", 3);
    const wrongSecret = { ...message("A", 4), signature: signMessage(message("A", 4), "other", channel) };
    await redis.publish(channel, serializeMessage(tampered));
    await redis.publish(channel, serializeMessage(unsignedMsg));
    await redis.publish(channel, serializeMessage(wrongSecret));
    await redis.publish(channel, "{not json");
    await redis.publish(channel, JSON.stringify({ ...good, sequence: 0 }));
    await redis.publish(channel, serializeMessage(good));
    await flush(rec);

    expect(rec.delivered.filter((d) => d.group === "A")).toEqual([
      { group: "A", sequence: 1, source: "publish" },
    ]);
    expect(rec.invalid.map((i) => i.error.message)).toEqual([
      expect.stringMatching(/wrong signature/),
      expect.stringMatching(/missing signature/),
      expect.stringMatching(/wrong signature/),
      expect.stringMatching(/not JSON/),
      expect.stringMatching(/sequence/),
    ]);
    expect(rec.invalid[3]!.raw).toBe("{not json");
    expect(rec.invalid.some((i) => i.error.message.includes(SECRET))).toBe(false);
  });

  it("delivers a message with fields the contract does not name (forward compatibility), signature verified", async () => {
    const rec = recorder();
    subscription = await subscribe({ redis: testRedisUrl(), channel, secret: SECRET, ...rec });
    const extended = { ...message("X", 1), expires_at: "2026-02-01T00:00:00.000Z", v: 2 };
    await redis.publish(
      channel,
      JSON.stringify({ ...extended, signature: signMessage(extended, SECRET, channel) }),
    );
    // Extra fields are covered: changing one, or a named one, breaks the signature.
    const next = { ...message("X", 2), v: 2 };
    const nextSigned = { ...next, signature: signMessage(next, SECRET, channel) };
    await redis.publish(
      channel,
      JSON.stringify({ ...nextSigned, invite_link: "https://chat.whatsapp.com/EvilEvilEvil1" }),
    );
    await redis.publish(channel, JSON.stringify({ ...nextSigned, v: 3 }));
    await flush(rec);
    expect(rec.delivered.filter((d) => d.group === "X")).toEqual([
      { group: "X", sequence: 1, source: "publish" },
    ]);
    expect(rec.invalid.map((i) => i.error.message)).toEqual([
      expect.stringMatching(/wrong signature/),
      expect.stringMatching(/wrong signature/),
    ]);
  });

  it("drops duplicates and out-of-order sequences per group", async () => {
    const rec = recorder();
    subscription = await subscribe({ redis: testRedisUrl(), channel, secret: SECRET, ...rec });
    for (const [group, sequence] of [
      ["A", 1],
      ["A", 1],
      ["B", 5],
      ["A", 3],
      ["A", 2],
      ["B", 4],
      ["A", 3],
      ["A", 4],
    ] as const) {
      await redis.publish(channel, serializeMessage(signed(message(group, sequence))));
    }
    // Another channel's messages are not ours.
    await redis.publish(`${channel}:other`, serializeMessage(signed(message("A", 9))));
    await flush(rec);
    expect(rec.delivered.filter((d) => d.group !== "marker").map((d) => `${d.group}${d.sequence}`)).toEqual([
      "A1",
      "B5",
      "A3",
      "A4",
    ]);
    expect(subscription.delivered.get("A")).toBe(4);
  });

  it("resyncs from C:latest on connect: the newest message of each group, once", async () => {
    const publisher = createPublisher({ redis, keys, signingSecret: SECRET });
    await publisher.publish(input("A", "a-1"));
    await publisher.publish(input("A", "a-2"));
    await publisher.publish(input("B", "b-1"));
    await redis.hset(channelKeys(channel).latest, "C", "garbage");
    const rec = recorder();
    // Given a client: the subscription duplicates it and leaves it open on close.
    subscription = await subscribe({ redis, channel, secret: SECRET, ...rec });
    // Delivered before subscribe() resolves.
    expect([...rec.delivered].sort((x, y) => x.group.localeCompare(y.group))).toEqual([
      { group: "A", sequence: 2, source: "resync" },
      { group: "B", sequence: 1, source: "resync" },
    ]);
    expect(rec.invalid.map((i) => i.raw)).toEqual(["garbage"]);

    await publisher.publish(input("A", "a-3"));
    await until(() => rec.delivered.length === 3);
    expect(rec.delivered[2]).toEqual({ group: "A", sequence: 3, source: "publish" });
    await subscription.close();
    subscription = undefined;
    expect(await redis.ping()).toBe("PONG");
  });

  it("does not resync when resync is false", async () => {
    await createPublisher({ redis, keys }).publish(input("A", "a-1"));
    const rec = recorder();
    subscription = await subscribe({ redis: testRedisUrl(), channel, resync: false, ...rec });
    await flush(rec);
    expect(rec.delivered.map((d) => d.group)).toEqual(["marker"]);
  });

  it("resyncs after a reconnect: delivers what was published while it was away", async () => {
    proxy = await startProxy(new URL(testRedisUrl()));
    const publisher = createPublisher({ redis, keys });
    await publisher.publish(input("A", "a-1"));
    const rec = recorder();
    subscription = await subscribe({
      redis: { host: "127.0.0.1", port: proxy.port, retryStrategy: () => 20 },
      channel,
      ...rec,
    });
    expect(rec.delivered).toEqual([{ group: "A", sequence: 1, source: "resync" }]);

    proxy.cut(); // the subscriber is away: its sockets drop and new ones are refused
    await publisher.publish(input("A", "a-2"));
    await publisher.publish(input("A", "a-3"));
    await publisher.publish(input("B", "b-1"));
    await new Promise((r) => setTimeout(r, 100));
    expect(rec.delivered).toHaveLength(1);

    proxy.restore();
    await until(() => rec.delivered.length === 3);
    expect(rec.delivered.slice(1).sort((x, y) => x.group.localeCompare(y.group))).toEqual([
      { group: "A", sequence: 3, source: "resync" },
      { group: "B", sequence: 1, source: "resync" },
    ]);

    // Live again, on the resubscribed connection.
    await publisher.publish(input("A", "a-4"));
    await until(() => rec.delivered.length === 4);
    expect(rec.delivered[3]).toEqual({ group: "A", sequence: 4, source: "publish" });
  });
});

describe("subscribe: at least once for its handler", () => {
  it("delivers a message again after the handler threw: on the next message, then on a resync", async () => {
    const attempts: string[] = [];
    const errors: Error[] = [];
    let failing = 2;
    const publisher = createPublisher({ redis, keys, signingSecret: SECRET });
    subscription = await subscribe({
      redis: testRedisUrl(),
      channel,
      secret: SECRET,
      onMessage: (m) => {
        attempts.push(`${m.group_id}${m.sequence}`);
        if (m.group_id === "A" && failing-- > 0) throw new Error("handler down");
      },
      onError: (error) => errors.push(error),
    });
    await publisher.publish(input("A", "a-1")); // throws
    await until(() => attempts.length === 1);
    expect(subscription.delivered.get("A")).toBeUndefined();
    await publisher.publish(input("B", "b-1")); // the next message: A1 again (throws again)
    await until(() => attempts.length === 3);
    expect(attempts).toEqual(["A1", "B1", "A1"]);
    // The timer (1 s) tries once more, and now the handler returns.
    await until(() => attempts.length === 4, 5_000);
    expect(attempts[3]).toBe("A1");
    expect(subscription.delivered.get("A")).toBe(1);
    expect(errors.map((e) => e.message)).toEqual(["handler down", "handler down"]);
    // Returned once: never again, not on the next message either.
    await publisher.publish(input("B", "b-2"));
    await until(() => attempts.length === 5);
    expect(attempts[4]).toBe("B2");
  });

  it("a newer message of the group replaces the one the handler threw on", async () => {
    const attempts: string[] = [];
    let failOnce = true;
    const publisher = createPublisher({ redis, keys });
    subscription = await subscribe({
      redis: testRedisUrl(),
      channel,
      onMessage: (m) => {
        attempts.push(`${m.group_id}${m.sequence}`);
        if (failOnce) {
          failOnce = false;
          throw new Error("handler down");
        }
      },
      onError: () => undefined,
    });
    await publisher.publish(input("A", "a-1"));
    await publisher.publish(input("A", "a-2"));
    await until(() => subscription!.delivered.get("A") === 2);
    await new Promise((r) => setTimeout(r, 1_300)); // past the redelivery timer
    expect(attempts).toEqual(["A1", "A2"]);
  });

  it("a handler that threw before a reconnect gets the message at the resync", async () => {
    proxy = await startProxy(new URL(testRedisUrl()));
    const publisher = createPublisher({ redis, keys });
    await publisher.publish(input("A", "a-1"));
    const attempts: string[] = [];
    let failing = true;
    subscription = await subscribe({
      redis: { host: "127.0.0.1", port: proxy.port, retryStrategy: () => 20 },
      channel,
      onMessage: (m, meta) => {
        attempts.push(`${m.group_id}${m.sequence}:${meta.source}`);
        if (failing) throw new Error("handler down");
      },
      onError: () => undefined,
    });
    expect(attempts).toEqual(["A1:resync"]);
    proxy.cut();
    failing = false;
    proxy.restore();
    await until(() => subscription!.delivered.get("A") === 1);
    expect(attempts).toEqual(["A1:resync", "A1:resync"]);
  });
});

describe("subscribe: limits and unsigned trust", () => {
  it("rejects a message over 64 KiB through onInvalid, or onError without it, unparsed and undelivered", async () => {
    const rec = recorder();
    subscription = await subscribe({ redis: testRedisUrl(), channel, ...rec });
    const huge = JSON.stringify({ ...message("A", 1), padding: "x".repeat(70_000) });
    await redis.publish(channel, huge);
    await flush(rec);
    expect(rec.delivered.filter((d) => d.group === "A")).toEqual([]);
    expect(rec.invalid).toHaveLength(1);
    expect(rec.invalid[0]!.error.message).toMatch(
      /rotation message of \d+ bytes exceeds the limit of 65536 bytes/,
    );
    await subscription.close();

    const errors: Error[] = [];
    const delivered: string[] = [];
    subscription = await subscribe({
      redis: testRedisUrl(),
      channel,
      maxMessageBytes: 1_000,
      onMessage: (m) => void delivered.push(m.group_id),
      onError: (error) => errors.push(error),
    });
    delivered.length = 0;
    await redis.publish(channel, JSON.stringify({ ...message("Z", 1), padding: "\u00e9".repeat(600) }));
    await until(() => errors.length === 1);
    expect(errors[0]!.message).toMatch(/exceeds the limit of 1000 bytes/);
    expect(delivered).toEqual([]);
  });

  it("unsigned: a forged sequence jump is not delivered and does not hide later messages; C:latest decides", async () => {
    const publisher = createPublisher({ redis, keys });
    await publisher.publish(input("A", "a-1"));
    const rec = recorder();
    subscription = await subscribe({ redis: testRedisUrl(), channel, ...rec });
    expect(rec.delivered).toEqual([{ group: "A", sequence: 1, source: "resync" }]);

    // Anyone who can PUBLISH: one forged message with the largest safe sequence.
    const forged = message("A", Number.MAX_SAFE_INTEGER, { rotated_at: "2026-01-01T00:00:00.000Z" });
    await redis.publish(channel, serializeMessage(forged));
    await publisher.publish(input("A", "a-2"));
    await publisher.publish(input("A", "a-3"));
    await flush(rec);
    expect(rec.delivered.filter((d) => d.group === "A")).toEqual([
      { group: "A", sequence: 1, source: "resync" },
      { group: "A", sequence: 2, source: "publish" },
      { group: "A", sequence: 3, source: "publish" },
    ]);
    expect(rec.invalid.map((i) => i.error.message)).toEqual([
      expect.stringMatching(
        /jumps group A to sequence 9007199254740991, which .*:latest does not confirm \(it has 1\)/,
      ),
    ]);
  });

  it("unsigned: a real jump (messages missed) is confirmed by C:latest and delivered", async () => {
    const publisher = createPublisher({ redis, keys });
    await publisher.publish(input("A", "a-1"));
    const rec = recorder();
    subscription = await subscribe({ redis: testRedisUrl(), channel, ...rec });
    // A2 never reaches this subscriber; A3 is written as the publisher does (C:latest, then PUBLISH).
    const a3 = serializeMessage(message("A", 3));
    await redis.hset(channelKeys(channel).latest, "A", a3);
    await redis.publish(channel, a3);
    await flush(rec);
    expect(rec.delivered.filter((d) => d.group === "A")).toEqual([
      { group: "A", sequence: 1, source: "resync" },
      { group: "A", sequence: 3, source: "publish" },
    ]);
    expect(rec.invalid).toEqual([]);
  });

  it("signed: v1 signatures are read only with acceptV1", async () => {
    const v1 = { ...message("A", 1), signature: signMessageV1(message("A", 1), SECRET) };
    const rec = recorder();
    subscription = await subscribe({ redis: testRedisUrl(), channel, secret: SECRET, ...rec });
    await redis.publish(channel, serializeMessage(v1));
    await flush(rec);
    expect(rec.delivered.filter((d) => d.group === "A")).toEqual([]);
    expect(rec.invalid.map((i) => i.error.message)).toEqual([expect.stringMatching(/wrong signature/)]);
    await subscription.close();

    const old = recorder();
    subscription = await subscribe({
      redis: testRedisUrl(),
      channel,
      secret: SECRET,
      acceptV1: true,
      resync: false,
      ...old,
    });
    await redis.publish(channel, serializeMessage(v1));
    await flush(old);
    expect(old.delivered.filter((d) => d.group === "A")).toEqual([
      { group: "A", sequence: 1, source: "publish" },
    ]);
  });
});

describe("Subscription.close", () => {
  it("resolves while the connection is down, and nothing is delivered afterwards", async () => {
    proxy = await startProxy(new URL(testRedisUrl()));
    const rec = recorder();
    const sub = await subscribe({
      redis: { host: "127.0.0.1", port: proxy.port, retryStrategy: () => 20 },
      channel,
      ...rec,
    });
    proxy.cut();
    await sub.close();
    proxy.restore();
    await redis.publish(channel, serializeMessage(message("A", 1)));
    await new Promise((r) => setTimeout(r, 100));
    expect(rec.delivered).toEqual([]);
  });
});

interface Proxy {
  readonly port: number;
  /** Drops every connection and refuses new ones until restore(). */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/** A TCP proxy in front of Redis, so a test can take the subscriber away without touching Redis. */
async function startProxy(target: URL): Promise<Proxy> {
  const sockets = new Set<Socket>();
  let open = true;
  const server: Server = createServer((client) => {
    if (!open) return void client.destroy();
    const upstream = connect(Number(target.port || 6379), target.hostname);
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(a);
      a.pipe(b);
      a.on("error", () => b.destroy());
      a.on("close", () => {
        sockets.delete(a);
        b.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const cut = () => {
    open = false;
    for (const socket of sockets) socket.destroy();
  };
  return {
    port: typeof address === "object" && address ? address.port : 0,
    cut,
    restore: () => void (open = true),
    close: async () => {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
