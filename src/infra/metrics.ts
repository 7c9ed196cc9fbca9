import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Logger } from "./logger.js";
import { toError } from "../core/errors.js";
import { VERSION } from "../core/version.js";

/** Prefix of every metric the project exports. */
export const METRIC_PREFIX = "wa_rotator_";

/** How long a collect-time callback may take before /metrics answers with its last value. */
export const DEFAULT_COLLECT_TIMEOUT_MS = 1_000;

/** `result` label of `wa_rotator_rotations_total`: how one rotation attempt ended. */
export type RotationResult =
  "published" | "superseded" | "skipped" | "failed" | "retry" | "throttled" | "busy" | "paused";

/**
 * `reason` label of `wa_rotator_missed_fires_total`: fires missed while no scheduler ran, with
 * catch-up off or older than `catch_up`; or a claimed fire that kept failing until the next fire.
 */
export type MissedFireReason = "catch-up-off" | "too-old" | "failed";

/** `result` label of `wa_rotator_config_reloads_total`: how one reload of the policy file ended. */
export type ReloadResult = "applied" | "rejected" | "failed";

/** What `watchRedis` needs of a connection: its status and its connection events (ioredis, Cluster). */
export interface WatchedConnection {
  readonly status: string;
  on(event: "ready" | "close" | "end", listener: () => void): unknown;
}

/** `state` label of `wa_rotator_queue_jobs`. */
export type QueueState = "waiting" | "delayed" | "active" | "failed" | "prioritized";

const QUEUE_STATES: readonly QueueState[] = ["waiting", "delayed", "active", "failed", "prioritized"];

/** Job counts of the rotation queue, as a collect-time callback reports them. */
export type QueueDepth = Record<Exclude<QueueState, "prioritized">, number> & { prioritized?: number };

/**
 * Every metric of the process, on one registry of its own (no module-level singletons: two
 * `createMetrics()` calls never share state). Label values use the domain words of
 * `src/interfaces.ts`; a manual rotation's policy is the label `"manual"` (see `policyLabel`).
 */
export interface Metrics {
  readonly registry: Registry;
  /** `Content-Type` of `text()`: the Prometheus text exposition format. */
  readonly contentType: string;
  /** The exposition text. Never rejects because of a collect callback. */
  text(): Promise<string>;

  /** `wa_rotator_rotations_total{result,account,trigger}`; `result` is a `RotationResult`. */
  readonly rotations: Counter<"result" | "account" | "trigger">;
  /** `wa_rotator_rotation_duration_seconds{account}`: from the request to the publish. */
  readonly rotationDuration: Histogram<"account">;
  /** `wa_rotator_link_gap_seconds{account}`: DELETE success to POST success, how long a group had no link. */
  readonly linkGap: Histogram<"account">;
  /** `wa_rotator_graph_calls_total{operation,outcome,code}`; `code` is the Graph error code or `"none"`. */
  readonly graphCalls: Counter<"operation" | "outcome" | "code">;
  /** `wa_rotator_graph_call_duration_seconds{operation}`. */
  readonly graphCallDuration: Histogram<"operation">;
  /** `wa_rotator_throttle_pauses_total{account}`: times an account's work was paused for throttling. */
  readonly throttlePauses: Counter<"account">;
  /** `wa_rotator_account_failing{account}`: 1 while the account's token fails, else 0. */
  readonly accountFailing: Gauge<"account">;
  /** `wa_rotator_learned_rate{account}`: the adaptive rate (calls/s) of the account's phone number. */
  readonly learnedRate: Gauge<"account">;
  /**
   * `wa_rotator_learned_limit{account}`: the limit (calls/s) the account's phone number was found
   * to have, from 131208 answers (CUBIC's w_max); absent before the first.
   */
  readonly learnedLimit: Gauge<"account">;
  /** `wa_rotator_skipped_rotations_total{policy,reason}`: rotations a fire did not enqueue (reason `busy`, `suspended`, `deleted`). */
  readonly skippedFires: Counter<"policy" | "reason">;
  /** `wa_rotator_fires_total{policy,trigger}`: fires handled by the scheduler. */
  readonly fires: Counter<"policy" | "trigger">;
  /** `wa_rotator_fire_failures_total{policy}`: fire attempts that failed (the scheduler retries them). */
  readonly fireFailures: Counter<"policy">;
  /** `wa_rotator_missed_fires_total{policy,reason}`: fires that rotated nothing; `reason` is a `MissedFireReason`. */
  readonly missedFires: Counter<"policy" | "reason">;
  /** `wa_rotator_fire_rotations_total{policy}`: rotations enqueued by fires. */
  readonly firedRotations: Counter<"policy">;
  /** `wa_rotator_last_success_timestamp_seconds{policy}`: when a rotation of the policy last published. */
  readonly lastSuccess: Gauge<"policy">;
  /** `wa_rotator_collect_errors_total{collector,reason}`: collect callbacks that threw or timed out. */
  readonly collectErrors: Counter<"collector" | "reason">;
  /** `wa_rotator_config_reloads_total{result}`; `result` is a `ReloadResult`. */
  readonly configReloads: Counter<"result">;
  /** `wa_rotator_config_last_reload_successful`: 1 until a reload fails, 1 again after one applies. */
  readonly configLastReloadOk: Gauge;

