import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";
import { RotatorError } from "../core/errors.js";
import { createKeys, hashTag, type Keys } from "../core/keys.js";
import type { Logger } from "./logger.js";
import { REDACTED } from "./redact.js";

/**
 * Logs an error event once per outage instead of once per reconnect attempt: the first of a run of
 * errors is logged, repeats are counted and summed up in the next line after `quietMs`.
 */
export function onceEvery(logger: Logger, message: string, quietMs = 60_000): (error: Error) => void {
  let last = 0;
  let suppressed = 0;
  return (error) => {
    const now = Date.now();
    if (now - last < quietMs) {
      suppressed++;
      return;
    }
    logger.error(
      { err: { message: error.message }, ...(suppressed > 0 ? { repeated: suppressed } : {}) },
      message,
    );
    last = now;
    suppressed = 0;
  };
}

/** A client of any deployment: one node, a Sentinel-managed master, or a Cluster. */
export type RedisClient = Redis | Cluster;

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/**
 * How the project reaches Redis (contract, "Redis deployments"). Credentials, TLS and the database
 * index always come from REDIS_URL; Sentinel and Cluster add where to find the servers.
 */
export type RedisDeployment =
  | { readonly kind: "single"; readonly url: string }
  | { readonly kind: "cluster"; readonly url: string; readonly nodes: readonly HostPort[] }
  | {
      readonly kind: "sentinel";
      readonly url: string;
      readonly sentinels: readonly HostPort[];
      readonly master: string;
    };

/** The deployment the settings describe. */
export function redisDeployment(settings: {
  readonly REDIS_URL: string;
  readonly REDIS_CLUSTER_NODES?: readonly HostPort[] | undefined;
  readonly REDIS_SENTINELS?: readonly HostPort[] | undefined;
  readonly REDIS_SENTINEL_MASTER?: string | undefined;
}): RedisDeployment {
  const url = settings.REDIS_URL;
  if (settings.REDIS_CLUSTER_NODES) return { kind: "cluster", url, nodes: settings.REDIS_CLUSTER_NODES };
  if (settings.REDIS_SENTINELS && settings.REDIS_SENTINEL_MASTER) {
    return {
      kind: "sentinel",
      url,
      sentinels: settings.REDIS_SENTINELS,
      master: settings.REDIS_SENTINEL_MASTER,
    };
  }
  return { kind: "single", url };
}

/**
 * The project's keys. In a Cluster they all share one hash slot, as BullMQ's queues need and the
 * multi-key scripts of the group lock, the saga state and the account gate rely on: the prefix is
 * made its own hash tag (`wa-rotator` becomes `{wa-rotator}`) unless it already has one.
 */
export function projectKeys(prefix: string, deployment: RedisDeployment): Keys {
  const tagged = deployment.kind === "cluster" && hashTag(prefix) === undefined ? `{${prefix}}` : prefix;
  return createKeys(tagged);
}

/** Credentials and TLS of REDIS_URL, as options (for the servers Sentinel or Cluster name). */
function urlOptions(url: string): RedisOptions {
  const parsed = new URL(url);
  const options: RedisOptions = {};
  if (parsed.username) options.username = decodeURIComponent(parsed.username);
  if (parsed.password) options.password = decodeURIComponent(parsed.password);
  if (parsed.protocol === "rediss:") options.tls = {};
  const db = parsed.pathname.replace(/^\//, "");
  if (db) options.db = Number(db);
  return options;
}

const baseOptions = (name: string): RedisOptions => ({
  connectionName: `wa-invite-rotator:${name}`,
  maxRetriesPerRequest: null,
  enableReadyCheck: true,
  retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2_000),
});

/** ioredis reports per-command errors inside EXEC's result; surface them. */
export function throwOnTransactionError(results: [Error | null, unknown][] | null): void {
  if (results === null) throw new Error("redis transaction aborted");
  for (const [error] of results) if (error) throw error;
}

