import type { RedisClient } from "../infra/redis.js";
import type { ResolvedConfig } from "../config/config.js";
import type { ResolvedLink } from "../config/links.js";
import type { Settings } from "../config/settings.js";
import { parseDuration } from "../core/durations.js";
import { systemClock, type Clock } from "../core/interfaces.js";
import type { Keys } from "../core/keys.js";
import type { Logger } from "../infra/logger.js";
import { createMetrics, type Metrics } from "../infra/metrics.js";
import { createRedis, projectKeys, redisDeployment } from "../infra/redis.js";
import { joinRoute } from "./join.js";
import { createLinkStore, type LinkStore } from "./link-store.js";
import { createGatewayMetrics, type GatewayMetrics } from "./metrics.js";
import { emptyPoolCounts, poolState, type PoolState } from "../groups/pools.js";
import { createRateLimiter, parseRateLimit } from "./rate-limit.js";
import { probeRoutes } from "./probes.js";
import { startGatewayServer, type GatewayRoute, type GatewayServer } from "./server.js";

/**
 * The `gateway` command's process: holds no Graph token. It builds one Redis command connection
 * (the link store duplicates it for its subscriptions), the link store, the metrics and the HTTP
 * server with its routes: `/join/{slug}`, `/healthz`, `/readyz`, `/metrics`, and whatever
 * `extraRoutes` adds (the WhatsApp webhook receiver mounts itself there).
 */

/** What a mounted route may use: the gateway's connections, keys, config and metrics. */
export interface GatewayContext {
  readonly settings: Settings;
  /** The live policy file (a reload replaces it). */
  readonly config: ResolvedConfig;
  readonly logger: Logger;
  readonly redis: RedisClient;
  readonly keys: Keys;
  readonly metrics: Metrics;
}

export interface GatewayOptions {
  settings: Settings;
  config: ResolvedConfig;
  logger: Logger;
  /** Routes to mount besides the gateway's own; tried before `/join/` and the probes. */
  extraRoutes?: (context: GatewayContext) => readonly GatewayRoute[];
  /** Port override (tests: 0); default GATEWAY_PORT. */
  port?: number;
  clock?: Clock;
}

export interface Gateway {
  readonly context: GatewayContext;
  readonly store: LinkStore;
  readonly gatewayMetrics: GatewayMetrics;
  /** The server, once started. */
  server(): GatewayServer | undefined;
  /** Subscribes, then listens. Idempotent. */
  start(): Promise<void>;
  /**
   * Makes a reloaded (already validated) policy file live: its links are served from the next
   * visit on, once the channels they add have been read (C:latest), so a new link never answers
   * from an empty memory.
   */
  reload(next: ResolvedConfig): Promise<void>;
  /** Stops listening, then closes the subscriptions and the connection. Idempotent. */
  stop(): Promise<void>;
}

export function createGateway(options: GatewayOptions): Gateway {
  const { settings, logger } = options;
  let config = options.config;
  const deployment = redisDeployment(settings);
  const keys = projectKeys(settings.ROTATOR_PREFIX, deployment);
  const redis = createRedis(deployment, "gateway", logger);
  const metrics = createMetrics({ logger });
  metrics.watchRedis("gateway", redis);
  const store = createLinkStore({
    redis,
    keys,
    links: config.links,
    signingSecret: settings.ROTATOR_SIGNING_SECRET,
    logger,
  });
  const links = new Map<string, ResolvedLink>(config.links.map((link) => [link.slug, link]));
  const gatewayMetrics = createGatewayMetrics(metrics.registry, () => poolStates(store, config.links));
  const rate = parseRateLimit(settings.GATEWAY_RATE_LIMIT, parseDuration);
  const context: GatewayContext = {
    settings,
    get config() {
      return config;
    },
    logger,
    redis,
    keys,
    metrics,
  };
  let reloads: Promise<void> = Promise.resolve();
  let subscribed = false;
  const routes: GatewayRoute[] = [
    ...(options.extraRoutes?.(context) ?? []),
    joinRoute({
      links,
      store,
      redis,
      keys,
      linkSecret: settings.ROTATOR_LINK_SECRET,
      limiter:
        rate === "off" || rate === undefined ? undefined : createRateLimiter(rate.limit, rate.windowMs),
      trustedProxies: settings.GATEWAY_TRUSTED_PROXIES,
      rotationWaitMs: settings.GATEWAY_ROTATION_WAIT,
      metrics: gatewayMetrics,
      clock: options.clock ?? systemClock,
      logger,
    }),
    ...probeRoutes({ redis, metrics, ready: () => subscribed }),
  ];

  let server: GatewayServer | undefined;
  let starting: Promise<void> | undefined;
  let stopping: Promise<void> | undefined;
  return {
    context,
    store,
    gatewayMetrics,
    server: () => server,
    start: () =>
      (starting ??= (async () => {
        await store.start();
        subscribed = true;
        if (stopping) return;
        server = await startGatewayServer({
          port: options.port ?? settings.GATEWAY_PORT,
          host: settings.GATEWAY_HOST,
          routes,
          logger,
        });
        logger.info({ url: server.url, links: links.size }, "gateway listening");
      })()),
    reload(next) {
      // One reload at a time, in order, each waiting for the channels it adds.
      const run = reloads.then(async () => {
        await store.update(next.links);
        config = next;
        links.clear();
        for (const link of next.links) links.set(link.slug, link);
        logger.info({ links: links.size }, "gateway links reloaded");
      });
      reloads = run.catch(() => undefined);
      return run;
    },
    stop: () =>
      (stopping ??= (async () => {
        await starting?.catch(() => undefined);
        await server?.close();
        await store.stop();
        redis.disconnect();
      })()),
  };
}

/**
 * Each link's pool groups by state as this gateway sees them, for the `gateway_pool_groups` gauge
 * (`status` reads the same from Redis: `readPoolStatuses` in groups/pools.ts).
 */
export async function poolStates(
  store: LinkStore,
  links: readonly ResolvedLink[],
): Promise<Map<string, Record<PoolState, number>>> {
  const states = new Map<string, Record<PoolState, number>>();
  for (const link of links) {
    const counts = emptyPoolCounts();
    for (const view of await store.inspect(store.members(link))) counts[poolState(view, link.capacity)]++;
    states.set(link.slug, counts);
  }
  return states;
}