  /**
   * Feeds `wa_rotator_redis_connected{connection}` from a connection's events: 1 once `ready`, 0
   * after `close` or `end` (ioredis reconnects through close, connect, ready).
   */
  watchRedis(connection: string, client: WatchedConnection): void;
  /** Counts one reload of the policy file and sets `wa_rotator_config_last_reload_successful`. */
  countReload(result: ReloadResult): void;

  /** Feeds `wa_rotator_queue_jobs{state}` at collect time. A later call replaces the callback. */
  registerQueueDepth(fn: () => Promise<QueueDepth>): void;
  /** Feeds `wa_rotator_groups_without_link` at collect time. A later call replaces the callback. */
  registerGroupsWithoutLink(fn: () => Promise<number>): void;
}

export interface MetricsOptions {
  /** Registry to register on; it must not hold these metrics yet. Default: a fresh one. */
  registry?: Registry;
  /**
   * Also export prom-client's Node.js process metrics, unprefixed (`process_cpu_seconds_total`,
   * `nodejs_eventloop_lag_seconds`, …) as stock Node.js dashboards expect them. Default true.
   */
  collectDefault?: boolean;
  /** Bound of each collect-time callback. Default 1 s. */
  collectTimeoutMs?: number;
  /** Where a failing collect callback is reported (once per outage). */
  logger?: Logger;
}

/** The `policy` label of a rotation: `"manual"` for a manual rotation outside every policy. */
export function policyLabel(policy: string | null | undefined): string {
  return policy ?? "manual";
}

