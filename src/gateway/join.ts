import type { IncomingMessage, ServerResponse } from "node:http";
import type { RedisClient } from "../infra/redis.js";
import type { Clock } from "../core/interfaces.js";
import type { Keys } from "../core/keys.js";
import type { Logger } from "../infra/logger.js";
import type { ResolvedLink } from "../config/links.js";
import { chooseGroup, type Choice } from "./choose.js";
import { freshReads } from "./fresh-reads.js";
import type { LinkStore } from "./link-store.js";
import type { GatewayMetrics, VisitOutcome } from "./metrics.js";
import { isPhone, joinPage, PAGE_HEADERS, wantsHtml } from "./page.js";
import { clientAddress, type RateLimiter } from "./rate-limit.js";
import { send, sendText, type GatewayRoute } from "./server.js";
import { checkSignature, COUNT_VISIT } from "./signed.js";

/**
 * `GET /join/{slug}`: the stable join URL. In order: the client's rate limit (429), the slug (404),
 * the signature of a signed URL (403 bad or missing, 410 expired), the pool, a counted URL's visit
 * (410 used up, counted atomically), then `302` to the chosen group's current link, or for a
 * desktop browser a page with its QR code. When no group has room and a link the answer is `503`
 * with Retry-After, but `410` for a counted URL already used up (its count read, not counted).
 *
 * `HEAD` (link previews) is answered as `GET` but never counts a visit: a counted URL's `HEAD`
 * that `GET` would have sent to a group gets `200` without the link.
 *
 * Redis down or stalled: the visit's Redis work has a deadline (the rotation wait plus
 * `REDIS_GRACE_MS`), and while the connection is not ready a visit sends no command at all (its
 * commands would queue until Redis is back, and a visit count could land after its visitor had
 * been told 503): `503` with `Retry-After`. A deadline per visit rather than ioredis's
 * `commandTimeout`: the connection is shared with the link store's subscriptions (which duplicate
 * its options) and the webhook receiver, and a command it times out still runs once Redis is back.
 *
 * The only redirect targets are links read from Redis that match `https://chat.whatsapp.com/<code>`:
 * nothing in the request can choose where a visitor is sent.
 */
export interface JoinDeps {
  readonly links: ReadonlyMap<string, ResolvedLink>;
  readonly store: LinkStore;
  readonly redis: RedisClient;
  readonly keys: Keys;
  readonly linkSecret: string | undefined;
  /** Absent: no rate limit. */
  readonly limiter: RateLimiter | undefined;
  readonly trustedProxies: number;
  /** How long a visit may wait for a rotating group's new link. */
  readonly rotationWaitMs: number;
  readonly metrics: GatewayMetrics;
  readonly clock: Clock;
  readonly logger: Logger;
}

const PREFIX = "/join/";
const USED_UP = "this join link has been used up\n";
/** The name the visit-count script is defined under on the gateway's connection. */
const COUNT_VISIT_COMMAND = "waRotatorCountVisit";
/** Retry-After when every group is full: participants leave slowly, the operator adds groups. */
const RETRY_FULL_S = 60;
/** Retry-After when links are missing or mid-rotation: a rotation takes seconds. */
const RETRY_SOON_S = 5;
/** Re-inspect at least this often while waiting (a lock released without a new message wakes no one). */
const RECHECK_MS = 100;
/** A visit's Redis work may take the rotation wait plus this before the visit answers 503. */
export const REDIS_GRACE_MS = 1_000;
/** "visit failed" is logged at most once per this (an outage would log every visit). */
const FAILURE_LOG_MS = 10_000;

/** A signed URL with a visit limit: its counter's key, the limit and the URL's expiry (s). */
interface Counted {
  readonly key: string;
  readonly uses: number;
  readonly exp: number;
}

/** Redis did not answer a visit in time, or the connection is down. */
class RedisUnavailableError extends Error {}

