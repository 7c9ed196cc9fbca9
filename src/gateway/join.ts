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
 * the signature of a signed URL (403 bad or missing, 410 expired), the pool (503 with Retry-After
 * when no group has room and a link), a signed URL's visit count (410 used up), then `302` to the
 * chosen group's current link, or for a desktop browser a page with its QR code.
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
/** The name the visit-count script is defined under on the gateway's connection. */
const COUNT_VISIT_COMMAND = "waRotatorCountVisit";
/** Retry-After when every group is full: participants leave slowly, the operator adds groups. */
const RETRY_FULL_S = 60;
/** Retry-After when links are missing or mid-rotation: a rotation takes seconds. */
const RETRY_SOON_S = 5;
/** Re-inspect at least this often while waiting (a lock released without a new message wakes no one). */
const RECHECK_MS = 100;

export function joinRoute(deps: JoinDeps): GatewayRoute {
  const turns = new Map<string, number>();
  const log = deps.logger.child({ component: "join" });
  // The visit count's script is sent once and then called by its SHA (EVALSHA), not per visit.
  deps.redis.defineCommand(COUNT_VISIT_COMMAND, { numberOfKeys: 1, lua: COUNT_VISIT });
  const countVisit = (key: string, expiresAt: string) =>
    (deps.redis as unknown as Record<string, (key: string, at: string) => Promise<number>>)[
      COUNT_VISIT_COMMAND
    ]!(key, expiresAt);
  // One read of a pool at a time, shared by the visits that arrived while the last one was out.
  const read = freshReads((link: ResolvedLink) => deps.store.inspect(deps.store.members(link)));

  const choose = async (link: ResolvedLink, res: ServerResponse): Promise<Choice> => {
    const deadline = deps.clock.now() + deps.rotationWaitMs;
    for (;;) {
      const turn = turns.get(link.slug) ?? 0;
      turns.set(link.slug, turn + 1);
      const views = await read(link);
      const choice = chooseGroup(views, link.capacity, turn);
      const left = deadline - deps.clock.now();
      if (choice.kind !== "rotating" || left <= 0 || res.destroyed) return choice;
      await deps.store.changed(Math.min(left, RECHECK_MS));
    }
  };

  const visit = async (
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
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
    const choice = await choose(link, res);
    if (choice.kind !== "group") {
      const full = choice.kind === "full";
      const body = full ? "every group of this link is full\n" : "no group of this link is open right now\n";
      sendText(res, 503, body, { "Retry-After": String(full ? RETRY_FULL_S : RETRY_SOON_S) });
      return [slug, full ? "full" : "unavailable"];
    }
    if (signature.kind === "valid" && signature.terms.uses !== undefined) {
      // Counted only once a group is chosen: a visit answered 503 does not use up the URL.
      const key = deps.keys.linkVisits(slug, signature.sig);
      const count = Number(await countVisit(key, String(signature.terms.exp * 1000)));
      if (count > signature.terms.uses) {
        sendText(res, 410, "this join link has been used up\n");
        return [slug, "expired"];
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
        labels = await visit(req, res, url);
      } catch (error) {
        log.warn({ err: { message: (error as Error).message } }, "visit failed");
        if (!res.headersSent)
          sendText(res, 503, "try again shortly\n", { "Retry-After": String(RETRY_SOON_S) });
        labels = ["-", "error"];
      }
      deps.metrics.visits.inc({ slug: labels[0], outcome: labels[1] });
      deps.metrics.visitDuration.observe((performance.now() - started) / 1000);
    },
  };
}
