import type { RedisClient } from "./infra/redis.js";
import type { Queue } from "bullmq";
import { createGraphClient, type GraphClient } from "./graph/client.js";
import { createGroupLock } from "./rotation/group-lock.js";
import { createAccountGate } from "./accounts/gate.js";
import { createAccountProbe } from "./accounts/probe.js";
import { systemClock, type RotationJobData } from "./core/interfaces.js";
import { channelKeys, type Keys } from "./core/keys.js";
import type { Logger } from "./infra/logger.js";
import { createPublisher } from "./publish/publisher.js";
import { createRotationQueue } from "./rotation/queue.js";
import { checkRedisAccess, createRedis, onceEvery, projectKeys, redisDeployment } from "./infra/redis.js";
import { createRotationStateStore } from "./rotation/state.js";
import type { Settings } from "./config/settings.js";
import { createRotationWorker } from "./rotation/worker.js";
import { resolveAccount, type ResolvedConfig } from "./config/config.js";
import { startHealthServer, redisReadiness, type HealthServer, type Readiness } from "./ops/health.js";
import { createMetrics, policyLabel, type Metrics, type QueueDepth } from "./infra/metrics.js";
import type { AttemptEvent } from "./rotation/worker.js";
import { createFirer } from "./schedule/fire.js";
import { createPolicyState } from "./schedule/policy-state.js";
import { createScheduler, type Scheduler } from "./schedule/scheduler.js";
import { createGroupEventsConsumer } from "./groups/consumer.js";
import { createJoinsTrigger } from "./groups/joins.js";
import { createGroupMetrics } from "./groups/metrics.js";
import { createGroupStateStore } from "./groups/state.js";
import { createParticipantsPoll } from "./groups/participants-poll.js";

/**
 * The composition root: builds the Redis connections, the Graph client, the queue, the workers
 * (and, by role, the scheduler and the health server) and passes them down. Nothing below it
 * creates a client of its own or reads the environment.
 *
 * `start()` and `stop()` are idempotent and return the promise in flight. `stop()` stops intake
 * first, lets rotations in flight finish up to the shutdown deadline, then closes in reverse order.
 */
export interface AppRoles {
  readonly worker: boolean;
  readonly scheduler: boolean;
  readonly health: boolean;
}

/** Something the app starts and stops, in order. */
export interface Service {
  readonly name: string;
  start(): Promise<void>;
  /** `force` after the shutdown deadline: abort work in flight. */
  stop(force: boolean): Promise<void>;
  /** True while it has work in flight that a graceful stop would wait for. Default: never. */
  busy?(): boolean;
}

/** The live config; a reload swaps `current`. */
export interface ConfigHolder {
  current: ResolvedConfig;
}

