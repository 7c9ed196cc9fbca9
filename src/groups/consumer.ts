import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { RedisClient } from "../infra/redis.js";
import type { Keys } from "../core/keys.js";
import type { Logger } from "../infra/logger.js";
import { readDelivery, type GroupEvent } from "./events.js";
import type { AppliedEvent, GroupStateStore } from "./state.js";

/**
 * The worker side of WhatsApp webhooks: reads the deliveries the gateway recorded in
 * `keys.webhookStream` through the consumer group `keys.webhookConsumerGroup`, applies each group
 * event to the group's state (`state.ts`), calls `onJoined` after a join (the `rotate_after_joins`
 * policy), then acknowledges and deletes the entry. An entry is acknowledged only once all of it
 * is applied: one that failed (Redis went away) stays pending and is applied again, which is safe
 * because applying is idempotent. Entries a dead consumer left pending are claimed after
 * `claimIdleMs`. Several worker processes share the stream; each entry goes to one of them.
 */
export interface GroupEventsConsumerOptions {
  /** Commands; the consumer opens one more connection (a duplicate) for its blocking reads. */
  readonly redis: RedisClient;
  readonly keys: Keys;
  readonly store: GroupStateStore;
  readonly logger: Logger;
  /** After a join event was applied (also a repeated one: the hook must be idempotent). */
  readonly onJoined?: (event: GroupEvent & { kind: "joined" }, applied: AppliedEvent) => Promise<void>;
  /** For metrics: each event applied (`changed` false: a duplicate or an older event). */
  readonly onEvent?: (kind: GroupEvent["kind"], changed: boolean) => void;
  /** For metrics: entries that could not be read, group entries ignored or invalid. */
  readonly onSkipped?: (reason: "unreadable" | "ignored" | "invalid", count: number) => void;
  /** Consumer name within the group; default host:pid:random. */
  readonly consumerName?: string;
  /** How long one read blocks waiting for entries. Default 2 s. */
  readonly blockMs?: number;
  /** Pending entries idle this long belong to a dead consumer and are claimed. Default 60 s. */
  readonly claimIdleMs?: number;
  /** Pause after a failure before trying again. Default 1 s. */
  readonly retryDelayMs?: number;
}

export interface GroupEventsConsumer {
  /** Creates the consumer group if needed and starts the loop. Idempotent. */
  start(): Promise<void>;
  /** Stops the loop after the entry in hand. Idempotent. */
  stop(): Promise<void>;
  /** Applies every entry in the stream now (tests, one-shot tools); returns how many. */
  drain(): Promise<number>;
}

type StreamEntry = [id: string, fields: string[]];
const BATCH = 100;