/**
 * Opens a Redis connection for the project. Commands wait across reconnects (no per-request retry
 * limit, as BullMQ requires), reconnects back off up to 2 s, and connection errors are logged at
 * most once per outage instead of once per attempt.
 *
 * Given a deployment, the client follows it: a Sentinel-managed master is looked up again after a
 * failover; a Cluster client routes each command to the node serving its key's slot and follows
 * MOVED and ASK redirections.
 */
export function createRedis(url: string, name: string, logger: Logger, extra?: RedisOptions): Redis;
export function createRedis(
  target: RedisDeployment,
  name: string,
  logger: Logger,
  extra?: RedisOptions,
): RedisClient;
export function createRedis(
  target: string | RedisDeployment,
  name: string,
  logger: Logger,
  extra: RedisOptions = {},
): RedisClient {
  const client = connect(typeof target === "string" ? { kind: "single", url: target } : target, name, extra);
  let down = false;
  const url = typeof target === "string" ? target : target.url;
  client.on("error", (error: Error) => {
    // ioredis goes on in database 0 when the server rejects the index: not one command may run.
    const refused = redisAccessError(error, url);
    if (refused?.code === "E_REDIS_DATABASE") {
      refusals.set(client, refused);
      client.disconnect();
      logger.error({ connection: name }, refused.message);
      return;
    }
    if (down) return;
    down = true;
    logger.warn({ connection: name, err: { message: error.message } }, "redis connection error");
  });
  client.on("ready", () => {
    if (down) logger.info({ connection: name }, "redis connection restored");
    down = false;
  });
  return client;
}

function connect(deployment: RedisDeployment, name: string, extra: RedisOptions): RedisClient {
  switch (deployment.kind) {
    case "single":
      return new Redis(deployment.url, { ...baseOptions(name), ...extra });
    case "sentinel": {
      const { host: _host, port: _port, ...auth } = { host: "", port: 0, ...urlOptions(deployment.url) };
      return new Redis({
        ...baseOptions(name),
        ...auth,
        sentinels: deployment.sentinels.map(({ host, port }) => ({ host, port })),
        name: deployment.master,
        // Sentinels share the master's credentials unless configured apart; TLS likewise.
        sentinelPassword: auth.password,
        ...(auth.tls ? { enableTLSForSentinelMode: true } : {}),
        ...extra,
      });
    }
    case "cluster": {
      const { db, ...auth } = urlOptions(deployment.url);
      if (db) {
        throw new RotatorError(
          "E_REDIS_CLUSTER_DB",
          "REDIS_URL names a database index: a Redis Cluster has only database 0",
        );
      }
      const base = baseOptions(name);
      const options: ClusterOptions = {
        clusterRetryStrategy: base.retryStrategy,
        enableReadyCheck: true,
        // Commands wait across a reconfiguration, as on one node; redirections are followed.
        enableOfflineQueue: true,
        ...(auth.tls ? { dnsLookup: (address, callback) => callback(null, address) } : {}),
        redisOptions: { ...base, ...auth, ...extra },
      };
      return new Cluster(
        deployment.nodes.map(({ host, port }) => ({ host, port })),
        options,
      );
    }
  }
}

/**
 * Checks, once connected, what ioredis lets slide: a database index the server rejects (ioredis
 * logs the SELECT error and goes on in database 0) and a user without a permission the project
 * needs (BullMQ's INFO; ioredis only warns). Either is one clear RotatorError (exit 1) instead of
 * silent work in the wrong database or stacks and a hang.
 */
export async function checkRedisAccess(client: RedisClient, url: string): Promise<void> {
  try {
    await client.info("server");
    const db = client instanceof Redis ? databaseIndex(url) : 0;
    if (db !== 0) await client.select(db);
  } catch (error) {
    throw refusals.get(client) ?? redisAccessError(error, url) ?? error;
  }
}

/** Connections closed because the server refused their database index, with the reason. */
const refusals = new WeakMap<RedisClient, RotatorError>();

