import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { Cluster } from "ioredis";
import type { RedisClient } from "../infra/redis.js";
import type { Logger } from "../infra/logger.js";
import { listen } from "../infra/http-listen.js";
import type { Metrics } from "../infra/metrics.js";
import { toError } from "../core/errors.js";

/** How long `/readyz` waits for the readiness checks before it answers 503. */
export const DEFAULT_READY_TIMEOUT_MS = 1_000;

/** What the readiness function reports: `ok` decides 200 vs 503; `checks` is the body's detail. */
export interface Readiness {
  readonly ok: boolean;
  readonly checks: Record<string, boolean | string>;
}

export interface HealthServerOptions {
  /** TCP port; 0 picks any free port (tests). */
  port: number;
  /** Interface to bind. Default `0.0.0.0` (probes come from outside the container). */
  host?: string;
  metrics: Metrics;
  /** The roles the process runs, reported by `/healthz` (absent: not reported). */
  roles?: readonly string[];
  /** Readiness checks (Redis answers, policy file loaded). Bounded by `readyTimeoutMs`. */
  ready: () => Promise<Readiness>;
  logger: Logger;
  /** Bound of `ready()`. Default 1 s. */
  readyTimeoutMs?: number;
}

/** A running health server. */
export interface HealthServer {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** Base URL to reach it from this host, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  /** Stops listening and closes every connection, keep-alive ones included. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts the HTTP server of the probes and the scrape:
 *
 * - `GET /healthz`: 200 `{"status":"ok","roles":[…]}` while the process runs; touches nothing else
 *   (no Redis). `roles` is what the process runs (`worker`, `scheduler`, `health`).
 * - `GET /readyz`: 200 when `ready()` reports ok, else 503; the body lists the checks. A `ready()`
 *   that takes longer than `readyTimeoutMs` (1 s) answers 503 with a `timeout` check.
 * - `GET /metrics`: the Prometheus text exposition of `metrics`.
 *
 * `HEAD` works wherever `GET` does. Other methods get 405, other paths 404.
 *
 * Contract: `HEALTH_PORT=0` turns the server off. That is the caller's job: it does not call this
 * function at all then (here, port 0 means "any free port", which tests rely on).
 *
 * Resolves once listening; rejects if the port cannot be bound. Request errors are logged and
 * answered with 500, never thrown.
 */
export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const { metrics, logger } = options;
  const host = options.host ?? "0.0.0.0";
  const log = logger.child({ component: "health" });
  const readiness = boundedReadiness(options.ready, options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS, log);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? "/").split("?", 1)[0];
    if (path !== "/healthz" && path !== "/readyz" && path !== "/metrics") {
      return send(req, res, 404, json({ status: "not found" }));
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      return send(req, res, 405, json({ status: "method not allowed" }));
    }
    if (path === "/healthz") return send(req, res, 200, json({ status: "ok", roles: options.roles }));
    if (path === "/readyz") {
      const result = await readiness();
      return send(
        req,
        res,
        result.ok ? 200 : 503,
        json({ status: result.ok ? "ready" : "not ready", ...result }),
      );
    }
    const text = await metrics.text();
    return send(req, res, 200, { type: metrics.contentType, body: text });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      log.error({ err: toError(error), path: req.url }, "health server request failed");
      if (!res.headersSent) send(req, res, 500, json({ status: "error" }));
      else res.destroy();
    });
  });
  // Probes may keep connections alive; close() ends them with closeAllConnections().
  server.keepAliveTimeout = 5_000;

  const listening = await listen(server, { port: options.port, host, name: "health", log });
  log.info({ port: listening.port, host }, "health server listening");
  return listening;
}

/**
 * A readiness check of one Redis connection: false unless the client is connected (`status` is
 * `ready`) and answers within `timeoutMs`. Connections made with `maxRetriesPerRequest: null`
 * queue commands while down, so the status check keeps the probe from waiting on that queue.
 *
 * On one node (or a Sentinel-managed master) the probe is a PING. In a Cluster, a PING proves only
 * that some node answers: the probe reads one key of every hash slot the project needs (`slotKeys`:
 * its own keys' slot and each channel's), so a slot that no node serves makes the process not ready.
 */
export function redisReadiness(
  redis: RedisClient,
  options: { timeoutMs?: number; slotKeys?: () => readonly string[] } = {},
): () => Promise<boolean> {
  const timeoutMs = options.timeoutMs ?? 500;
  const probe = async (): Promise<boolean> => {
    if (!(redis instanceof Cluster) || !options.slotKeys) return (await redis.ping()) === "PONG";
    await Promise.all(options.slotKeys().map((key) => redis.exists(key)));
    return true;
  };
  return async () => {
    if (redis.status !== "ready") return false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    try {
      return await Promise.race([probe(), timeout]);
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  };
}

/**
 * `ready()` bounded by a timeout: probes that arrive while a call is pending share it; once it
 * has timed out, the next probe starts a fresh call, so one stuck call cannot pin /readyz at 503.
 * A throw counts as not ready (logged, not put in the body).
 */
function boundedReadiness(
  ready: () => Promise<Readiness>,
  timeoutMs: number,
  log: Logger,
): () => Promise<Readiness> {
  let inFlight: Promise<Readiness> | undefined;
  const timedOut: Readiness = {
    ok: false,
    checks: { timeout: `readiness checks took longer than ${timeoutMs} ms` },
  };

  const begin = (): Promise<Readiness> => {
    const call = Promise.resolve()
      .then(ready)
      .catch((error: unknown): Readiness => {
        log.warn({ err: { message: toError(error).message } }, "readiness check threw");
        return { ok: false, checks: { error: "readiness check failed" } };
      });
    inFlight = call;
    void call.finally(() => {
      if (inFlight === call) inFlight = undefined;
    });
    return call;
  };

  return async () => {
    const call = inFlight ?? begin();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    });
    try {
      const result = await Promise.race([call, timeout]);
      if (result) return result;
      if (inFlight === call) inFlight = undefined;
      log.warn({ timeoutMs }, "readiness checks timed out");
      return timedOut;
    } finally {
      clearTimeout(timer);
    }
  };
}

interface Reply {
  readonly type: string;
  readonly body: string;
}

function json(value: unknown): Reply {
  return { type: "application/json; charset=utf-8", body: JSON.stringify(value) };
}

function send(req: IncomingMessage, res: ServerResponse, status: number, reply: Reply): void {
  res.statusCode = status;
  res.setHeader("Content-Type", reply.type);
  res.setHeader("Content-Length", Buffer.byteLength(reply.body));
  res.setHeader("Cache-Control", "no-store");
  // HEAD: same status and headers, no body.
  res.end(req.method === "HEAD" ? undefined : reply.body);
}
