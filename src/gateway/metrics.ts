import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { METRIC_PREFIX } from "../infra/metrics.js";
import type { PoolState } from "../groups/pools.js";

/**
 * The gateway's own metrics, on the process registry:
 *
 * - `wa_rotator_gateway_visits_total{slug,outcome}`: `/join` visits by outcome (`redirected`,
 *   `page`, `previewed` (a counted URL's `HEAD`, answered without the link), `full`, `unavailable`
 *   (no link or mid-rotation), `expired`, `used-up`, `forbidden`, `unknown`, `rate-limited`,
 *   `error` (Redis down or slow included)). An unknown slug
 *   counts under the slug label `-`, so visitors cannot grow the label set.
 * - `wa_rotator_gateway_pool_groups{slug,state}`: a link's pool groups by state (`room`, `full`,
 *   `rotating`, `no-link`), read at scrape time.
 * - `wa_rotator_gateway_visit_duration_seconds`: time to answer a visit (waits included).
 */
export type VisitOutcome =
  | "redirected"
  | "page"
  | "previewed"
  | "full"
  | "unavailable"
  | "expired"
  | "used-up"
  | "forbidden"
  | "unknown"
  | "rate-limited"
  | "error";

export type { PoolState };

export interface GatewayMetrics {
  readonly visits: Counter<"slug" | "outcome">;
  readonly visitDuration: Histogram;
  readonly poolGroups: Gauge<"slug" | "state">;
}

export function createGatewayMetrics(
  registry: Registry,
  poolStates: () => Promise<Map<string, Record<PoolState, number>>>,
): GatewayMetrics {
  const registers = [registry];
  const poolGroups: Gauge<"slug" | "state"> = new Gauge({
    name: `${METRIC_PREFIX}gateway_pool_groups`,
    help: "Groups of each join link's pool by state (room, full, rotating, no-link)",
    labelNames: ["slug", "state"] as const,
    registers,
    async collect() {
      const states = await poolStates();
      poolGroups.reset();
      for (const [slug, counts] of states) {
        for (const [state, n] of Object.entries(counts)) poolGroups.set({ slug, state }, n);
      }
    },
  });
  return {
    visits: new Counter({
      name: `${METRIC_PREFIX}gateway_visits_total`,
      help: "Visits of /join/{slug} by outcome",
      labelNames: ["slug", "outcome"] as const,
      registers,
    }),
    visitDuration: new Histogram({
      name: `${METRIC_PREFIX}gateway_visit_duration_seconds`,
      help: "Time to answer a /join visit",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 2.5, 5],
      registers,
    }),
    poolGroups,
  };
}