/** A permission or database error of Redis as the one clear failure it is; undefined for others. */
export function redisAccessError(error: unknown, url: string): RotatorError | undefined {
  const message = error instanceof Error ? error.message.split("\n")[0]! : String(error);
  if (/^NOPERM\b/.test(message)) {
    return new RotatorError(
      "E_REDIS_PERMISSION",
      `Redis refused a command: the user of REDIS_URL lacks a permission the rotator needs (${message}); ` +
        "grant it with ACL SETUSER, or use another user",
    );
  }
  if (/DB index is out of range|invalid DB index/i.test(message)) {
    return new RotatorError(
      "E_REDIS_DATABASE",
      `Redis rejects the database index ${databaseIndex(url)} of REDIS_URL (${message}); ` +
        "use an index the server has (see its databases setting)",
    );
  }
  return undefined;
}

/** The database index REDIS_URL names (0 when none; settings checked it is a whole number). */
function databaseIndex(url: string): number {
  try {
    return Number(new URL(url).pathname.replace(/^\//, "") || 0);
  } catch {
    return 0;
  }
}

/**
 * A connection for a one-shot command (`rotate`, `status`): it fails fast, exit 1 with a clear
 * message, instead of waiting for an unreachable Redis forever.
 */
export async function connectOneShot(url: string, name: string, logger: Logger): Promise<Redis>;
export async function connectOneShot(
  target: RedisDeployment,
  name: string,
  logger: Logger,
): Promise<RedisClient>;
export async function connectOneShot(
  target: string | RedisDeployment,
  name: string,
  logger: Logger,
): Promise<RedisClient> {
  const deployment: RedisDeployment = typeof target === "string" ? { kind: "single", url: target } : target;
  const failFast = (times: number) => (times > 2 ? null : 200);
  // The failure is reported once, by the error thrown below; the connection's own warning stays quiet.
  const redis = createRedis(deployment, name, logger.child({}, { level: "error" }), {
    maxRetriesPerRequest: 1,
    connectTimeout: 3_000,
    retryStrategy: failFast,
    // checkRedisAccess asks INFO itself; ioredis's own check only warns on stderr when it may not.
    enableReadyCheck: false,
  });
  if (redis instanceof Cluster) redis.options.clusterRetryStrategy = failFast;
  let connectError: Error | undefined;
  redis.on("error", (error: Error) => (connectError = error));
  try {
    await withTimeout(redis.ping(), 10_000);
  } catch (error) {
    redis.disconnect();
    const access = redisAccessError(connectError ?? error, deployment.url);
    if (access) throw access;
    const why = (connectError ?? (error as Error)).message;
    throw new RotatorError(
      "E_REDIS_UNREACHABLE",
      `cannot reach Redis at ${describeDeployment(deployment)}: ${why}`,
    );
  }
  try {
    await withTimeout(checkRedisAccess(redis, deployment.url), 10_000);
  } catch (error) {
    redis.disconnect();
    throw error;
  }
  return redis;
}

/** Where the deployment is, for messages: never its credentials. */
export function describeDeployment(deployment: RedisDeployment): string {
  const list = (nodes: readonly HostPort[]) => nodes.map((n) => `${n.host}:${n.port}`).join(",");
  switch (deployment.kind) {
    case "single":
      return safeRedisUrl(deployment.url);
    case "cluster":
      return `the Redis Cluster at ${list(deployment.nodes)}`;
    case "sentinel":
      return `master ${deployment.master} of the Sentinels at ${list(deployment.sentinels)}`;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The Redis URL without its userinfo (user and password), for messages. */
export function safeRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    const hidden = parsed.username !== "" || parsed.password !== "";
    parsed.username = "";
    parsed.password = "";
    return hidden ? parsed.toString().replace("//", `//${REDACTED}@`) : parsed.toString();
  } catch {
    return "(REDIS_URL)";
  }
}
