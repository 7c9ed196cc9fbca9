import { Pool, type Dispatcher } from "undici";
import type { AccountContext, GraphPort } from "../core/interfaces.js";
import { USER_AGENT } from "../core/version.js";
import { groupIdProblem, isGroupId } from "../core/group-id.js";
import { classifyGraphFailure } from "./classify.js";
import { GraphError, type GraphOperation } from "./errors.js";
import {
  parseDeleteResponse,
  parseGroupResponse,
  parseParticipantCount,
  parseGroupsPage,
  parseCurrentLinkResponse,
  parseInviteLinkResponse,
  type GraphGroup,
  type Parsed,
} from "./response.js";
import { parseUsage, type GraphUsage } from "./usage.js";

/** Options of the Graph client. Timeouts in ms. */
export interface GraphClientOptions {
  /** Graph origin, optionally with a path prefix (`http://127.0.0.1:4010/graph`). */
  readonly baseUrl: string;
  /** Default 5000. */
  readonly connectTimeoutMs?: number;
  /** Time until the response headers arrive. Default 15000. */
  readonly headersTimeoutMs?: number;
  /** Longest silence while the body arrives. Default 15000. */
  readonly bodyTimeoutMs?: number;
  /** Default `wa-invite-rotator/<version> (node <version>)`. */
  readonly userAgent?: string;
  /** Keep-alive connections to the origin. Default 64. */
  readonly connections?: number;
  /** Called once per call, success or failure, for metrics and throttling. Must not throw. */
  readonly onCall?: (info: GraphCallInfo) => void;
  /** Use this dispatcher instead of an own Pool (the caller closes it). */
  readonly dispatcher?: Dispatcher;
}

/** What one Graph call did. */
export interface GraphCallInfo {
  operation: GraphOperation;
  account: string;
  status?: number;
  graphCode?: number;
  outcome: "ok" | GraphError["code"];
  durationMs: number;
  usage?: GraphUsage;
}

/** The Graph port of the rotation job, plus read-only calls for discovery and checks. */
export interface GraphClient extends GraphPort {
  /** GET /{version}/{group_id}/invite_link: the group's current link, undefined when it has none. */
  getInviteLink(account: AccountContext, groupId: string, signal?: AbortSignal): Promise<string | undefined>;
  /** GET /{version}/{phone_number_id}/groups, following the cursor across all pages. */
  listGroups(
    account: AccountContext,
    phoneNumberId: string,
    opts?: { limit?: number; signal?: AbortSignal },
  ): Promise<GraphGroup[]>;
  /** GET /{version}/{group_id}?fields=subject: cheap check that the token can see the group. */
  getGroup(account: AccountContext, groupId: string, signal?: AbortSignal): Promise<GraphGroup>;
  /** GET /{version}/{group_id}?fields=total_participant_count: how many people are in the group. */
  getParticipantCount(account: AccountContext, groupId: string, signal?: AbortSignal): Promise<number>;
  /** Closes the connection pool. Idempotent. */
  close(): Promise<void>;
}

/** Bodies larger than this are cut off: a proxy's HTML page is not worth buffering. */
const MAX_BODY_BYTES = 1024 * 1024;
/** Guards against a cursor that never ends (10,000 groups per number at ≥ 1 per page is the ceiling). */
const MAX_PAGES = 10_000;
const WHATSAPP_BODY = JSON.stringify({ messaging_product: "whatsapp" });

interface CallSpec<T> {
  readonly operation: GraphOperation;
  readonly account: AccountContext;
  readonly groupId?: string;
  readonly method: "GET" | "POST" | "DELETE";
  /** Path below the version, already encoded, starting with `/`. */
  readonly path: string;
  readonly query?: Record<string, string>;
  readonly sendBody: boolean;
  readonly parse: (body: unknown) => Parsed<T>;
  readonly signal?: AbortSignal | undefined;
}

/**
 * Creates the Graph client: one keep-alive undici Pool for the origin, every failure classified
 * into a GraphError by `classify.ts`. When the caller's signal aborts, the call rejects with the
 * signal's reason (not a GraphError).
 */
