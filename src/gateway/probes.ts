import type { RedisClient } from "../infra/redis.js";
import type { Metrics } from "../infra/metrics.js";
import { send, type GatewayRoute } from "./server.js";

/**
 * `/healthz`, `/readyz` and `/metrics` on the gateway's port, as the other commands serve them:
 * ready once Redis answers and the link store has read every channel's C:latest.
 */
export function probeRoutes(options: {
  redis: RedisClient;
  metrics: Metrics;
  ready: () => boolean;
}): GatewayRoute[] {
  const { redis, metrics } = options;
  const json = (value: unknown) => JSON.stringify(value);
  return [
    {
      name: "healthz",
      methods: ["GET"],
      match: (path) => path === "/healthz",
      // The one role a gateway process runs (start, worker and scheduler name theirs the same way).
      handle: (_req, res) =>
        send(res, 200, "application/json; charset=utf-8", json({ status: "ok", roles: ["gateway"] })),
    },
    {
      name: "readyz",
      methods: ["GET"],
      match: (path) => path === "/readyz",
      async handle(_req, res) {
        const redisOk = await redisAnswers(redis);
        const links = options.ready();
        const ok = redisOk && links;
        const body = json({ status: ok ? "ready" : "not ready", ok, checks: { redis: redisOk, links } });
        send(res, ok ? 200 : 503, "application/json; charset=utf-8", body);
      },
    },
    {
      name: "metrics",
      methods: ["GET"],
      match: (path) => path === "/metrics",
      async handle(_req, res) {
        send(res, 200, metrics.contentType, await metrics.text());
      },
    },
  ];
}

/** Connected and answering PING within 500 ms (commands queue while down: check the status first). */
async function redisAnswers(redis: RedisClient): Promise<boolean> {
  if (redis.status !== "ready") return false;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(resolve, 500, false)));
  try {
    return await Promise.race([redis.ping().then((reply) => reply === "PONG"), timeout]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
