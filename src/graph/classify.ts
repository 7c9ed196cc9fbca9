import type { FailureScope, RetryAction } from "../core/interfaces.js";
import { GraphError, type GraphErrorCode, type GraphOperation } from "./errors.js";
import { retryAfterMs, type ResponseHeaders } from "./usage.js";

/**
 * The one place that decides what a failed Graph call means (graph-api-facts.md, "Error
 * responses"). Acts on Graph's `code` when there is one, on the HTTP status otherwise.
 */

/** What a failed call looked like. Give `networkError` when no response came. */
export interface GraphFailure {
  readonly operation: GraphOperation;
  readonly groupId?: string | undefined;
  readonly account?: string | undefined;
  readonly status?: number | undefined;
  readonly headers?: ResponseHeaders | undefined;
  /** The response body: parsed JSON, raw text or bytes, or undefined for none. */
  readonly body?: unknown;
  /** The error thrown instead of (or while reading) a response. */
  readonly networkError?: unknown;
  /** For a 2xx whose body is not the expected shape: what was wrong with it. */
  readonly badResponse?: string | undefined;
  /** Token values that must not appear in the message. */
  readonly secrets?: readonly string[] | undefined;
}

interface Meaning {
  readonly code: GraphErrorCode;
  readonly action: RetryAction;
  readonly scope: FailureScope;
}

const meaning = (code: GraphErrorCode, action: RetryAction, scope: FailureScope): Meaning => ({
  code,
  action,
  scope,
});

const TRANSIENT = meaning("GRAPH_TRANSIENT", "retry", "request");
const THROTTLED = meaning("GRAPH_THROTTLED", "throttle", "account");
const PERMISSION = meaning("GRAPH_PERMISSION", "stop", "account");

/** Graph error code → meaning, exactly the facts table. Codes 200–299 are PERMISSION too. */
const BY_GRAPH_CODE = new Map<number, Meaning>([
  ...[1, 2, 131000, 131016, 131057].map((c) => [c, TRANSIENT] as const),
  ...[4, 17, 32, 613, 80007, 80008, 130429].map((c) => [c, THROTTLED] as const),
  [131208, meaning("GRAPH_THROTTLED", "throttle", "number")],
  ...[0, 190].map((c) => [c, meaning("GRAPH_AUTH", "stop", "account")] as const),
  [10, PERMISSION],
  ...[100, 131008, 131009].map((c) => [c, meaning("GRAPH_INVALID_REQUEST", "stop", "request")] as const),
  [131041, meaning("GRAPH_GROUP_UNKNOWN", "stop", "group")],
  [131207, meaning("GRAPH_GROUP_SUSPENDED", "stop", "group")],
  [131215, meaning("GRAPH_NOT_ELIGIBLE", "stop", "number")],
  ...[368, 131031].map((c) => [c, meaning("GRAPH_BLOCKED", "stop", "account")] as const),
]);

export function meaningOfGraphCode(graphCode: number): Meaning | undefined {
  if (graphCode >= 200 && graphCode <= 299) return PERMISSION;
  return BY_GRAPH_CODE.get(graphCode);
}

const TIMEOUT_CODES = new Set([
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "ETIMEDOUT",
  "TimeoutError",
]);

/** Turns one failed call into a GraphError. Never throws. */
export function classifyGraphFailure(failure: GraphFailure): GraphError {
  const base = {
    operation: failure.operation,
    groupId: failure.groupId,
    account: failure.account,
    status: failure.status,
    secrets: failure.secrets,
    retryAfterMs: retryAfterMs(failure.headers),
  };

  if (failure.networkError !== undefined) {
    const error = failure.networkError;
    const code = errorCode(error);
    const timedOut = code !== undefined && TIMEOUT_CODES.has(code);
    const message = error instanceof Error ? error.message : String(error);
    return new GraphError({
      ...base,
      ...(timedOut
        ? meaning("GRAPH_TIMEOUT", "retry", "request")
        : meaning("GRAPH_NETWORK", "retry", "request")),
      detail: `${timedOut ? "timed out" : "network error"}${code ? ` (${code})` : ""}: ${message}`,
      cause: error,
    });
  }

  const body = readBody(failure.body);
  const graph = body.kind === "json" ? graphErrorOf(body.value) : undefined;
  if (graph?.code !== undefined) {
    const known = meaningOfGraphCode(graph.code);
    const fallback = graph.isTransient ? TRANSIENT : byStatus(failure.status);
    return new GraphError({
      ...base,
      ...(known ?? fallback),
      graphCode: graph.code,
      subcode: graph.subcode,
      fbtraceId: graph.fbtraceId,
      isTransient: graph.isTransient,
      detail: graph.detail,
    });
  }

  const status = failure.status;
  if (status !== undefined && status >= 200 && status < 300) {
    return new GraphError({
      ...base,
      ...meaning("GRAPH_BAD_RESPONSE", "retry", "request"),
      detail: `unexpected response: ${failure.badResponse ?? describeBody(body)}`,
    });
  }
  // HTML, text or nothing instead of Graph's JSON: a proxy or load balancer answered, whatever the
  // status (a WAF's 403 page), so nothing is known about the request itself: retry, bounded. A 429
  // still throttles the account, whoever sent it.
  const fromProxy = body.kind !== "json" && status !== 429;
  return new GraphError({
    ...base,
    ...(graph?.isTransient || fromProxy ? TRANSIENT : byStatus(status)),
    detail: graph ? graph.detail : describeBody(body),
  });
}

