import { Cluster, Redis, type RedisOptions } from "ioredis";
import { toError } from "../core/errors.js";
import type { RotationMessage } from "../core/interfaces.js";
import { channelKeys, DEFAULT_CHANNEL } from "../core/keys.js";
import { decodeMessage, MessageError, verifySignature } from "./message.js";

/** Why a message reached `onMessage`: a live PUBLISH, or a catch-up read of `C:latest`. */
export type DeliverySource = "publish" | "resync";

/** Messages longer than this (in UTF-8 bytes) are rejected unread, by default. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024;

/** Options of {@link subscribe}. */
export interface SubscribeOptions {
  /**
   * Where to connect: an ioredis client (it is duplicated for the subscription and used as is for
   * the `C:latest` reads, so it must not be in subscriber mode; it is never closed), ioredis
   * options, or a `redis://` / `rediss://` URL. On a Redis Cluster, pass an ioredis `Cluster`:
   * `C:latest` is read from the node serving its slot, and PUBLISH reaches every node.
   */
  redis: Redis | Cluster | RedisOptions | string;
  /** The channel `C` a policy publishes on. Default `whatsapp:invite-links`. */
  channel?: string;
  /**
   * The `ROTATOR_SIGNING_SECRET`. When given, only messages with a valid `v2=` signature for this
   * channel are delivered (`v1=` too with `acceptV1`); the rest go to `onInvalid`. Without it,
   * messages are trusted as they come, except that a sequence jump must be confirmed by
   * `C:latest` (see the README's Security section).
   */
  secret?: string;
  /** Also accept `v1=` signatures (earlier versions' ambiguous form), to read old entries. Default false. */
  acceptV1?: boolean;
  /** Messages longer than this many UTF-8 bytes go to `onInvalid` unparsed. Default 64 KiB. */
  maxMessageBytes?: number;
  /**
   * Called for each new message of a group, in order; awaited before the next delivery. Never
   * called with a sequence older than one it returned from for that group. At least once: if it
   * throws, the group's message is delivered again (on the next message, at a resync or reconnect,
   * and on a timer) until it returns or a newer message of the group replaces it.
   */
  onMessage: (msg: RotationMessage, meta: { source: DeliverySource }) => void | Promise<void>;
  /**
   * A message that is too large, not valid JSON, not the contract's shape, badly signed, or (in
   * unsigned mode) a sequence jump `C:latest` does not confirm. Without it, these are reported
   * through `onError`.
   */
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
  /** The highest sequence per group whose `onMessage` returned. */
  readonly delivered: ReadonlyMap<string, number>;
  /** Unsubscribes and closes the connections it opened; resolves after the last delivery ends. */
  close(): Promise<void>;
}

const RESYNC_RETRY_MS = 1_000;
const REDELIVER_MIN_MS = 1_000;
const REDELIVER_MAX_MS = 30_000;

interface Candidate {
  readonly msg: RotationMessage;
  readonly source: DeliverySource;
}