export interface App {
  readonly settings: Settings;
  readonly logger: Logger;
  readonly keys: Keys;
  readonly config: ConfigHolder;
  readonly redis: RedisClient;
  readonly queue: Queue<RotationJobData>;
  readonly graph: GraphClient;
  readonly metrics: Metrics;
  /**
   * The roles this process really runs, in order: `worker`, `scheduler`, and `health` only when the
   * health server is on (its role asked for and HEALTH_PORT not 0). Logged at start, in /healthz.
   */
  readonly roles: readonly (keyof AppRoles)[];
  /** The health server, once started (absent when HEALTH_PORT is 0 or the role is off). */
  health(): HealthServer | undefined;
  /** Redis answers and the policy file is loaded. */
  ready(): Promise<boolean>;
  /** The scheduler, when the role is on. */
  readonly scheduler: Scheduler | undefined;
  /** Makes a reloaded (already validated) policy file live and re-arms the scheduler. */
  reload(next: ResolvedConfig): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createApp(options: {
  settings: Settings;
  logger: Logger;
  config: ResolvedConfig;
  roles: AppRoles;
}): App {
  const { settings, logger, roles } = options;
  const deployment = redisDeployment(settings);
  const keys = projectKeys(settings.ROTATOR_PREFIX, deployment);
  const config: ConfigHolder = { current: options.config };
  const running: (keyof AppRoles)[] = [];
  if (roles.worker) running.push("worker");
  if (roles.scheduler) running.push("scheduler");
  if (roles.health && settings.HEALTH_PORT !== 0) running.push("health");
  const redis = createRedis(deployment, "commands", logger);
  const bullConnection = createRedis(deployment, "queue", logger);
  const queue = createRotationQueue(keys, bullConnection);
  queue.on("error", onceEvery(logger, "rotation queue error"));
  const metrics = createMetrics({ logger });
  metrics.watchRedis("commands", redis);
  metrics.watchRedis("queue", bullConnection);
  metrics.registerQueueDepth(() =>
    queue.getJobCounts("waiting", "delayed", "active", "failed", "prioritized").then((c) => c as QueueDepth),
  );
  metrics.registerGroupsWithoutLink(() => redis.scard(keys.withoutLinkIndex));
  const gate = createAccountGate({
    redis,
    keys,
    logger,
    metrics,
    rateOf: (name) => config.current.accounts.get(name)?.rateLimit,
    throttleBaseMs: settings.ROTATOR_THROTTLE_BASE,
    throttleMaxMs: settings.ROTATOR_THROTTLE_MAX,
    recheckMs: settings.ROTATOR_ACCOUNT_PROBE_INTERVAL,
  });
  const graph = createGraphClient({
    baseUrl: settings.GRAPH_API_BASE_URL,
    connectTimeoutMs: settings.GRAPH_CONNECT_TIMEOUT,
    headersTimeoutMs: settings.GRAPH_REQUEST_TIMEOUT,
    bodyTimeoutMs: settings.GRAPH_REQUEST_TIMEOUT,
    // A saga makes one call at a time: a connection per rotation in flight (and a few for the probe
    // and discovery) means no call waits in the pool queue, where its request deadline already runs.
    connections: Math.max(64, settings.ROTATOR_CONCURRENCY + 8),
    onCall: (call) => {
      const code = call.graphCode === undefined ? "none" : String(call.graphCode);
      metrics.graphCalls.inc({ operation: call.operation, outcome: call.outcome, code });
      metrics.graphCallDuration.observe({ operation: call.operation }, call.durationMs / 1000);
      if (call.outcome === "ok") gate.succeeded(call.account);
      // How close an account is to Graph's limits, for whoever tunes rate_limit and jitter.
      if (call.usage) {
        const { account, operation, status, outcome, usage } = call;
        logger.debug({ account, operation, status, outcome, usage }, "graph usage");
      }
    },
  });
  // In a Cluster: ready only while the slots of the project's keys and of every channel are served.
  const redisOk = redisReadiness(redis, {
    slotKeys: () => [keys.groupsIndex, ...channelsOf(config.current).map((c) => channelKeys(c).latest)],
  });
  const ready = async () => (await redisOk()) && config.current !== undefined;
  let health: HealthServer | undefined;

  // First of all (after the health server): a database index the server rejects or a permission
  // the user lacks ends the start with one clear error, before any work in the wrong database.
  const services: Service[] = [
    { name: "redis-access", start: () => checkRedisAccess(redis, settings.REDIS_URL), stop: async () => {} },
  ];
  if (roles.worker) {
    const state = createRotationStateStore(redis, keys);
    const worker = createRotationWorker({
      keys,
      // The live config: a scheduled rotation of a group a reload removed from its policy is skipped.
      config: () => config.current,
      connection: bullConnection,
      concurrency: settings.ROTATOR_CONCURRENCY,
      logger,
      gate,
      lockDurationMs: settings.ROTATOR_JOB_LOCK,
      stalledIntervalMs: settings.ROTATOR_STALLED_INTERVAL,
      onAttempt: (event) => countAttempt(metrics, event),
      deps: {
        graph,
        publisher: createPublisher({ redis, keys, signingSecret: settings.ROTATOR_SIGNING_SECRET }),
        state,
        lock: createGroupLock(redis, keys, settings.ROTATOR_GROUP_LOCK_TTL),
        resolveAccount: (name) => resolveAccount(config.current, name),
        beforeGraphCall: gate.beforeGraphCall,
        gateCheck: gate.checkCall,
        clock: systemClock,
        logger,
        unsureSettleMs: settings.ROTATOR_UNSURE_SETTLE,
      },
    });
    services.push({
      name: "worker",
      start: async () => {
        void worker.run().catch((error: unknown) => logger.error({ err: error }, "rotation worker stopped"));
        await worker.waitUntilReady();
      },
      stop: (force) => worker.close(force),
      busy: () => worker.inFlight() > 0,
    });
    const probe = createAccountProbe({
      redis,
      keys,
      queue,
      lock: createGroupLock(redis, keys, settings.ROTATOR_GROUP_LOCK_TTL),
      graph,
      gate,
      config: () => config.current,
      logger,
      metrics,
      intervalMs: settings.ROTATOR_ACCOUNT_PROBE_INTERVAL,
      probeTimeoutMs: settings.GRAPH_REQUEST_TIMEOUT,
    });
    services.push({ name: "account-probe", start: async () => probe.start(), stop: () => probe.stop() });
    // WhatsApp's group webhooks, recorded by the gateway: participant counts, suspension and
    // deletion, and rotate_after_joins.
    const groupMetrics = createGroupMetrics({
      registry: metrics.registry,
      redis,
      keys,
      groups: () => [...config.current.policyByGroup.keys()],
    });
    const joinsTrigger = createJoinsTrigger({
      queue,
      config: () => config.current,
      logger,
      clock: systemClock,
      onEnqueued: (policy) => groupMetrics.joinsRotations.inc({ policy }),
    });
    const groupEvents = createGroupEventsConsumer({
      redis,
      keys,
      store: createGroupStateStore(redis, keys),
      logger,
      onJoined: (event, applied) => joinsTrigger(event.groupId, applied),
      onEvent: (event, changed) =>
        groupMetrics.events.inc({ event, result: changed ? "changed" : "duplicate" }),
      onSkipped: (reason, n) => groupMetrics.skipped.inc({ reason }, n),
    });
    services.push({ name: "group-events", start: () => groupEvents.start(), stop: () => groupEvents.stop() });
    // Links with participants_poll: each pool group's count from Graph, through the account gate.
    const participantsPoll = createParticipantsPoll({
      redis,
      keys,
      graph,
      config: () => config.current,
      resolveAccount: (name) => resolveAccount(config.current, name),
      beforeGraphCall: gate.beforeGraphCall,
      throttled: (account, error) => gate.throttled(account, error),
      logger,
      onPolled: (outcome) => groupMetrics.participantPolls.inc({ outcome }),
    });
    services.push({
      name: "participants-poll",
      start: async () => participantsPoll.start(),
      stop: () => participantsPoll.stop(),
    });
  }

  let scheduler: Scheduler | undefined;
  if (roles.scheduler) {
    const fire = createFirer({
      redis,
      keys,
      queue,
      graph,
      config: () => config.current,
      resolveAccount: (name) => resolveAccount(config.current, name),
      logger,
      clock: systemClock,
      metrics,
    });
    const scheduled = createScheduler({
      config: () => config.current,
      state: createPolicyState(redis, keys),
      fire,
      logger,
      metrics,
    });
    scheduler = scheduled;
    services.push({
      name: "scheduler",
      start: () => scheduled.start(),
      stop: (force) => scheduled.stop(force),
    });
  }

  if (roles.health && settings.HEALTH_PORT !== 0) {
    services.unshift({
      name: "health",
      start: async () => {
        health = await startHealthServer({
          port: settings.HEALTH_PORT,
          host: settings.HEALTH_HOST,
          roles: running,
          metrics,
          logger,
          ready: async (): Promise<Readiness> => {
            // From the moment a drain begins: load balancers stop sending, orchestrators see it.
            if (stopping) return { ok: false, checks: { draining: true, policies: config.current.file } };
            const redisReady = await redisOk();
            return { ok: redisReady, checks: { redis: redisReady, policies: config.current.file } };
          },
        });
      },
      stop: async () => health?.close(),
    });
  }

  let starting: Promise<void> | undefined;
  let stopping: Promise<void> | undefined;
  /** Services started, plus the one starting (a stop during start stops it too). */
  const started: Service[] = [];

  const start = () =>
    (starting ??= (async () => {
      for (const service of services) {
        if (stopping) return;
        started.push(service);
        await service.start();
        logger.info({ service: service.name }, "started");
      }
    })());

  const stop = () =>
    (stopping ??= (async () => {
      // One deadline for the whole stop, not one per stage: each stage gets only what is left.
      // Forced closes share a fixed margin after it, so a Redis that is gone (every stage waits,
      // then is forced) still ends the stop by ROTATOR_SHUTDOWN_TIMEOUT + FORCED_STOP_MS.
      const deadlineMs = settings.ROTATOR_SHUTDOWN_TIMEOUT;
      // With Redis gone and no rotation in flight there is nothing to drain and nothing a graceful
      // close could tell Redis: every stage is forced at once (the whole stop within FORCED_STOP_MS).
      const idle = redis.status !== "ready" && !started.some((service) => service.busy?.());
      if (idle) logger.info("Redis is unreachable and nothing is in flight: closing at once");
      const gracefulUntil = Date.now() + (idle ? 0 : deadlineMs);
      const forcedUntil = gracefulUntil + FORCED_STOP_MS;
      const graceLeft = () => Math.max(0, gracefulUntil - Date.now());
      const forceLeft = () => Math.max(0, forcedUntil - Date.now());
      // A start still waiting (for Redis, say) gets the deadline, not forever.
      await settle(starting ?? Promise.resolve(), graceLeft());
      for (const service of [...services].reverse()) {
        // A service that never started may still hold connections (BullMQ opens its own eagerly).
        if (!started.includes(service)) {
          await settle(service.stop(true), forceLeft());
          continue;
        }
        if (!(graceLeft() > 0 && (await settle(service.stop(false), graceLeft())))) {
          logger.warn({ service: service.name, deadlineMs }, "shutdown deadline passed; forcing");
          await settle(service.stop(true), forceLeft());
        }
        logger.info({ service: service.name }, "stopped");
      }
      await settle(queue.close(), forceLeft());
      await settle(graph.close(), forceLeft());
      redis.disconnect();
      bullConnection.disconnect();
    })());

  return {
    settings,
    logger,
    keys,
    config,
    redis,
    queue,
    graph,
    metrics,
    roles: running,
    health: () => health,
    ready,
    scheduler,
    reload: (next) => {
      config.current = next;
      scheduler?.reload();
    },
    start,
    stop,
  };
}

/**
 * How long, after the shutdown deadline, the forced stops and the closing of the queue and the
 * Graph pool may take together before the app lets go of them.
 */
const FORCED_STOP_MS = 1_000;

/** Waits for `work` at most `ms`; true if it settled (resolved or failed) in time. */
async function settle(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(resolve, ms, false);
  });
  try {
    return await Promise.race([
      work.then(
        () => true,
        () => true,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Turns one finished rotation attempt into metrics. */
function countAttempt(metrics: Metrics, event: AttemptEvent): void {
  const { data } = event;
  metrics.rotations.inc({ result: event.result, account: data.account, trigger: data.trigger });
  if (event.result === "published" && event.message) {
    const rotatedAt = Date.parse(event.message.rotated_at);
    metrics.rotationDuration.observe(
      { account: data.account },
      Math.max(0, rotatedAt - data.requestedAt) / 1000,
    );
    metrics.lastSuccess.set({ policy: policyLabel(data.policy) }, rotatedAt / 1000);
    if (event.linkGapMs !== undefined)
      metrics.linkGap.observe({ account: data.account }, event.linkGapMs / 1000);
  }
}

/** The channels the policies publish on, each once. */
function channelsOf(config: ResolvedConfig): string[] {
  return [...new Set(config.policies.map((p) => p.channel))];
}
