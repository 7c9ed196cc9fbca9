import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { toError } from "../core/errors.js";
import type { Logger } from "../infra/logger.js";
import { listen } from "../infra/http-listen.js";

/**
 * The gateway's HTTP server: the public side of the project. It knows no route itself; it takes
 * route handlers (`/join/{slug}`, the probes, the webhook receiver) and enforces what every request
 * gets: bounded URL, header count and header size, no body unless the route allows one (then a
 * bounded one, read with `readBody`), and a 500 instead of a crash when a handler throws.
 */

/** One route. The first route whose `match` accepts the path handles the request. */
export interface GatewayRoute {
  /** A name for logs and errors. */
  readonly name: string;
  /** Methods the route answers; others get 405 with `Allow`. `HEAD` is accepted where `GET` is. */
  readonly methods: readonly string[];
  /** Whether the route serves this path (the URL path, without the query). */
  match(path: string): boolean;
  /**
   * The largest request body the route accepts, in bytes; read it with `readBody`. Default 0: a
   * request with a body is answered 413 before the handler runs.
   */
  readonly maxBodyBytes?: number;
  handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> | void;
}

export interface GatewayServerOptions {
  port: number;
  /** Default `0.0.0.0`. */
  host?: string;
  routes: readonly GatewayRoute[];
  logger: Logger;
  /** Headers per request before 431. Default 64. */
  maxHeaders?: number;
}

export interface GatewayServer {
  readonly port: number;
  /** Base URL to reach it from this host. */
  readonly url: string;
  /** Stops listening and closes every connection. Idempotent. */
  close(): Promise<void>;
}

/** Longest request line target accepted (longer: 414). */
export const MAX_URL_LENGTH = 2_048;
/** Bytes of all request headers together (node's own limit; longer: 431). */
export const MAX_HEADER_BYTES = 8_192;
const DEFAULT_MAX_HEADERS = 64;

export async function startGatewayServer(options: GatewayServerOptions): Promise<GatewayServer> {
  const { routes, logger } = options;
  const host = options.host ?? "0.0.0.0";
  const maxHeaders = options.maxHeaders ?? DEFAULT_MAX_HEADERS;
  const log = logger.child({ component: "gateway-http" });

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const target = req.url ?? "/";
    if (target.length > MAX_URL_LENGTH) return sendText(res, 414, "URI too long\n");
    if (req.rawHeaders.length / 2 > maxHeaders) return sendText(res, 431, "too many headers\n");
    let url: URL;
    try {
      url = new URL(target, "http://gateway.invalid");
    } catch {
      return sendText(res, 400, "bad request\n");
    }
    const route = routes.find((r) => r.match(url.pathname));
    if (!route) return sendText(res, 404, "not found\n");
    const method = req.method ?? "GET";
    const allowed = allowedMethods(route);
    if (!allowed.includes(method)) {
      res.setHeader("Allow", allowed.join(", "));
      return sendText(res, 405, "method not allowed\n");
    }
    if ((route.maxBodyBytes ?? 0) === 0 && hasBody(req)) return sendText(res, 413, "no request body here\n");
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > (route.maxBodyBytes ?? 0)) return sendText(res, 413, "request body too large\n");
    await route.handle(req, res, url);
  };

  const server = createServer({ maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: 10_000 }, (req, res) => {
    handle(req, res).catch((error: unknown) => {
      log.error({ err: toError(error), path: pathOnly(req.url) }, "gateway request failed");
      if (!res.headersSent) sendText(res, 500, "internal error\n");
      else res.destroy();
    });
  });
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  // Node drops headers past this count; the 431 above answers before a handler sees a short list.
  server.maxHeadersCount = maxHeaders + 1;

  return listen(server, { port: options.port, host, name: "gateway", log });
}

const allowedByRoute = new WeakMap<GatewayRoute, readonly string[]>();

/** The methods a route answers: its own, and `HEAD` where it answers `GET` (worked out once). */
function allowedMethods(route: GatewayRoute): readonly string[] {
  let allowed = allowedByRoute.get(route);
  if (allowed === undefined) {
    allowed = route.methods.includes("GET") ? [...new Set([...route.methods, "HEAD"])] : route.methods;
    allowedByRoute.set(route, allowed);
  }
  return allowed;
}

/** Whether the request carries a body (a length above 0, or chunked). */
function hasBody(req: IncomingMessage): boolean {
  if (req.headers["transfer-encoding"] !== undefined) return true;
  return Number(req.headers["content-length"] ?? 0) > 0;
}

/** An error a route's body read reports; the route answers it with its status. */
export class BodyTooLargeError extends Error {
  readonly code = "E_BODY_TOO_LARGE";
}

/**
 * Reads a request body of at most `limit` bytes (a chunked one too). Past the limit it stops
 * reading and throws `BodyTooLargeError`: answer 413.
 */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new BodyTooLargeError(`request body larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** A short plain-text answer (`HEAD` gets the headers only). Never cached. */
export function sendText(
  res: ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
) {
  send(res, status, "text/plain; charset=utf-8", body, headers);
}

/** The headers `send` always writes, lower-cased, in its list's order (a route's value replaces). */
const BASE_HEADERS = ["content-type", "content-length", "cache-control", "x-content-type-options"];

/** Sends a complete answer with `Cache-Control: no-store` and a length. */
export function send(
  res: ServerResponse,
  status: number,
  type: string,
  body: string,
  headers: Record<string, string> = {},
): void {
  // One writeHead with a flat list: no header map built per answer (merged with any set before).
  const list: string[] = [
    "Content-Type",
    type,
    "Content-Length",
    String(Buffer.byteLength(body)),
    "Cache-Control",
    "no-store",
    "X-Content-Type-Options",
    "nosniff",
  ];
  for (const name in headers) {
    const lower = name.toLowerCase();
    const at = BASE_HEADERS.indexOf(lower);
    if (at >= 0) list[2 * at + 1] = headers[name]!;
    else list.push(name, headers[name]!);
  }
  res.writeHead(status, list);
  res.end(res.req.method === "HEAD" ? undefined : body);
}

function pathOnly(url: string | undefined): string {
  return (url ?? "/").split("?", 1)[0]!.slice(0, 200);
}