// Seconds. A rotation may wait for jitter, throttling and retries; a Graph call is bounded by its timeout.
const ROTATION_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600];
const LINK_GAP_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900];
const GRAPH_CALL_BUCKETS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30];

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = options.registry ?? new Registry();
  const registers = [registry];
  const timeoutMs = options.collectTimeoutMs ?? DEFAULT_COLLECT_TIMEOUT_MS;
  // Unprefixed: the names every Node.js dashboard and alert already uses. They are process facts,
  // the same for every Node service, so the project's prefix would only hide them.
  if (options.collectDefault ?? true) collectDefaultMetrics({ register: registry });

  const name = (suffix: string) => `${METRIC_PREFIX}${suffix}`;

  const countError = (collector: string, reason: string) => collectErrors.inc({ collector, reason });
  const queueDepth = boundedCollector<QueueDepth>("queue_depth", timeoutMs, countError, options.logger);
  const groupsWithoutLink = boundedCollector<number>(
    "groups_without_link",
    timeoutMs,
    countError,
    options.logger,
  );

  const queueJobs: Gauge<"state"> = new Gauge({
    name: name("queue_jobs"),
    help: "Rotation jobs in the queue by state",
    labelNames: ["state"] as const,
    registers,
    collect: async () => {
      const depth = await queueDepth.sample(isQueueDepth);
      if (!depth) return;
      for (const state of QUEUE_STATES) {
        const count = depth[state];
        if (count !== undefined) queueJobs.set({ state }, count);
      }
    },
  });

  const groupsWithoutLinkGauge: Gauge = new Gauge({
    name: name("groups_without_link"),
    help: "Groups whose old link is deleted and whose new link is not created yet",
    registers,
    collect: async () => {
      const count = await groupsWithoutLink.sample(isCount);
      if (count !== undefined) groupsWithoutLinkGauge.set(count);
    },
  });

  // Registered after the gauges, so prom-client has started this scrape's samples when this collect
  // runs: waiting for them makes a failure show in the same scrape (at worst, in the next one).
  const collectErrors = new Counter({
    name: name("collect_errors_total"),
    help: "Collect-time callbacks of /metrics that failed or timed out (their last value was kept)",
    labelNames: ["collector", "reason"] as const,
    registers,
    collect: async () => {
      await Promise.all([queueDepth.current(), groupsWithoutLink.current()]);
    },
  });

  new Gauge({
    name: name("build_info"),
    help: "Always 1; the labels name the version of wa-invite-rotator and of Node.js this process runs",
    labelNames: ["version", "node"] as const,
    registers,
  }).set({ version: VERSION, node: process.version }, 1);

  const redisConnected = new Gauge({
    name: name("redis_connected"),
    help: "1 while the Redis connection is ready, 0 while it is closed or reconnecting, by connection role",
    labelNames: ["connection"] as const,
    registers,
  });
  const configReloads = new Counter({
    name: name("config_reloads_total"),
    help: "Reloads of the policy file (SIGHUP or a file change): applied, rejected (invalid file, the running policies stay), failed (applying threw)",
    labelNames: ["result"] as const,
    registers,
  });
  const configLastReloadOk = new Gauge({
    name: name("config_last_reload_successful"),
    help: "1 unless the last reload of the policy file was rejected or failed",
    registers,
  });
  configLastReloadOk.set(1);

  return {
    registry,
    contentType: registry.contentType,
    configReloads,
    configLastReloadOk,
    watchRedis(connection, client) {
      redisConnected.set({ connection }, client.status === "ready" ? 1 : 0);
      client.on("ready", () => redisConnected.set({ connection }, 1));
      client.on("close", () => redisConnected.set({ connection }, 0));
      client.on("end", () => redisConnected.set({ connection }, 0));
    },
    countReload(result) {
      configReloads.inc({ result });
      configLastReloadOk.set(result === "applied" ? 1 : 0);
    },
    text: () => registry.metrics(),
    collectErrors,
    rotations: new Counter({
      name: name("rotations_total"),
      help: "Rotation attempts by result (published, superseded, skipped, failed, retry, throttled, busy, paused)",
      labelNames: ["result", "account", "trigger"] as const,
      registers,
    }),
    rotationDuration: new Histogram({
      name: name("rotation_duration_seconds"),
      help: "Time from the rotation request to the publish of the new link",
      labelNames: ["account"] as const,
      buckets: ROTATION_BUCKETS,
      registers,
    }),
    linkGap: new Histogram({
      name: name("link_gap_seconds"),
      help: "Time from DELETE success to POST success: how long a group had no invite link",
      labelNames: ["account"] as const,
      buckets: LINK_GAP_BUCKETS,
      registers,
    }),
    graphCalls: new Counter({
      name: name("graph_calls_total"),
      help: "Graph API calls by operation, outcome and Graph error code (none on success)",
      labelNames: ["operation", "outcome", "code"] as const,
      registers,
    }),
    graphCallDuration: new Histogram({
      name: name("graph_call_duration_seconds"),
      help: "Duration of Graph API calls",
      labelNames: ["operation"] as const,
      buckets: GRAPH_CALL_BUCKETS,
      registers,
    }),
    throttlePauses: new Counter({
      name: name("throttle_pauses_total"),
      help: "Times an account's rotations were paused because Graph throttled it",
      labelNames: ["account"] as const,
      registers,
    }),
    accountFailing: new Gauge({
      name: name("account_failing"),
      help: "1 while the account's token fails, else 0",
      labelNames: ["account"] as const,
      registers,
    }),
    learnedRate: new Gauge({
      name: name("learned_rate"),
      help: "Graph calls per second the account's phone number may make, as learned from 131208 answers",
      labelNames: ["account"] as const,
      registers,
    }),
    learnedLimit: new Gauge({
      name: name("learned_limit"),
      help: "Graph calls per second the account's phone number was found to allow, from 131208 answers (absent before the first)",
      labelNames: ["account"] as const,
      registers,
    }),
    skippedFires: new Counter({
      name: name("skipped_rotations_total"),
      help: "Rotations a fire did not enqueue, by reason (busy: the group was still rotating; suspended, deleted: by WhatsApp)",
      labelNames: ["policy", "reason"] as const,
      registers,
    }),
    fires: new Counter({
      name: name("fires_total"),
      help: "Policy fires handled by the scheduler, by trigger (schedule or catch-up)",
      labelNames: ["policy", "trigger"] as const,
      registers,
    }),
    fireFailures: new Counter({
      name: name("fire_failures_total"),
      help: "Failed attempts to enqueue a policy fire (retried until the next fire is due)",
      labelNames: ["policy"] as const,
      registers,
    }),
    missedFires: new Counter({
      name: name("missed_fires_total"),
      help: "Policy fires that rotated no group: missed during downtime with catch-up off (catch-up-off) or older than catch_up (too-old), or failed until the next fire (failed)",
      labelNames: ["policy", "reason"] as const,
      registers,
    }),
    firedRotations: new Counter({
      name: name("fire_rotations_total"),
      help: "Rotations enqueued by policy fires",
      labelNames: ["policy"] as const,
      registers,
    }),
    lastSuccess: new Gauge({
      name: name("last_success_timestamp_seconds"),
      help: "Unix time of the last published rotation of the policy (manual for manual rotations)",
      labelNames: ["policy"] as const,
      registers,
    }),
    registerQueueDepth: (fn) => queueDepth.set(fn),
    registerGroupsWithoutLink: (fn) => groupsWithoutLink.set(fn),
  };
}

