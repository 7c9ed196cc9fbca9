import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect } from "vitest";
import { parseConfigText } from "../../src/config/config.js";
import { loadSettings } from "../../src/config/settings.js";
import type { Keys } from "../../src/core/keys.js";
import { createGateway } from "../../src/gateway/gateway.js";
import {
  createDeliveryRecorder,
  createWebhookReceiver,
  signDelivery,
  type DeliveryResult,
  type WebhookReceiver,
  webhookRoutes,
} from "../../src/gateway/webhook-receiver.js";
import { countedRedis } from "../helpers/commands.js";
import { redisTest } from "../helpers/fixture.js";
import { groupSettingsUpdated, joinedByInviteLink } from "../helpers/meta-webhooks.js";
import { capturingLogger, type LogLine } from "../helpers/rotator.js";
import { testRedisUrl } from "../helpers/redis.js";

const it = redisTest();
const APP_SECRET = "receiver-test-app-secret";
const VERIFY_TOKEN = "receiver-test-verify-token";

let redis: Redis;
let prefix: string;
let keys: Keys;
let results: DeliveryResult[];
let logs: LogLine[];
let receiver: WebhookReceiver;

it.beforeEach(({ rig }) => {
  redis = rig.redis;
  ({ prefix, keys } = rig.prefix("webhook-receiver"));
  results = [];
  logs = [];
  receiver = createWebhookReceiver({
    appSecret: APP_SECRET,
    verifyToken: VERIFY_TOKEN,
    record: createDeliveryRecorder(redis, keys),
    logger: capturingLogger(logs),
    maxBodyBytes: 4096,
    onResult: (r) => results.push(r),
  });
});

const post = (body: string, signature: string | undefined) =>
  receiver.handle({ method: "POST", query: new URLSearchParams(), signature, body: Buffer.from(body) });

const recorded = async () => (await redis.xrange(keys.webhookStream, "-", "+")).map(([, f]) => f[1]);

describe("verification handshake", () => {
  it("echoes hub.challenge for the right verify token", async () => {
    const query = new URLSearchParams({
      "hub.mode": "subscribe",
      "hub.verify_token": VERIFY_TOKEN,
      "hub.challenge": "1158201444",
    });
    const response = await receiver.handle({ method: "GET", query, signature: undefined });
    expect(response.status).toBe(200);
    expect(response.body).toBe("1158201444");
  });

  it("answers 403 for a wrong or missing token, or without a configured one", async () => {
    const wrong = new URLSearchParams({
      "hub.mode": "subscribe",
      "hub.verify_token": "nope",
      "hub.challenge": "1",
    });
    expect((await receiver.handle({ method: "GET", query: wrong, signature: undefined })).status).toBe(403);
    const missing = new URLSearchParams({ "hub.mode": "subscribe", "hub.challenge": "1" });
    expect((await receiver.handle({ method: "GET", query: missing, signature: undefined })).status).toBe(403);
    const unconfigured = createWebhookReceiver({
      appSecret: APP_SECRET,
      verifyToken: undefined,
      record: () => Promise.reject(new Error("unused")),
      logger: capturingLogger([]),
    });
    const right = new URLSearchParams({
      "hub.mode": "subscribe",
      "hub.verify_token": "",
      "hub.challenge": "1",
    });
    expect((await unconfigured.handle({ method: "GET", query: right, signature: undefined })).status).toBe(
      403,
    );
  });
});