/** Meaning of a failure without a Graph code (or with one the table does not know). */
function byStatus(status: number | undefined): Meaning {
  if (status === undefined || status >= 500) return TRANSIENT;
  if (status === 429) return THROTTLED;
  // A proxy's request timeout: nothing wrong with the request itself.
  if (status === 408) return TRANSIENT;
  return meaning("GRAPH_UNKNOWN", "stop", "request");
}

type Body = { kind: "empty" } | { kind: "json"; value: unknown } | { kind: "text"; text: string };

function readBody(body: unknown): Body {
  if (body === undefined || body === null) return { kind: "empty" };
  if (typeof body !== "string" && !(body instanceof Uint8Array)) return { kind: "json", value: body };
  const text = (typeof body === "string" ? body : Buffer.from(body).toString("utf8")).trim();
  if (text === "") return { kind: "empty" };
  try {
    return { kind: "json", value: JSON.parse(text) as unknown };
  } catch {
    return { kind: "text", text };
  }
}

function describeBody(body: Body): string {
  if (body.kind === "empty") return "empty body";
  if (body.kind === "json") return `JSON without an error object: ${safeJson(body.value)}`;
  const html = /^<(!doctype|html|head|body)/i.test(body.text);
  const title = /<title>([^<]*)<\/title>/i.exec(body.text)?.[1]?.trim();
  if (html) return `HTML response${title ? ` "${title}"` : ""} (${body.text.length} chars)`;
  return `non-JSON response: ${body.text}`;
}

interface GraphErrorFields {
  code?: number;
  subcode?: number;
  fbtraceId?: string;
  isTransient?: boolean;
  detail: string;
}

/** Reads `{"error":{message,type,code,error_subcode,error_data,is_transient,fbtrace_id}}`, tolerantly. */
function graphErrorOf(value: unknown): GraphErrorFields | undefined {
  const error = (value as { error?: unknown } | null)?.error;
  if (error === null || typeof error !== "object") return undefined;
  const e = error as Record<string, unknown>;
  const message = typeof e.message === "string" ? e.message : "no message";
  const details = errorDataDetails(e.error_data);
  const userMsg =
    typeof e.error_user_msg === "string" && e.error_user_msg !== message ? e.error_user_msg : "";
  const extra = [details, userMsg].filter((s) => s !== "").join("; ");
  const fields: GraphErrorFields = { detail: extra ? `${message} (${extra})` : message };
  const code = integer(e.code);
  if (code !== undefined) fields.code = code;
  const subcode = integer(e.error_subcode);
  if (subcode !== undefined) fields.subcode = subcode;
  if (typeof e.fbtrace_id === "string") fields.fbtraceId = e.fbtrace_id;
  if (e.is_transient === true || e.is_transient === "true") fields.isTransient = true;
  else if (e.is_transient === false || e.is_transient === "false") fields.isTransient = false;
  return fields;
}

/** `error_data` is an object in WhatsApp responses and a JSON string in other Graph APIs. */
function errorDataDetails(data: unknown): string {
  let value = data;
  if (typeof data === "string") {
    try {
      value = JSON.parse(data) as unknown;
    } catch {
      return data.trim();
    }
  }
  const details = (value as { details?: unknown } | null)?.details;
  return typeof details === "string" ? details : "";
}

function integer(value: unknown): number | undefined {
  const n = typeof value === "string" && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
  return typeof n === "number" && Number.isInteger(n) ? n : undefined;
}

/** The error's `code` (or name), looking through `cause` as undici and fetch wrap them. */
function errorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current !== null && typeof current === "object"; depth++) {
    const { code, name } = current as { code?: unknown; name?: unknown };
    if (typeof code === "string" && code !== "") return code;
    if (name === "TimeoutError") return name;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