export function createGraphClient(options: GraphClientOptions): GraphClient {
  const base = new URL(options.baseUrl);
  const origin = base.origin;
  const prefix = base.pathname.replace(/\/+$/, "");
  const headersTimeout = options.headersTimeoutMs ?? 15_000;
  const bodyTimeout = options.bodyTimeoutMs ?? 15_000;
  const userAgent = options.userAgent ?? USER_AGENT;
  const ownPool = options.dispatcher
    ? undefined
    : new Pool(origin, {
        connections: options.connections ?? 64,
        connect: { timeout: options.connectTimeoutMs ?? 5_000 },
        headersTimeout,
        bodyTimeout,
      });
  const dispatcher: Dispatcher = options.dispatcher ?? ownPool!;
  let closing: Promise<void> | undefined;

  const report = (info: GraphCallInfo) => {
    try {
      options.onCall?.(info);
    } catch {
      // a metrics hook must never break a rotation
    }
  };

  /** One call: the caller's signal is forwarded to a per-call controller that also enforces the deadline. */
  async function call<T>(spec: CallSpec<T>): Promise<T> {
    spec.signal?.throwIfAborted();
    const controller = new AbortController();
    const forward = () => controller.abort(spec.signal?.reason);
    spec.signal?.addEventListener("abort", forward, { once: true });
    try {
      return await exchange(spec, controller);
    } finally {
      spec.signal?.removeEventListener("abort", forward);
    }
  }

  async function exchange<T>(spec: CallSpec<T>, controller: AbortController): Promise<T> {
    const started = performance.now();
    const { account, operation, groupId } = spec;
    const query = spec.query ? `?${new URLSearchParams(spec.query).toString()}` : "";
    const context = { operation, groupId, account: account.name, secrets: [account.token] };
    const fail = (error: GraphError, usage?: GraphUsage): never => {
      report({
        operation,
        account: account.name,
        ...(error.status !== undefined && { status: error.status }),
        ...(error.graphCode !== undefined && { graphCode: error.graphCode }),
        outcome: error.code,
        durationMs: performance.now() - started,
        ...(usage && { usage }),
      });
      throw error;
    };

    // The contract's group-id rule (core/group-id.ts): `..` would be a path step, not a group.
    if (groupId !== undefined && !isGroupId(groupId)) {
      return fail(
        new GraphError({
          ...context,
          groupId: undefined,
          code: "GRAPH_INVALID_REQUEST",
          action: "stop",
          scope: "request",
          detail: `not a group id: ${groupIdProblem(groupId) ?? ""}`,
        }),
      );
    }
    // A token with a space, quote or newline (a secret file's trailing newline) cannot be sent at
    // all: undici would throw an argument error that reads like a network fault and is retried.
    if (!/^[\x21-\x7e]+$/.test(account.token)) {
      return fail(
        new GraphError({
          ...context,
          code: "GRAPH_AUTH",
          action: "stop",
          scope: "account",
          detail: "the token contains characters an HTTP header cannot carry (a space, quote or newline?)",
        }),
      );
    }
    // undici checks headersTimeout on a coarse (~0.5 s) tick; this timer keeps the promise exact.
    const timer = setTimeout(() => controller.abort(headersTimeoutError(headersTimeout)), headersTimeout);
    let response: Dispatcher.ResponseData;
    try {
      response = await dispatcher.request({
        origin,
        path: `${prefix}/${encodeURIComponent(account.graphApiVersion)}${spec.path}${query}`,
        method: spec.method,
        headers: {
          authorization: `Bearer ${account.token}`,
          accept: "application/json",
          "user-agent": userAgent,
          ...(spec.sendBody && { "content-type": "application/json" }),
        },
        body: spec.sendBody ? WHATSAPP_BODY : null,
        // undici closes the connection after a DELETE that carries a body (a server that ignores
        // such a body could misread what follows). Graph's DELETE invite_link expects this body, so
        // the connection stays: otherwise every rotation pays a new connection (TLS in production)
        // inside its link gap.
        ...(spec.method === "DELETE" && { reset: false }),
        headersTimeout,
        bodyTimeout,
        signal: controller.signal,
      });
    } catch (error) {
      if (spec.signal?.aborted) throw spec.signal.reason;
      const networkError: unknown = controller.signal.aborted ? controller.signal.reason : error;
      return fail(classifyGraphFailure({ ...context, networkError }));
    } finally {
      clearTimeout(timer);
    }

    const { statusCode: status, headers } = response;
    const usage = parseUsage(headers);
    let text: string;
    // undici's bodyTimeout bounds the gap between chunks; this bounds the whole body, so a response
    // that trickles in cannot hold a rotation (and its group lock) for longer than the deadline.
    const bodyTimer = setTimeout(() => controller.abort(bodyTimeoutError(bodyTimeout)), bodyTimeout);
    try {
      text = await readLimited(response.body);
    } catch (error) {
      if (spec.signal?.aborted) throw spec.signal.reason;
      const networkError: unknown = controller.signal.aborted ? controller.signal.reason : error;
      return fail(classifyGraphFailure({ ...context, status, headers, networkError }), usage);
    } finally {
      clearTimeout(bodyTimer);
    }

    if (status >= 200 && status < 300) {
      let parsed: Parsed<T> = { ok: false, problem: "body is not JSON" };
      try {
        parsed = spec.parse(JSON.parse(text) as unknown);
      } catch {
        // not JSON: a proxy hiccup, classified below
      }
      if (parsed.ok) {
        report({
          operation,
          account: account.name,
          status,
          outcome: "ok",
          durationMs: performance.now() - started,
          ...(usage && { usage }),
        });
        return parsed.value;
      }
      // A 2xx carrying a Graph error object is classified by its code, like any other.
      return fail(
        classifyGraphFailure({ ...context, status, headers, body: text, badResponse: parsed.problem }),
        usage,
      );
    }
    return fail(classifyGraphFailure({ ...context, status, headers, body: text }), usage);
  }

  const groupPath = (groupId: string) => `/${encodeURIComponent(groupId)}`;

  return {
    deleteInviteLink: (account, groupId, signal) =>
      call({
        operation: "delete-invite-link",
        account,
        groupId,
        method: "DELETE",
        path: `${groupPath(groupId)}/invite_link`,
        sendBody: true,
        parse: parseDeleteResponse,
        signal,
      }),
    createInviteLink: (account, groupId, signal) =>
      call({
        operation: "create-invite-link",
        account,
        groupId,
        method: "POST",
        path: `${groupPath(groupId)}/invite_link`,
        sendBody: true,
        parse: parseInviteLinkResponse,
        signal,
      }),
    getInviteLink: (account, groupId, signal) =>
      call({
        operation: "get-invite-link",
        account,
        groupId,
        method: "GET",
        path: `${groupPath(groupId)}/invite_link`,
        sendBody: false,
        parse: parseCurrentLinkResponse,
        signal,
      }),
    getGroup: (account, groupId, signal) =>
      call({
        operation: "get-group",
        account,
        groupId,
        method: "GET",
        path: groupPath(groupId),
        query: { fields: "subject" },
        sendBody: false,
        parse: parseGroupResponse,
        signal,
      }),
    getParticipantCount: (account, groupId, signal) =>
      call({
        operation: "get-participants",
        account,
        groupId,
        method: "GET",
        path: groupPath(groupId),
        query: { fields: "total_participant_count" },
        sendBody: false,
        parse: parseParticipantCount,
        signal,
      }),
    async listGroups(account, phoneNumberId, opts = {}) {
      const limit = String(Math.min(1024, Math.max(1, Math.floor(opts.limit ?? 1024))));
      const groups: GraphGroup[] = [];
      const seen = new Set<string>();
      let after: string | undefined;
      for (let page = 0; page < MAX_PAGES; page++) {
        const result = await call({
          operation: "list-groups",
          account,
          method: "GET",
          path: `/${encodeURIComponent(phoneNumberId)}/groups`,
          query: after === undefined ? { limit } : { limit, after },
          sendBody: false,
          parse: parseGroupsPage,
          signal: opts.signal,
        });
        groups.push(...result.groups);
        // Stop on the last page, an empty page, or a cursor seen before (a loop).
        if (result.after === undefined || result.groups.length === 0 || seen.has(result.after)) break;
        seen.add(result.after);
        after = result.after;
      }
      return groups;
    },
    close() {
      closing ??= ownPool ? ownPool.close() : Promise.resolve();
      return closing;
    },
  };
}

function headersTimeoutError(ms: number): Error {
  return Object.assign(new Error(`no response headers within ${ms} ms`), { code: "UND_ERR_HEADERS_TIMEOUT" });
}

function bodyTimeoutError(ms: number): Error {
  return Object.assign(new Error(`response body not complete within ${ms} ms`), {
    code: "UND_ERR_BODY_TIMEOUT",
  });
}

/** Reads the whole body as UTF-8, keeping at most MAX_BODY_BYTES (the rest is dropped, the stream destroyed). */
async function readLimited(body: Dispatcher.ResponseData["body"]): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buffer = chunk as Buffer;
    if (size + buffer.length > MAX_BODY_BYTES) {
      chunks.push(buffer.subarray(0, MAX_BODY_BYTES - size));
      body.destroy();
      break;
    }
    chunks.push(buffer);
    size += buffer.length;
  }
  return Buffer.concat(chunks).toString("utf8");
}
