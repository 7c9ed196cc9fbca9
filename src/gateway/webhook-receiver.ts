import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Counter } from "prom-client";
import type { RedisClient } from "../infra/redis.js";
import type { Keys } from "../core/keys.js";
import type { Logger } from "../infra/logger.js";
import { METRIC_PREFIX } from "../infra/metrics.js";
import { luaScript } from "../infra/scripts.js";
import type { GatewayContext } from "./gateway.js";
import { BodyTooLargeError, readBody, sendText, type GatewayRoute } from "./server.js";

/**
 * The WhatsApp webhook endpoint (`/webhooks/whatsapp`) of the gateway.
 *
 * GET answers Meta's verification handshake. POST checks `X-Hub-Signature-256` (HMAC-SHA256 of the
 * raw body with the app secret, compared in constant time) before it parses anything, then records
 * the raw body in a Redis stream and answers 200 at once; the worker's consumer (`src/groups/`)
 * applies it later, so nothing is lost while no consumer runs. A body already recorded (Meta
 * redelivers a delivery it saw no 200 for) is answered 200 and not recorded again. A bad signature
 * is answered 401 and records nothing.
 */
export const WEBHOOK_PATH = "/webhooks/whatsapp";

/** Largest body read (Meta's group deliveries are a few KB); a larger one is answered 413. */
export const DEFAULT_MAX_BODY_BYTES = 256 * 1024;

/** How long a recorded delivery's digest is remembered to recognise its redelivery. */
export const DELIVERY_SEEN_TTL_MS = 7 * 24 * 3600 * 1000;

/** How one webhook request ended (the `result` label of the deliveries metric). */
export type DeliveryResult =
  "accepted" | "duplicate" | "rejected" | "malformed" | "too_large" | "error" | "verified" | "verify_refused";

/** A webhook request, as the pure handler sees it. */
export interface WebhookRequest {
  readonly method: string;
  readonly query: URLSearchParams;
  readonly signature: string | undefined;
  /** The raw body, exactly as received (POST). */
  readonly body?: Buffer;
}

export interface WebhookResponse {
  readonly status: number;
  readonly body: string;
  readonly headers?: Readonly<Record<string, string>>;
}

/** Stores a verified delivery's raw body once; "duplicate" when this exact body was stored before. */
export type RecordDelivery = (body: Buffer) => Promise<"accepted" | "duplicate">;

export interface WebhookReceiverOptions {
  /** WHATSAPP_APP_SECRET. Without it no delivery can be verified: every POST is refused. Never logged. */
  readonly appSecret: string | undefined;
  /** WHATSAPP_VERIFY_TOKEN. Without it every handshake is refused. Never logged. */
  readonly verifyToken: string | undefined;
  readonly record: RecordDelivery;
  readonly logger: Logger;
  readonly maxBodyBytes?: number;
  /** Called once per request, for metrics. */
  readonly onResult?: (result: DeliveryResult) => void;
}

