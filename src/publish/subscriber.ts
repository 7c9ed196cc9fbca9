import { Redis, type RedisOptions } from "ioredis";
import { toError } from "../core/errors.js";
import type { RotationMessage } from "../core/interfaces.js";
import { channelKeys, DEFAULT_CHANNEL } from "../core/keys.js";
import { parseMessage, verifySignature } from "./message.js";

/** Why a message reached `onMessage`: a live PUBLISH, or a catch-up read of `C:latest`. */
export type DeliverySource = "publish" | "resync";

/** Options of {@link subscribe}. */
export interface SubscribeOptions {
  /**
   * Where to connect: an ioredis client (it is duplicated for the subscription and used as is for
   * the `C:latest` reads, so it must not be in subscriber mode; it is never closed), ioredis
   * options, or a `redis://` / `rediss://` URL.
   */
  redis: Redis | RedisOptions | string;
  /** The channel `C` a policy publishes on. Default `whatsapp:invite-links`. */
  channel?: string;
  /**
   * The `ROTATOR_SIGNING_SECRET`. When given, a message with a missing or wrong signature goes to
   * `onInvalid` and is not delivered.
   */
  secret?: string;
  /**
   * Called once per new message of a group, in order; awaited before the next delivery. Never called
   * twice for one group's sequence, nor with a sequence older than one already delivered.
   */
  onMessage: (msg: RotationMessage, meta: { source: DeliverySource }) => void | Promise<void>;
  /** A message that is not valid JSON, not the contract's shape, or badly signed. */
  onInvalid?: (error: Error, raw: string) => void;
  /**
   * Connection errors, failed `C:latest` reads (retried) and errors thrown by `onMessage`. Without
   * it, the last two are printed with console.warn and connection errors are ignored (the client
   * reconnects by itself).
   */
  onError?: (error: Error) => void;
  /**
   * On connect and on every reconnect, read `C:latest` and deliver each group's newest message not
   * yet delivered, so nothing published while away is missed. Default true.
   */
  resync?: boolean;
}

/** A live subscription. */
export interface Subscription {
  /** The highest sequence delivered per group so far. */
  readonly delivered: ReadonlyMap<string, number>;
  /** Unsubscribes and closes the connections it opened; resolves after the last delivery ends. */
  close(): Promise<void>;
}

const RESYNC_RETRY_MS = 1_000;

/**
 * Subscribes to a channel's published invite links.
 *
 * It subscribes on a dedicated connection first and only then reads `C:latest` (on connect and on
 * every reconnect), so a link published in between is never missed. Each message is validated
 * against the schema, its signature verified when a `secret` is given, and delivered only when its
 * `sequence` is newer than the last one delivered for its group: duplicates and stale messages are
 * dropped silently.
 *
 * @example
 * ```ts
 * const sub = await subscribe({
 *   redis: "redis://127.0.0.1:6379",
 *   secret: process.env.ROTATOR_SIGNING_SECRET,
 *   onMessage: (msg) => console.log(msg.group_id, msg.invite_link),
 * });
 * // later
 * await sub.close();
 * ```
 */
export async function subscribe(options: SubscribeOptions): Promise<Subscription> {
  const channel = options.channel ?? DEFAULT_CHANNEL;
  const { latest } = channelKeys(channel);
  const resync = options.resync ?? true;
  const delivered = new Map<string, number>();
  const report =
    options.onError ?? ((error: Error) => console.warn(`[wa-invite-rotator subscribe] ${error.message}`));
  const { sub, reader, ownsReader } = openConnections(options.redis);
  sub.on("error", (error: Error) => options.onError?.(error));
  if (ownsReader) reader.on("error", (error: Error) => options.onError?.(error));

  let closed = false;
  let queue: Promise<void> = Promise.resolve();
  let retryTimer: NodeJS.Timeout | undefined;
  // Deliveries run one at a time, in arrival order, so the per-group check sees every earlier one.
  const enqueue = (task: () => Promise<void>) => {
    queue = queue.then(task).catch((error: unknown) => report(toError(error)));
  };

  const handle = async (raw: string, source: DeliverySource) => {
    if (closed) return;
    let msg: RotationMessage;
    try {
      msg = parseMessage(raw);
      if (options.secret !== undefined && !verifySignature(msg, options.secret)) {
        throw new Error(
          `rotation message ${msg.rotation_id} has a ${msg.signature ? "wrong" : "missing"} signature`,
        );
      }
    } catch (error) {
      options.onInvalid?.(toError(error), raw);
      return;
    }
    if (msg.sequence <= (delivered.get(msg.group_id) ?? 0)) return;
    delivered.set(msg.group_id, msg.sequence);
    await options.onMessage(msg, { source });
  };

  const readLatest = async () => {
    if (closed) return;
    let entries: Record<string, string>;
    try {
      entries = await reader.hgetall(latest);
    } catch (error) {
      report(toError(error));
      if (!closed) retryTimer = setTimeout(() => enqueue(readLatest), RESYNC_RETRY_MS).unref();
      return;
    }
    for (const raw of Object.values(entries)) await handle(raw, "resync");
  };

  sub.on("message", (from: string, raw: string) => {
    if (from === channel) enqueue(() => handle(raw, "publish"));
  });

  // autoResubscribe is off: on every (re)connect we SUBSCRIBE ourselves and wait for the reply,
  // so the C:latest read that follows cannot miss a message published in between.
  const onReady = async () => {
    await sub.subscribe(channel);
    if (resync) enqueue(readLatest);
  };
  const first = new Promise<void>((resolve, reject) => {
    let connected = false;
    const fail = () => reject(new Error(`could not subscribe to ${channel}: connection closed`));
    sub.once("end", fail);
    sub.on("ready", () => {
      const wasConnected = connected;
      connected = true;
      onReady().then(
        () => {
          sub.off("end", fail);
          resolve();
        },
        (error: unknown) => (wasConnected ? report(toError(error)) : reject(toError(error))),
      );
    });
  });
  try {
    await first;
    await queue;
  } catch (error) {
    closed = true;
    await shut(sub);
    if (ownsReader) await shut(reader);
    throw error;
  }

  let closing: Promise<void> | undefined;
  return {
    delivered,
    close: () =>
      (closing ??= (async () => {
        closed = true;
        clearTimeout(retryTimer);
        await shut(sub);
        if (ownsReader) await shut(reader);
        await queue;
      })()),
  };
}

function openConnections(target: Redis | RedisOptions | string): {
  sub: Redis;
  reader: Redis;
  ownsReader: boolean;
} {
  const subOverrides: RedisOptions = { autoResubscribe: false, lazyConnect: false };
  if (isClient(target)) return { sub: target.duplicate(subOverrides), reader: target, ownsReader: false };
  const sub =
    typeof target === "string" ? new Redis(target, subOverrides) : new Redis({ ...target, ...subOverrides });
  return { sub, reader: sub.duplicate({ autoResubscribe: true }), ownsReader: true };
}

// Duck-typed, so a client from another copy of ioredis works too.
function isClient(target: Redis | RedisOptions | string): target is Redis {
  return typeof target === "object" && typeof (target as Partial<Redis>).duplicate === "function";
}

// QUIT politely when connected; a connection that is down or reconnecting is just dropped.
async function shut(client: Redis): Promise<void> {
  if (client.status !== "ready") return client.disconnect();
  await client.quit().catch(() => client.disconnect());
}
