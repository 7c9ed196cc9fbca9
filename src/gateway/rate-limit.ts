import type { IncomingMessage } from "node:http";

/**
 * Per-client rate limit of `/join`: a token bucket per client address, `limit` visits per
 * `windowMs` (refilled continuously, bursts up to `limit`). Memory is bounded: past `maxClients`
 * buckets the oldest are forgotten (a forgotten client starts full again, the safe side for users).
 */
export interface RateLimiter {
  /** 0 when admitted, else the seconds to wait (for `Retry-After`). */
  take(client: string, now: number): number;
}

export function createRateLimiter(limit: number, windowMs: number, maxClients = 100_000): RateLimiter {
  const perMs = limit / windowMs;
  const buckets = new Map<string, { tokens: number; at: number }>();
  return {
    take(client, now) {
      let bucket = buckets.get(client);
      if (bucket === undefined) {
        if (buckets.size >= maxClients) {
          const oldest = buckets.keys().next();
          if (!oldest.done) buckets.delete(oldest.value);
        }
        bucket = { tokens: limit, at: now };
      } else {
        buckets.delete(client);
        bucket.tokens = Math.min(limit, bucket.tokens + (now - bucket.at) * perMs);
        bucket.at = now;
      }
      // Re-inserted on every visit: the map's order is least recently seen first.
      buckets.set(client, bucket);
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return 0;
      }
      return Math.max(1, Math.ceil((1 - bucket.tokens) / perMs / 1000));
    },
  };
}

/** Parses `GATEWAY_RATE_LIMIT`: `N/duration` (e.g. `30/1m`) or `0` (off). */
export function parseRateLimit(
  text: string,
  parseDuration: (t: string) => number | undefined,
): { limit: number; windowMs: number } | "off" | undefined {
  if (text.trim() === "0") return "off";
  const match = /^(\d+)\/(.+)$/.exec(text.trim());
  if (!match) return undefined;
  const limit = Number(match[1]);
  const windowMs = parseDuration(match[2]!);
  if (!Number.isSafeInteger(limit) || limit < 1 || windowMs === undefined || windowMs <= 0) return undefined;
  return { limit, windowMs };
}

/**
 * The client a request counts against: the peer address, or with `trustedProxies` = N > 0 the
 * address N hops back in `X-Forwarded-For` (the one the N-th trusted proxy saw), so a client cannot
 * pick its own key by sending the header itself.
 */
export function clientAddress(req: IncomingMessage, trustedProxies: number): string {
  const peer = req.socket.remoteAddress ?? "unknown";
  if (trustedProxies <= 0) return peer;
  const header = req.headers["x-forwarded-for"];
  const hops = (Array.isArray(header) ? header.join(",") : (header ?? ""))
    .split(",")
    .map((h) => h.trim())
    .filter((h) => h !== "");
  return hops[hops.length - trustedProxies] ?? hops[0] ?? peer;
}