export interface WebhookReceiver {
  /** The pure handler: a request in, a response out. */
  handle(request: WebhookRequest): Promise<WebhookResponse>;
  /** The node:http adapter: reads the body (bounded), calls `handle`, writes the answer. */
  serve(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

export function createWebhookReceiver(options: WebhookReceiverOptions): WebhookReceiver {
  const { logger } = options;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const log = logger.child({ component: "webhook-receiver" });
  const done = (result: DeliveryResult, response: WebhookResponse): WebhookResponse => {
    options.onResult?.(result);
    return response;
  };

  const handle = async (request: WebhookRequest): Promise<WebhookResponse> => {
    if (request.method === "GET") {
      const { query } = request;
      const ok =
        options.verifyToken !== undefined &&
        query.get("hub.mode") === "subscribe" &&
        equalSecret(query.get("hub.verify_token") ?? "", options.verifyToken);
      const challenge = query.get("hub.challenge") ?? "";
      if (!ok) {
        log.warn("webhook verification refused: wrong or missing hub.verify_token");
        return done("verify_refused", { status: 403, body: "forbidden\n" });
      }
      return done("verified", { status: 200, body: challenge });
    }
    if (request.method !== "POST") {
      return done("rejected", { status: 405, body: "method not allowed\n", headers: { allow: "GET, POST" } });
    }
    const body = request.body ?? Buffer.alloc(0);
    // The signature first: nothing of an unauthenticated body is parsed, logged or stored.
    if (!validSignature(body, request.signature, options.appSecret)) {
      log.warn(
        { bytes: body.length, signature: request.signature === undefined ? "missing" : "invalid" },
        options.appSecret === undefined
          ? "webhook delivery refused: WHATSAPP_APP_SECRET is not set"
          : "webhook delivery refused: bad X-Hub-Signature-256",
      );
      return done("rejected", { status: 401, body: "bad signature\n" });
    }
    const problem = malformed(body);
    if (problem) {
      log.warn({ bytes: body.length }, `webhook delivery refused: ${problem}`);
      return done("malformed", { status: 400, body: `${problem}\n` });
    }
    try {
      const result = await options.record(body);
      if (result === "duplicate") log.debug("webhook redelivery: already recorded");
      return done(result, { status: 200, body: "ok\n" });
    } catch (error) {
      // Not a 200: Meta delivers it again later, so nothing is lost.
      log.error({ err: error }, "could not record a webhook delivery; Meta will redeliver it");
      return done("error", { status: 503, body: "try again\n", headers: { "retry-after": "5" } });
    }
  };

  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://gateway.invalid");
    const method = req.method ?? "GET";
    let body: Buffer | undefined;
    if (method === "POST") {
      try {
        body = await readBody(req, maxBodyBytes);
      } catch (error) {
        if (!(error instanceof BodyTooLargeError)) throw error;
        options.onResult?.("too_large");
        log.warn({ maxBodyBytes }, "webhook delivery refused: body too large");
        return sendText(res, 413, "body too large\n", { connection: "close" });
      }
    }
    const header = req.headers["x-hub-signature-256"];
    const response = await handle({
      method: method === "HEAD" ? "GET" : method,
      query: url.searchParams,
      signature: Array.isArray(header) ? header[0] : header,
      ...(body ? { body } : {}),
    });
    sendText(res, response.status, response.body, response.headers);
  };

  return { handle, serve };
}

/** `sha256=` + hex HMAC-SHA256 of the raw body, compared in constant time. */
export function validSignature(
  body: Buffer,
  header: string | undefined,
  secret: string | undefined,
): boolean {
  if (secret === undefined || header === undefined) return false;
  const match = /^sha256=([0-9a-fA-F]{64})$/.exec(header.trim());
  if (!match) return false;
  const expected = createHmac("sha256", secret).update(body).digest();
  return timingSafeEqual(Buffer.from(match[1]!, "hex"), expected);
}

/** The `X-Hub-Signature-256` value Meta sends for `body` (the simulator and tests sign with it). */
export function signDelivery(body: string | Buffer, secret: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** Why a verified body is not a WhatsApp delivery, or undefined when it is one. */
function malformed(body: Buffer): string | undefined {
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch {
    return "the body is not JSON";
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return "the body is not a JSON object";
  const { entry } = value as { entry?: unknown };
  if (!Array.isArray(entry)) return "the body has no entry list";
  return undefined;
}

/** Compares two secrets without leaking, through timing, how much of them matched. */
function equalSecret(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * KEYS: the delivery's seen key, the stream. ARGV: ttl ms, body, received-at ms. Records the body
 * once: the seen key and the stream entry are written together, so a crash cannot leave one alone.
 */
const RECORD = luaScript<number>(
  "rotatorWebhookRecord",
  2,
  `if redis.call("SET", KEYS[1], "1", "NX", "PX", ARGV[1]) == false then return 0 end
redis.call("XADD", KEYS[2], "*", "body", ARGV[2], "received_at", ARGV[3])
return 1`,
);

/**
 * Records verified deliveries in `keys.webhookStream` (no length cap: the consumer deletes what it
 * applied, so only unapplied deliveries stay). A body recorded in the last week is a duplicate.
 */
export function createDeliveryRecorder(
  redis: RedisClient,
  keys: Keys,
  now: () => number = Date.now,
): RecordDelivery {
  return async (body) => {
    const digest = createHash("sha256").update(body).digest("hex");
    const added = await RECORD.run(
      redis,
      [keys.webhookDelivery(digest), keys.webhookStream],
      [String(DELIVERY_SEEN_TTL_MS), body, String(now())],
    );
    return added === 1 ? "accepted" : "duplicate";
  };
}

/**
 * `GET` and `POST /webhooks/whatsapp` on the gateway, recording into the gateway's Redis and
 * counting `wa_rotator_webhook_deliveries_total{result}` (a `DeliveryResult`).
 */
export function webhookRoutes(context: GatewayContext): GatewayRoute[] {
  const deliveries = new Counter({
    name: `${METRIC_PREFIX}webhook_deliveries_total`,
    help: "WhatsApp webhook requests by result (accepted, duplicate, rejected, malformed, too_large, error, verified, verify_refused)",
    labelNames: ["result"] as const,
    registers: [context.metrics.registry],
  });
  const receiver = createWebhookReceiver({
    appSecret: context.settings.WHATSAPP_APP_SECRET,
    verifyToken: context.settings.WHATSAPP_VERIFY_TOKEN,
    record: createDeliveryRecorder(context.redis, context.keys),
    logger: context.logger,
    onResult: (result) => deliveries.inc({ result }),
  });
  if (context.settings.WHATSAPP_APP_SECRET === undefined) {
    context.logger.warn("WHATSAPP_APP_SECRET is not set: every webhook delivery is refused (401)");
  }
  return [
    {
      name: "webhooks",
      methods: ["GET", "POST"],
      match: (path) => path === WEBHOOK_PATH,
      maxBodyBytes: DEFAULT_MAX_BODY_BYTES,
      handle: (req, res) => receiver.serve(req, res),
    },
  ];
}
