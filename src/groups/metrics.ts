import { Counter, Gauge, type Registry } from "prom-client";
import type { RedisClient } from "../infra/redis.js";
import type { Keys } from "../core/keys.js";
import { METRIC_PREFIX } from "../infra/metrics.js";

/**
 * Metrics of WhatsApp's group webhooks on the worker side, on the process registry (each one's
 * help text says what it counts; the README lists them). Deliveries accepted, rejected and
 * duplicate are the gateway's `wa_rotator_webhook_deliveries_total`.
 */
export interface GroupMetrics {
  readonly events: Counter<"event" | "result">;
  readonly skipped: Counter<"reason">;
  readonly joinsRotations: Counter<"policy">;
  readonly participantPolls: Counter<"outcome">;
}

/** Groups with their own participants/joins series, at most. */
export const MAX_GROUP_SERIES = 1_000;

export function createGroupMetrics(options: {
  registry: Registry;
  redis: RedisClient;
  keys: Keys;
  /** The groups listed by id in the live policy file. */
  groups: () => readonly string[];
}): GroupMetrics {
  const { redis, keys } = options;
  const registers = [options.registry];
  const count = (key: string) =>
    async function (this: Gauge) {
      this.set(await redis.scard(key));
    };
  new Gauge({
    name: `${METRIC_PREFIX}groups_suspended`,
    help: "Groups WhatsApp suspended (group_status_update), not yet cleared",
    registers,
    collect: count(keys.suspendedIndex),
  });
  new Gauge({
    name: `${METRIC_PREFIX}groups_deleted`,
    help: "Groups WhatsApp deleted (group_lifecycle_update)",
    registers,
    collect: count(keys.deletedIndex),
  });
  const participants: Gauge<"group"> = new Gauge({
    name: `${METRIC_PREFIX}group_participants`,
    help: "Known participants per group (joins minus leaves seen through webhooks, or the gateway's poll)",
    labelNames: ["group"] as const,
    registers,
    async collect() {
      const groups = options.groups().slice(0, MAX_GROUP_SERIES);
      participants.reset();
      joins.reset();
      if (groups.length === 0) return;
      const pipeline = redis.pipeline();
      pipeline.hmget(keys.groupParticipants, ...groups);
      for (const group of groups)
        pipeline.hmget(keys.group(group), "joins", "joins_rotation", "last_rotation_id");
      const results = (await pipeline.exec()) ?? [];
      const counts = (results[0]?.[1] ?? []) as (string | null)[];
      groups.forEach((group, i) => {
        participants.set({ group }, Number(counts[i] ?? 0) || 0);
        const [n, of, last] = (results[i + 1]?.[1] ?? []) as (string | null)[];
        joins.set({ group }, (of ?? "") === (last ?? "") ? Number(n ?? 0) || 0 : 0);
      });
    },
  });
  const joins: Gauge<"group"> = new Gauge({
    name: `${METRIC_PREFIX}group_joins_since_rotation`,
    help: "People who joined a group through its current link since its last rotation",
    labelNames: ["group"] as const,
    registers,
  });
  return {
    events: new Counter({
      name: `${METRIC_PREFIX}group_events_total`,
      help: "Group events from WhatsApp webhooks, applied (changed) or already applied (duplicate)",
      labelNames: ["event", "result"] as const,
      registers,
    }),
    skipped: new Counter({
      name: `${METRIC_PREFIX}group_events_skipped_total`,
      help: "Webhook group entries not applied: ignored (not read), invalid, unreadable",
      labelNames: ["reason"] as const,
      registers,
    }),
    joinsRotations: new Counter({
      name: `${METRIC_PREFIX}joins_rotations_total`,
      help: "Rotations enqueued because rotate_after_joins people joined through the current link",
      labelNames: ["policy"] as const,
      registers,
    }),
    participantPolls: new Counter({
      name: `${METRIC_PREFIX}participant_polls_total`,
      help: "Participant counts read from Graph for links with participants_poll, by outcome",
      labelNames: ["outcome"] as const,
      registers,
    }),
  };
}
