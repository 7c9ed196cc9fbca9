import type { IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";
import { parseDuration } from "../../src/core/durations.js";
import { clientAddress, createRateLimiter, parseRateLimit } from "../../src/gateway/rate-limit.js";

/** The gateway's per-client rate limit of /join (src/gateway/rate-limit.ts). */
describe("parseRateLimit", () => {
  it("reads N/duration and 0 (off)", () => {
    expect(parseRateLimit("60/1m", parseDuration)).toEqual({ limit: 60, windowMs: 60_000 });
    expect(parseRateLimit(" 2/500ms ", parseDuration)).toEqual({ limit: 2, windowMs: 500 });
    expect(parseRateLimit("0", parseDuration)).toBe("off");
  });

  it("refuses anything else", () => {
    for (const text of ["", "60", "0/1m", "-1/1m", "1.5/1m", "60/", "60/soon", "60/0s", "/1m", "60 per 1m"]) {
      expect(parseRateLimit(text, parseDuration), text).toBeUndefined();
    }
  });
});

describe("createRateLimiter", () => {
  it("admits a burst of `limit`, then answers the seconds until one visit is back", () => {
    const limiter = createRateLimiter(2, 60_000);
    expect(limiter.take("a", 0)).toBe(0);
    expect(limiter.take("a", 0)).toBe(0);
    // 2 a minute: one visit back every 30 s.
    expect(limiter.take("a", 0)).toBe(30);
    expect(limiter.take("a", 15_000)).toBe(15);
    expect(limiter.take("a", 29_500)).toBe(1); // never 0 while refused: half a second rounds up
    expect(limiter.take("a", 30_000)).toBe(0);
    expect(limiter.take("a", 30_000)).toBe(30);
    // Another client has a bucket of its own.
    expect(limiter.take("b", 30_000)).toBe(0);
  });

  it("refills continuously, never above the limit", () => {
    const limiter = createRateLimiter(3, 3_000);
    for (let i = 0; i < 3; i++) expect(limiter.take("a", 0)).toBe(0);
    expect(limiter.take("a", 0)).toBe(1);
    // A long quiet spell gives back 3 visits, not more.
    for (let i = 0; i < 3; i++) expect(limiter.take("a", 3_600_000)).toBe(0);
    expect(limiter.take("a", 3_600_000)).toBeGreaterThan(0);
  });

  it("forgets the least recently seen client past maxClients (it starts full again)", () => {
    const limiter = createRateLimiter(1, 60_000, 2);
    expect(limiter.take("a", 0)).toBe(0);
    expect(limiter.take("b", 0)).toBe(0);
    expect(limiter.take("a", 1)).toBeGreaterThan(0); // a is now the most recently seen
    expect(limiter.take("c", 2)).toBe(0); // b is forgotten
    expect(limiter.take("a", 3)).toBeGreaterThan(0); // a was kept
    expect(limiter.take("b", 4)).toBe(0); // b starts full again (and c, the oldest now, goes)
    expect(limiter.take("a", 5)).toBeGreaterThan(0);
    expect(limiter.take("c", 6)).toBe(0);
  });
});

describe("clientAddress", () => {
  const request = (peer: string | undefined, forwarded?: string | string[]) =>
    ({
      socket: { remoteAddress: peer },
      headers: forwarded === undefined ? {} : { "x-forwarded-for": forwarded },
    }) as unknown as IncomingMessage;

  it("with no trusted proxy is the peer address, whatever X-Forwarded-For says", () => {
    expect(clientAddress(request("10.0.0.7"), 0)).toBe("10.0.0.7");
    expect(clientAddress(request("10.0.0.7", "1.2.3.4"), 0)).toBe("10.0.0.7");
    expect(clientAddress(request(undefined), 0)).toBe("unknown");
  });

  it("with N trusted proxies is the address N hops back, so a client cannot choose its own key", () => {
    // One proxy appended the client's address to what the client sent.
    expect(clientAddress(request("10.0.0.1", "203.0.113.9"), 1)).toBe("203.0.113.9");
    expect(clientAddress(request("10.0.0.1", "6.6.6.6, 203.0.113.9"), 1)).toBe("203.0.113.9");
    // Two proxies: the second appended the first's address.
    expect(clientAddress(request("10.0.0.2", "6.6.6.6, 203.0.113.9, 10.0.0.1"), 2)).toBe("203.0.113.9");
    // The header split over several lines reads as one list.
    expect(clientAddress(request("10.0.0.2", ["6.6.6.6, 203.0.113.9", "10.0.0.1"]), 2)).toBe("203.0.113.9");
    // Fewer hops than proxies: the first hop; no header at all: the peer.
    expect(clientAddress(request("10.0.0.2", "203.0.113.9"), 2)).toBe("203.0.113.9");
    expect(clientAddress(request("10.0.0.1"), 1)).toBe("10.0.0.1");
  });
});