describe("deliveries", () => {
  const body = JSON.stringify(joinedByInviteLink("G-RECV-1", "16505551234", 1739321024));

  it("records a delivery with a good signature, raw, and answers 200", async () => {
    const response = await post(body, signDelivery(body, APP_SECRET));
    expect(response.status).toBe(200);
    expect(await recorded()).toEqual([body]);
    expect(results).toEqual(["accepted"]);
  });

  it("answers 401 and records nothing for a bad, missing or other-secret signature", async () => {
    const bad = signDelivery(body, APP_SECRET).replace(/.$/, (c) => (c === "0" ? "1" : "0"));
    for (const signature of [bad, undefined, signDelivery(body, "another-secret"), "sha1=abc", "sha256=zz"]) {
      expect((await post(body, signature)).status).toBe(401);
    }
    // The body re-serialised (same JSON, other bytes) no longer matches: the raw body is what is signed.
    const pretty = JSON.stringify(JSON.parse(body), null, 2);
    expect((await post(pretty, signDelivery(body, APP_SECRET))).status).toBe(401);
    expect(await recorded()).toEqual([]);
    expect(results.every((r) => r === "rejected")).toBe(true);
    expect(JSON.stringify(logs)).not.toContain(APP_SECRET);
  });

  it("refuses every delivery when no app secret is configured", async () => {
    const open = createWebhookReceiver({
      appSecret: undefined,
      verifyToken: VERIFY_TOKEN,
      record: createDeliveryRecorder(redis, keys),
      logger: capturingLogger([]),
    });
    const response = await open.handle({
      method: "POST",
      query: new URLSearchParams(),
      signature: signDelivery(body, ""),
      body: Buffer.from(body),
    });
    expect(response.status).toBe(401);
    expect(await recorded()).toEqual([]);
  });

  it("records a redelivery of the same body once", async () => {
    const signature = signDelivery(body, APP_SECRET);
    expect((await post(body, signature)).status).toBe(200);
    expect((await post(body, signature)).status).toBe(200);
    expect(await recorded()).toEqual([body]);
    expect(results).toEqual(["accepted", "duplicate"]);
  });

  it("sends the recording script's text once per connection, then only its SHA1 (EVALSHA)", async ({
    rig,
  }) => {
    const { counted, sent } = await countedRedis(rig.defer);
    const record = createDeliveryRecorder(counted, keys);
    const bodies = ["a", "b", "a"].map((n) => JSON.stringify({ entry: [], n }));
    const outcomes = [];
    for (const text of bodies) outcomes.push(await record(Buffer.from(text)));
    expect(outcomes).toEqual(["accepted", "accepted", "duplicate"]);
    // A command's name and first argument are set as it is written to the socket: the script's
    // text goes with the first call only.
    expect(sent.map((c) => c.name)).toEqual(["eval", "evalsha", "evalsha"]);
    expect(sent.slice(1).every((c) => /^[0-9a-f]{40}$/.test(String(c.args[0])))).toBe(true);
    expect(await recorded()).toEqual(bodies.slice(0, 2));
  });

  it("answers 400 for a signed body that is not a delivery, and records nothing", async () => {
    for (const text of ["{not json", "[1,2]", '{"object":"whatsapp_business_account"}']) {
      const response = await post(text, signDelivery(text, APP_SECRET));
      expect(response.status).toBe(400);
    }
    expect(await recorded()).toEqual([]);
    expect(results).toEqual(["malformed", "malformed", "malformed"]);
  });

  it("accepts a field it does not read (the consumer ignores it)", async () => {
    const other = JSON.stringify(groupSettingsUpdated("G-RECV-1", 1739321024));
    expect((await post(other, signDelivery(other, APP_SECRET))).status).toBe(200);
  });

  it("answers 503 (Meta redelivers) when Redis cannot record", async () => {
    const failing = createWebhookReceiver({
      appSecret: APP_SECRET,
      verifyToken: VERIFY_TOKEN,
      record: () => Promise.reject(new Error("redis down")),
      logger: capturingLogger([]),
    });
    const response = await failing.handle({
      method: "POST",
      query: new URLSearchParams(),
      signature: signDelivery(body, APP_SECRET),
      body: Buffer.from(body),
    });
    expect(response.status).toBe(503);
  });
});

describe("over HTTP", () => {
  let server: Server;
  let port: number;

  beforeEach(async () => {
    server = createServer((req, res) => void receiver.serve(req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const send = (body: string, headers: Record<string, string>) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request(
        { port, host: "127.0.0.1", method: "POST", path: "/webhooks/whatsapp", headers },
        (res) => {
          let text = "";
          res.on("data", (c: Buffer) => (text += c.toString()));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.on("error", reject);
      req.end(body);
    });

  it("reads the raw body and checks its signature", async () => {
    const body = JSON.stringify(joinedByInviteLink("G-RECV-2", "16505551234", 1739321024));
    const ok = await send(body, {
      "content-type": "application/json",
      "x-hub-signature-256": signDelivery(body, APP_SECRET),
    });
    expect(ok.status).toBe(200);
    expect(await recorded()).toEqual([body]);
  });

  it("answers 413 for a body over the limit without recording it", async () => {
    const body = JSON.stringify({ object: "whatsapp_business_account", entry: [], pad: "x".repeat(5000) });
    const res = await send(body, { "x-hub-signature-256": signDelivery(body, APP_SECRET) });
    expect(res.status).toBe(413);
    expect(await recorded()).toEqual([]);
    expect(results).toEqual(["too_large"]);
  });
});

describe("mounted on the gateway", () => {
  it("answers the handshake and records signed deliveries at /webhooks/whatsapp, counted in /metrics", async () => {
    const gateway = createGateway({
      settings: loadSettings({
        REDIS_URL: testRedisUrl(),
        ROTATOR_PREFIX: prefix,
        GATEWAY_HOST: "127.0.0.1",
        WHATSAPP_APP_SECRET: APP_SECRET,
        WHATSAPP_VERIFY_TOKEN: VERIFY_TOKEN,
      }),
      config: parseConfigText(
        'policies:\n  - name: p\n    schedule: "0 3 * * *"\n    groups: [G1]\n',
        "t.yaml",
        {},
        {
          graphApiVersion: "v23.0",
        },
      ),
      logger: capturingLogger([]),
      extraRoutes: webhookRoutes,
      port: 0,
    });
    await gateway.start();
    try {
      const base = `${gateway.server()!.url}/webhooks/whatsapp`;
      const hello = await fetch(
        `${base}?hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=abc123`,
      );
      expect(hello.status).toBe(200);
      expect(await hello.text()).toBe("abc123");
      const body = JSON.stringify(joinedByInviteLink("G1", "16505551234", 1739321024));
      const ok = await fetch(base, {
        method: "POST",
        body,
        headers: {
          "content-type": "application/json",
          "x-hub-signature-256": signDelivery(body, APP_SECRET),
        },
      });
      expect(ok.status).toBe(200);
      const bad = await fetch(base, {
        method: "POST",
        body,
        headers: { "x-hub-signature-256": "sha256=00" },
      });
      expect(bad.status).toBe(401);
      expect(await recorded()).toEqual([body]);
      const metrics = await (await fetch(`${gateway.server()!.url}/metrics`)).text();
      expect(metrics).toMatch(/wa_rotator_webhook_deliveries_total\{result="accepted"\} 1/);
      expect(metrics).toMatch(/wa_rotator_webhook_deliveries_total\{result="rejected"\} 1/);
    } finally {
      await gateway.stop();
    }
  });
});