export function joinRoute(deps: JoinDeps): GatewayRoute {
  const turns = new Map<string, number>();
  const log = deps.logger.child({ component: "join" });
  let lastFailureLog = Number.NEGATIVE_INFINITY;
  // The visit count's script is sent once and then called by its SHA (EVALSHA), not per visit.
  deps.redis.defineCommand(COUNT_VISIT_COMMAND, { numberOfKeys: 1, lua: COUNT_VISIT });
  const countVisit = (key: string, expiresAt: string, uses: string) =>
    (deps.redis as unknown as Record<string, (key: string, at: string, uses: string) => Promise<number>>)[
      COUNT_VISIT_COMMAND
    ]!(key, expiresAt, uses);
  // One read of a pool at a time, shared by the visits that arrived while the last one was out.
  const read = freshReads((link: ResolvedLink) => deps.store.inspect(deps.store.members(link)));

  /** `work` (Redis commands), or RedisUnavailableError when the connection is down or `deadline` passes. */
  const inTime = async <T>(deadline: number, work: () => Promise<T>): Promise<T> => {
    if (deps.redis.status !== "ready") throw new RedisUnavailableError(`redis is ${deps.redis.status}`);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new RedisUnavailableError("redis did not answer in time")),
        Math.max(0, deadline - performance.now()),
      );
    });
    try {
      return await Promise.race([work(), late]);
    } finally {
      clearTimeout(timer);
    }
  };

  /** Whether a counted URL has been used up: its count read, not counted (one GET). */
  const usedUp = async (counted: Counted, redisDeadline: number) =>
    Number(await inTime(redisDeadline, () => deps.redis.get(counted.key))) >= counted.uses;

  /**
   * The pool's choice, waiting a bounded moment for a rotating group. A counted URL that finds no
   * group at once is checked for being used up before any answer or wait: 410 beats 503.
   */
  const choose = async (
    link: ResolvedLink,
    res: ServerResponse,
    counted: Counted | undefined,
    redisDeadline: number,
  ): Promise<Choice | { readonly kind: "used-up" }> => {
    const deadline = deps.clock.now() + deps.rotationWaitMs;
    for (let first = true; ; first = false) {
      const turn = turns.get(link.slug) ?? 0;
      turns.set(link.slug, turn + 1);
      const views = await inTime(redisDeadline, () => read(link));
      const choice = chooseGroup(views, link.capacity, turn);
      if (first && counted && choice.kind !== "group" && (await usedUp(counted, redisDeadline))) {
        return { kind: "used-up" };
      }
      const left = deadline - deps.clock.now();
      // The visitor left: no more waiting.
      if (choice.kind !== "rotating" || left <= 0 || res.destroyed) return choice;
      await deps.store.changed(Math.min(left, RECHECK_MS));
    }
  };

  const visit = async (
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    redisDeadline: number,
  ): Promise<[string, VisitOutcome]> => {
    if (deps.limiter) {
      const wait = deps.limiter.take(clientAddress(req, deps.trustedProxies), deps.clock.now());
      if (wait > 0) {
        sendText(res, 429, "too many requests\n", { "Retry-After": String(wait) });
        return ["-", "rate-limited"];
      }
    }
    const slug = url.pathname.slice(PREFIX.length);
    const link = deps.links.get(slug);
    if (!link) {
      sendText(res, 404, "unknown join link\n");
      return ["-", "unknown"];
    }
    const signature = checkSignature(slug, url.searchParams, deps.linkSecret, deps.clock.now());
    if (signature.kind === "bad" || (signature.kind === "none" && link.signed)) {
      sendText(res, 403, "this join link needs a valid signature\n");
      return [slug, "forbidden"];
    }
    if (signature.kind === "expired") {
      sendText(res, 410, "this join link has expired\n");
      return [slug, "expired"];
    }
    const counted: Counted | undefined =
      signature.kind === "valid" && signature.terms.uses !== undefined
        ? {
            key: deps.keys.linkVisits(slug, signature.sig),
            uses: signature.terms.uses,
            exp: signature.terms.exp,
          }
        : undefined;
    const choice = await choose(link, res, counted, redisDeadline);
    if (choice.kind === "used-up") {
      sendText(res, 410, USED_UP);
      return [slug, "used-up"];
    }
    if (choice.kind !== "group") {
      const full = choice.kind === "full";
      const body = full ? "every group of this link is full\n" : "no group of this link is open right now\n";
      sendText(res, 503, body, { "Retry-After": String(full ? RETRY_FULL_S : RETRY_SOON_S) });
      return [slug, full ? "full" : "unavailable"];
    }
    if (counted) {
      // A HEAD (a link preview) counts no visit, so it is not given the link a visit would get.
      if (req.method === "HEAD") {
        if (await usedUp(counted, redisDeadline)) {
          sendText(res, 410, USED_UP);
          return [slug, "used-up"];
        }
        sendText(res, 200, "open this join link with GET to be sent to a group\n");
        return [slug, "previewed"];
      }
      // Counted only once a group is chosen: a visit answered 503 does not use up the URL.
      const expiresAt = String(counted.exp * 1000);
      const uses = String(counted.uses);
      const count = Number(await inTime(redisDeadline, () => countVisit(counted.key, expiresAt, uses)));
      if (count > counted.uses) {
        sendText(res, 410, USED_UP);
        return [slug, "used-up"];
      }
    }
    const headers = { Vary: "Accept, User-Agent", "Referrer-Policy": "no-referrer" };
    if (wantsHtml(req.headers.accept) && !isPhone(req.headers["user-agent"])) {
      send(res, 200, "text/html; charset=utf-8", joinPage(choice.link), { ...headers, ...PAGE_HEADERS });
      return [slug, "page"];
    }
    send(res, 302, "text/plain; charset=utf-8", `${choice.link}\n`, { ...headers, Location: choice.link });
    return [slug, "redirected"];
  };

  return {
    name: "join",
    methods: ["GET"],
    match: (path) => path.startsWith(PREFIX),
    async handle(req, res, url) {
      const started = performance.now();
      let labels: [string, VisitOutcome];
      try {
        labels = await visit(req, res, url, started + deps.rotationWaitMs + REDIS_GRACE_MS);
      } catch (error) {
        if (started - lastFailureLog >= FAILURE_LOG_MS) {
          lastFailureLog = started;
          const unavailable = error instanceof RedisUnavailableError;
          log.warn({ err: { message: (error as Error).message }, unavailable }, "visit failed");
        }
        if (!res.headersSent)
          sendText(res, 503, "try again shortly\n", { "Retry-After": String(RETRY_SOON_S) });
        labels = ["-", "error"];
      }
      deps.metrics.visits.inc({ slug: labels[0], outcome: labels[1] });
      deps.metrics.visitDuration.observe((performance.now() - started) / 1000);
    },
  };
}