/**
 * A collect-time callback made safe for prom-client: it never throws, answers within `timeoutMs`
 * (undefined = keep the last value) and never stacks calls: while one call hangs (Redis down, the
 * offline queue waiting), later scrapes wait on that same call instead of starting more.
 */
function boundedCollector<T>(
  collector: string,
  timeoutMs: number,
  countError: (collector: string, reason: string) => void,
  logger: Logger | undefined,
) {
  let fn: (() => Promise<T>) | undefined;
  let inFlight: Promise<T> | undefined;
  let sampling: Promise<unknown> | undefined;
  let failing = false;

  const fail = (reason: "timeout" | "error" | "invalid", error?: unknown): undefined => {
    countError(collector, reason);
    if (failing) return undefined;
    failing = true;
    const err = error === undefined ? undefined : { message: toError(error).message };
    logger?.warn({ collector, reason, err }, "metrics collect callback failed; keeping its last value");
    return undefined;
  };

  return {
    set(next: () => Promise<T>) {
      fn = next;
    },
    /** The sample in progress (resolves, never rejects), if any. */
    current(): Promise<unknown> | undefined {
      return sampling;
    },
    sample(valid: (value: unknown) => value is T): Promise<T | undefined> {
      const promise = sampleOnce(valid);
      sampling = promise;
      const settled = () => {
        if (sampling === promise) sampling = undefined;
      };
      promise.then(settled, settled);
      return promise;
    },
  };

  async function sampleOnce(valid: (value: unknown) => value is T): Promise<T | undefined> {
    if (!fn) return undefined;
    if (!inFlight) {
      const call = fn;
      const promise = Promise.resolve().then(call);
      inFlight = promise;
      const settled = () => {
        if (inFlight === promise) inFlight = undefined;
      };
      promise.then(settled, settled);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    try {
      const value = await Promise.race([inFlight, timeout]);
      if (value === "timeout") return fail("timeout");
      if (!valid(value)) return fail("invalid");
      if (failing) logger?.info({ collector }, "metrics collect callback recovered");
      failing = false;
      return value;
    } catch (error) {
      return fail("error", error);
    } finally {
      clearTimeout(timer);
    }
  }
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

function isQueueDepth(value: unknown): value is QueueDepth {
  if (typeof value !== "object" || value === null) return false;
  const depth = value as Record<string, unknown>;
  const required = QUEUE_STATES.filter((s) => s !== "prioritized").every((state) => isCount(depth[state]));
  return required && (depth.prioritized === undefined || isCount(depth.prioritized));
}