export function createGroupEventsConsumer(options: GroupEventsConsumerOptions): GroupEventsConsumer {
  const { redis, keys, store } = options;
  const log = options.logger.child({ component: "group-events" });
  const name = options.consumerName ?? `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
  const group = keys.webhookConsumerGroup;
  const stream = keys.webhookStream;
  const blockMs = options.blockMs ?? 2_000;
  const claimIdleMs = options.claimIdleMs ?? 60_000;
  const retryDelayMs = options.retryDelayMs ?? 1_000;
  let reader: RedisClient | undefined;
  let loop: Promise<void> | undefined;
  let starting: Promise<void> | undefined;
  let stopped = false;

  const ensureGroup = async () => {
    try {
      // From the beginning: deliveries recorded before any consumer existed are applied too.
      await redis.xgroup("CREATE", stream, group, "0", "MKSTREAM");
    } catch (error) {
      if (!(error instanceof Error) || !error.message.includes("BUSYGROUP")) throw error;
    }
  };

  const handle = async ([id, fields]: StreamEntry): Promise<void> => {
    const field = (key: string) => {
      const i = fields.indexOf(key);
      return i >= 0 && i % 2 === 0 ? fields[i + 1] : undefined;
    };
    const receivedAt = Number(field("received_at")) || Date.now();
    let body: unknown;
    try {
      body = JSON.parse(field("body") ?? "");
    } catch {
      // The gateway records verified JSON only; an entry that is not cannot be fixed by a retry.
      log.error({ entry: id }, "webhook delivery in the stream is not JSON; dropped");
      options.onSkipped?.("unreadable", 1);
      await acknowledge(id);
      return;
    }
    const read = readDelivery(body, receivedAt);
    if (read.ignored > 0) options.onSkipped?.("ignored", read.ignored);
    if (read.invalid > 0) {
      options.onSkipped?.("invalid", read.invalid);
      log.warn(
        { entry: id, invalid: read.invalid },
        "webhook delivery names a group entry without a usable group or participant",
      );
    }
    for (const event of read.events) {
      const applied = await store.apply(event);
      options.onEvent?.(event.kind, applied.changed > 0);
      if (applied.changed > 0) {
        log.info(
          {
            group: event.groupId,
            event: event.kind,
            participants: applied.participants,
            joins: applied.joins,
          },
          `group ${event.kind.replace("_", " ")}`,
        );
      }
      if (event.kind === "joined") await options.onJoined?.(event, applied);
    }
    await acknowledge(id);
  };

  const acknowledge = async (id: string) => {
    await redis.multi().xack(stream, group, id).xdel(stream, id).exec();
  };

  /** Reads one batch: this consumer's own pending entries first (after a failure), then new ones. */
  const readBatch = async (conn: RedisClient, from: "0" | ">", block: boolean): Promise<StreamEntry[]> => {
    const args: (string | number)[] = ["GROUP", group, name, "COUNT", BATCH];
    if (block) args.push("BLOCK", blockMs);
    const reply = (await conn.call("XREADGROUP", ...args, "STREAMS", stream, from)) as
      [string, StreamEntry[]][] | null;
    return (reply?.[0]?.[1] ?? []).filter((entry) => entry[1] !== null);
  };

  const claimAbandoned = async (): Promise<StreamEntry[]> => {
    const reply = (await redis.call(
      "XAUTOCLAIM",
      stream,
      group,
      name,
      claimIdleMs,
      "0-0",
      "COUNT",
      BATCH,
    )) as [string, StreamEntry[]];
    return (reply?.[1] ?? []).filter((entry) => entry[1] !== null);
  };

  /** One pass: abandoned and own pending entries, then new ones; returns how many were applied. */
  const pass = async (conn: RedisClient, block: boolean): Promise<number> => {
    let done = 0;
    // Claimed entries become this consumer's own pending ones: each is handled once per pass.
    const seen = new Set<string>();
    for (const entries of [await claimAbandoned(), await readBatch(conn, "0", false)]) {
      for (const entry of entries) {
        if (seen.has(entry[0])) continue;
        seen.add(entry[0]);
        await handle(entry);
        done++;
      }
    }
    if (done > 0) return done;
    for (const entry of await readBatch(conn, ">", block)) {
      if (stopped && block) break;
      await handle(entry);
      done++;
    }
    return done;
  };

  const run = async (conn: RedisClient) => {
    while (!stopped) {
      try {
        await pass(conn, true);
      } catch (error) {
        if (stopped) break;
        log.error({ err: error }, "applying webhook deliveries failed; trying again");
        await new Promise((resolve) => setTimeout(resolve, retryDelayMs));
      }
    }
  };

  return {
    start: () =>
      (starting ??= (async () => {
        await ensureGroup();
        if (stopped) return;
        reader = redis.duplicate();
        // Its failures reach the loop through the blocked read (retried); without a listener, each
        // reconnect attempt during an outage would also print ioredis's "Unhandled error event".
        reader.on("error", () => undefined);
        loop = run(reader);
        log.info({ consumer: name }, "applying webhook deliveries");
      })()),
    stop: async () => {
      stopped = true;
      await starting?.catch(() => undefined);
      // Ends a blocking read at once; an entry in hand finishes on the command connection.
      reader?.disconnect();
      await loop;
    },
    drain: async () => {
      await ensureGroup();
      let total = 0;
      for (;;) {
        const done = await pass(redis, false);
        if (done === 0) return total;
        total += done;
      }
    },
  };
}