/**
 * Subscribes to a channel's published invite links.
 *
 * It subscribes on a dedicated connection first and only then reads `C:latest` (on connect and on
 * every reconnect), so a link published in between is never missed. Each message is size-checked,
 * validated against the schema, its signature verified when a `secret` is given, and delivered only
 * when its `sequence` is newer than the last one delivered for its group: duplicates and stale
 * messages are dropped silently. A handler that throws gets the message again until it returns.
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
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const delivered = new Map<string, number>();
  // Per group, the newest message whose handler threw: delivered again until the handler returns.
  const pending = new Map<string, Candidate>();
  const report =
    options.onError ?? ((error: Error) => console.warn(`[wa-invite-rotator subscribe] ${error.message}`));
  const invalid = (error: Error, raw: string) =>
    options.onInvalid ? options.onInvalid(error, raw) : report(error);
  const { sub, reader, ownsReader } = openConnections(options.redis);
  sub.on("error", (error: Error) => options.onError?.(error));
  if (ownsReader) reader.on("error", (error: Error) => options.onError?.(error));

  let closed = false;
  let queue: Promise<void> = Promise.resolve();
  let retryTimer: NodeJS.Timeout | undefined;
  let redeliverTimer: NodeJS.Timeout | undefined;
  let redeliverDelay = REDELIVER_MIN_MS;
  // Deliveries run one at a time, in arrival order, so the per-group check sees every earlier one.
  const enqueue = (task: () => Promise<void>) => {
    queue = queue.then(task).catch((error: unknown) => report(toError(error)));
  };

  /** The message of a text, or undefined after reporting why it is not one. */
  const decode = (raw: string): RotationMessage | undefined => {
    try {
      if (raw.length > maxBytes || Buffer.byteLength(raw, "utf8") > maxBytes) {
        throw new MessageError(
          `rotation message of ${Buffer.byteLength(raw, "utf8")} bytes exceeds the limit of ${maxBytes} bytes`,
        );
      }
      const { message, fields } = decodeMessage(raw);
      if (
        options.secret !== undefined &&
        !verifySignature(fields, options.secret, { channel, acceptV1: options.acceptV1 === true })
      ) {
        throw new MessageError(
          `rotation message ${message.rotation_id} has a ${message.signature ? "wrong" : "missing"} signature`,
        );
      }
      return message;
    } catch (error) {
      invalid(toError(error), raw);
      return undefined;
    }
  };

  /** Calls the handler unless the group has this sequence already; true when it was called. */
  const deliver = async ({ msg, source }: Candidate): Promise<boolean> => {
    if (closed || msg.sequence <= (delivered.get(msg.group_id) ?? 0)) return false;
    try {
      await options.onMessage(msg, { source });
    } catch (error) {
      const held = pending.get(msg.group_id);
      if (!held || held.msg.sequence <= msg.sequence) pending.set(msg.group_id, { msg, source });
      report(toError(error));
      scheduleRedelivery();
      return true;
    }
    delivered.set(msg.group_id, msg.sequence);
    const held = pending.get(msg.group_id);
    if (held && held.msg.sequence <= msg.sequence) pending.delete(msg.group_id);
    if (pending.size === 0) redeliverDelay = REDELIVER_MIN_MS;
    return true;
  };

  /** Delivers the held messages again, except those of groups just tried in the same round. */
  const redeliverPending = async (tried: ReadonlySet<string> = new Set()) => {
    for (const candidate of [...pending.values()]) {
      if (closed) return;
      if (tried.has(candidate.msg.group_id)) continue;
      if (candidate.msg.sequence <= (delivered.get(candidate.msg.group_id) ?? 0)) {
        pending.delete(candidate.msg.group_id);
        continue;
      }
      await deliver(candidate);
    }
  };

  function scheduleRedelivery() {
    if (closed || redeliverTimer !== undefined) return;
    redeliverTimer = setTimeout(() => {
      redeliverTimer = undefined;
      enqueue(() => redeliverPending());
    }, redeliverDelay).unref();
    redeliverDelay = Math.min(redeliverDelay * 2, REDELIVER_MAX_MS);
  }

  /**
   * Unsigned, anyone who can PUBLISH on the channel could announce any sequence, and one absurd
   * sequence would hide every later message of the group. So a live message that is not the next
   * one of its group is delivered only if `C:latest` holds it; otherwise `C:latest` decides.
   */
  const confirmJump = async (msg: RotationMessage, raw: string): Promise<Candidate | undefined> => {
    let stored: string | null;
    try {
      stored = await reader.hget(latest, msg.group_id);
    } catch (error) {
      report(toError(error));
      enqueue(readLatest); // cannot check now: a resync (retried) delivers what C:latest holds
      return undefined;
    }
    const current = stored === null ? undefined : decode(stored);
    if (current && current.rotation_id === msg.rotation_id && current.sequence === msg.sequence) {
      return { msg, source: "publish" };
    }
    invalid(
      new MessageError(
        `rotation message ${msg.rotation_id} jumps group ${msg.group_id} to sequence ${msg.sequence}, ` +
          `which ${channel}:latest does not confirm (it has ${current ? current.sequence : "none"})`,
      ),
      raw,
    );
    return current ? { msg: current, source: "resync" } : undefined;
  };

  /** Handles one text; returns the group whose handler it called, if any. */
  const handle = async (raw: string, source: DeliverySource): Promise<string | undefined> => {
    if (closed) return undefined;
    const msg = decode(raw);
    if (!msg) return undefined;
    const last = delivered.get(msg.group_id) ?? 0;
    if (msg.sequence <= last) return undefined;
    let candidate: Candidate | undefined = { msg, source };
    if (source === "publish" && options.secret === undefined && msg.sequence !== last + 1) {
      candidate = await confirmJump(msg, raw);
    }
    return candidate && (await deliver(candidate)) ? candidate.msg.group_id : undefined;
  };

  const handleLive = async (raw: string) => {
    const tried = await handle(raw, "publish");
    await redeliverPending(new Set(tried === undefined ? [] : [tried]));
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
    const tried = new Set<string>();
    for (const raw of Object.values(entries)) {
      const group = await handle(raw, "resync");
      if (group !== undefined) tried.add(group);
    }
    await redeliverPending(tried);
  };

  sub.on("message", (from: string, raw: string) => {
    if (from === channel) enqueue(() => handleLive(raw));
  });

  // autoResubscribe is off: on every (re)connect we SUBSCRIBE ourselves and wait for the reply,
  // so the C:latest read that follows cannot miss a message published in between.
  const onReady = async () => {
    await sub.subscribe(channel);
    enqueue(resync ? readLatest : () => redeliverPending());
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
        clearTimeout(redeliverTimer);
        await shut(sub);
        if (ownsReader) await shut(reader);
        await queue;
      })()),
  };
}

type Client = Redis | Cluster;

function openConnections(target: Client | RedisOptions | string): {
  sub: Client;
  reader: Client;
  ownsReader: boolean;
} {
  const subOverrides: RedisOptions = { autoResubscribe: false, lazyConnect: false };
  if (target instanceof Cluster) return { sub: target.duplicate(), reader: target, ownsReader: false };
  if (isClient(target)) return { sub: target.duplicate(subOverrides), reader: target, ownsReader: false };
  const sub =
    typeof target === "string" ? new Redis(target, subOverrides) : new Redis({ ...target, ...subOverrides });
  return { sub, reader: sub.duplicate({ autoResubscribe: true }), ownsReader: true };
}

// Duck-typed, so a client from another copy of ioredis works too.
function isClient(target: Client | RedisOptions | string): target is Redis {
  return typeof target === "object" && typeof (target as Partial<Redis>).duplicate === "function";
}

// QUIT politely when connected; a connection that is down or reconnecting is just dropped.
async function shut(client: Client): Promise<void> {
  if (client.status !== "ready") return client.disconnect();
  await client.quit().catch(() => client.disconnect());
}
