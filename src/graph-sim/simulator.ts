import { isGroupId } from "../core/group-id.js";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { handleControl } from "./control.js";
import { FaultBook, type Fault, type StoredFault } from "./faults.js";
import { HiddenLimits, type HiddenLimit } from "./limits.js";
import { createSimGroupEvents, type SimGroupEvents, type SimWebhookTarget } from "./webhooks.js";
import {
  HTML_502,
  decodeSegment,
  graphError,
  groupRateLimited,
  groupUnknown,
  parseJson,
  pickHeaders,
  readBody,
  send,
  sendText,
  type Reply,
  type SimCall,
} from "./http.js";
import {
  SimState,
  type SimAccount,
  type SimAccountOptions,
  type SimGroupInput,
  type SimGroupView,
} from "./state.js";

/**
 * A local WhatsApp Graph API simulator on a real node:http server, for demos and tests: Graph's
 * invite-link, group and group-list routes (the reference is above `handle`), and a control API
 * (`control.ts`) to inject faults, read the call log, add groups and send group webhooks.
 *
 * A hidden limit (`limits.ts`) is a token bucket per phone number that answers invite-link calls
 * over it with 131208 / HTTP 429, as Graph does; such calls are logged with `limited: true`.
 */

export interface SimulatorOptions {
  /** Default 0: a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Accepted tokens and their accounts. None: any non-empty bearer token is accepted. */
  tokens?: Record<string, SimAccountOptions>;
  groups?: SimGroupInput[];
  /** Create unknown groups on first use (default true); false answers them with 131041. */
  autoCreateGroups?: boolean;
  /** Delay before every Graph answer. */
  latencyMs?: number;
  /** A path prefix the Graph routes also live under, e.g. `/graph`; part of `url`. */
  basePath?: string;
  /** Hidden per-phone-number limits from the start (see `setHiddenLimit`). */
  hiddenLimits?: HiddenLimit[];
  /** Where group webhooks go (joins, leaves, suspensions, deletions: `webhooks.ts`), signed. */
  webhook?: SimWebhookTarget;
}

/** The call log entry is defined with the HTTP helpers; callers may keep naming it from here. */
export type { SimCall } from "./http.js";

export interface GraphSimulator {
  /** Base URL, no trailing slash (includes basePath). */
  readonly url: string;
  readonly calls: SimCall[];
  /** TCP connections accepted so far (a client that keeps its connections opens few). */
  readonly connections: number;
  inject(fault: Fault): number;
  clearFaults(): void;
  clearCalls(): void;
  group(id: string): SimGroupView | undefined;
  addGroup(group: SimGroupInput): SimGroupView;
  /** Sets a group's `total_participant_count` (what GET /{group}?fields= answers); false if unknown. */
  setParticipants(id: string, count: number): boolean;
  /**
   * Sets or changes (also mid-run) a hidden per-phone-number limit: invite-link calls of a number
   * over it are answered 131208 / HTTP 429. Without `phoneNumberId` it applies to every number.
   */
  setHiddenLimit(limit: HiddenLimit): void;
  clearHiddenLimits(): void;
  /** Group changes that send WhatsApp's webhooks to `options.webhook` (join, leave, suspend…). */
  readonly groupEvents: SimGroupEvents;
  /** Closes the server and every socket, including hung ones. Idempotent. */
  close(): Promise<void>;
}

const VERSION = /^v\d+\.\d+$/;

export async function startGraphSimulator(options: SimulatorOptions = {}): Promise<GraphSimulator> {
  const state = new SimState(options.tokens, options.autoCreateGroups ?? true);
  for (const group of options.groups ?? []) state.addGroup(group);
  const faults = new FaultBook((token) => state.account(token)?.name);
  const limits = new HiddenLimits();
  for (const limit of options.hiddenLimits ?? []) limits.set(limit);
  const groupEvents = createSimGroupEvents(state, options.webhook);
  const basePath = (options.basePath ?? "").replace(/\/+$/, "");
  const calls: SimCall[] = [];
  const sockets = new Set<Socket>();
  let accepted = 0;
  const timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  let closed = false;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const entry = { timer: setTimeout(() => (timers.delete(entry), resolve()), ms), resolve };
      timers.add(entry);
    });

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) send(res, 500, { error: { message: "simulator failure", code: 1 } });
    });
  });
  server.on("connection", (socket) => {
    accepted++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });

  /**
   * Graph routes (an optional `basePath` prefix is accepted):
   *   DELETE|POST|GET /{version}/{group_id}/invite_link   delete / reset / read the group's link
   *   GET  /{version}/{phone_number_id}/groups?limit=&after=   paged list, Graph's shape
   *   GET  /{version}/{group_id}?fields=subject,total_participant_count   group info
   * Every Graph request needs `Authorization: Bearer <token>` (unknown → 401 code 190); DELETE and
   * POST need the body `{"messaging_product":"whatsapp"}` (else 400 code 100); the version must
   * look like `v23.0` (else 400 code 100).
   */
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://sim");
    const rawPath = url.pathname;
    const path = basePath && rawPath.startsWith(`${basePath}/`) ? rawPath.slice(basePath.length) : rawPath;
    const text = await readBody(req);
    if (path.startsWith("/__sim/")) {
      return handleControl(
        { calls, faults, state, connections: () => accepted, limits, groupEvents },
        req.method ?? "GET",
        path.slice("/__sim/".length),
        text,
        res,
      );
    }

    const segments = path.split("/").slice(1).map(decodeSegment);
    const [version, id, leaf] = segments;
    const isLink = segments.length === 3 && leaf === "invite_link";
    const isList = segments.length === 3 && leaf === "groups";
    const token = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "")?.[1];
    const account = state.account(token);
    const call: SimCall = {
      method: req.method ?? "GET",
      path: `${rawPath}${url.search}`,
      ...(id !== undefined && !isList && { groupId: id }),
      ...(id !== undefined && isList && { phoneNumberId: id }),
      ...(account && { account: account.name }),
      tokenOk: account !== undefined,
      headers: pickHeaders(req),
      ...(text !== "" && { body: parseJson(text) ?? text }),
      at: Date.now(),
    };
    calls.push(call);
    const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      call.status = status;
      send(res, status, body, headers);
    };

    const fault = faults.take({
      method: call.method,
      path: call.path,
      groupId: call.groupId,
      account: call.account,
    });
    if (fault) {
      call.fault = fault.kind;
      if (fault.kind === "latency") await sleep(fault.ms);
      else return applyFault(fault, call, req, res);
    }
    // Over the number's hidden limit: refused like Graph does, after the same latency.
    const number =
      account && isLink && id ? (state.view(id)?.phoneNumberId ?? account.phoneNumberId) : undefined;
    const limited = isLink && account !== undefined && !limits.take(number ?? `account:${account.name}`);
    if (options.latencyMs) await sleep(options.latencyMs);
    if (closed) return;

    if (!account)
      return reply(401, graphError(190, "Invalid OAuth access token - Cannot parse access token"));
    if (limited) {
      call.limited = true;
      return reply(429, groupRateLimited());
    }
    if (version === undefined || !VERSION.test(version) || segments.some((s) => s === undefined)) {
      return reply(400, graphError(100, `Unknown path components: ${path}`));
    }
    // The contract's rule: `.`, `..` and ids with spaces or control characters are no groups.
    if (id !== undefined && !isList && !isGroupId(id))
      return reply(400, graphError(100, "(#100) Invalid group id"));
    if (isLink && id) return inviteLink(call.method, id, account, text, reply);
    if (isList && id && call.method === "GET")
      return listGroups(version, id, account, url.searchParams, reply);
    if (segments.length === 2 && id && call.method === "GET") {
      const group = state.groupFor(id, account);
      if (!group) return reply(400, groupUnknown());
      const fields = (url.searchParams.get("fields") ?? "").split(",");
      return reply(200, {
        id: group.id,
        ...(fields.includes("subject") && { subject: group.subject }),
        ...(fields.includes("total_participant_count") && { total_participant_count: group.participants }),
      });
    }
    return reply(400, graphError(100, `Unsupported ${call.method} request.`));
  }

  function inviteLink(method: string, id: string, account: SimAccount, text: string, reply: Reply): void {
    if (method !== "GET") {
      const body = parseJson(text) as { messaging_product?: unknown } | undefined;
      if (body?.messaging_product !== "whatsapp") {
        return reply(400, graphError(100, "(#100) The parameter messaging_product is required."));
      }
    }
    const group = state.groupFor(id, account);
    if (!group) return reply(400, groupUnknown());
    if (method === "DELETE") {
      state.deleteLink(group);
      return reply(200, { messaging_product: "whatsapp", success: true });
    }
    if (method === "POST")
      return reply(200, { messaging_product: "whatsapp", invite_link: state.resetLink(group) });
    if (method === "GET") {
      return reply(200, {
        messaging_product: "whatsapp",
        ...(group.link !== undefined && { invite_link: group.link }),
      });
    }
    return reply(400, graphError(100, `Unsupported ${method} request.`));
  }

  function listGroups(
    version: string,
    phoneNumberId: string,
    account: SimAccount,
    params: URLSearchParams,
    reply: Reply,
  ): void {
    if (account.phoneNumberId !== undefined && account.phoneNumberId !== phoneNumberId) {
      return reply(
        400,
        graphError(100, `Object with ID '${phoneNumberId}' does not exist or lacks permission`, 33),
      );
    }
    const limit = Number(params.get("limit") ?? 25);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1024) {
      return reply(400, graphError(100, "(#100) limit must be between 1 and 1024"));
    }
    const after = params.get("after");
    const start = after === null ? 0 : Number(Buffer.from(after, "base64url").toString("utf8")) + 1;
    if (!Number.isInteger(start) || start < 0)
      return reply(400, graphError(100, "(#100) invalid after cursor"));
    const all = state.groupsOf(phoneNumberId);
    const page = all.slice(start, start + limit);
    const cursor = (index: number) => Buffer.from(String(index)).toString("base64url");
    const paging =
      page.length === 0
        ? {}
        : {
            cursors: { before: cursor(start), after: cursor(start + page.length - 1) },
            ...(start + page.length < all.length && {
              next: `${simulator.url}/${version}/${encodeURIComponent(phoneNumberId)}/groups?limit=${limit}&after=${cursor(start + page.length - 1)}`,
            }),
          };
    reply(200, {
      data: {
        groups: page.map((g) => ({
          id: g.id,
          subject: g.subject,
          created_at: Math.floor(g.createdAt / 1000),
        })),
      },
      paging,
    });
  }

  function applyFault(fault: StoredFault, call: SimCall, req: IncomingMessage, res: ServerResponse): void {
    switch (fault.kind) {
      case "error": {
        call.status = fault.status;
        const body = graphError(fault.code, fault.message ?? "An error occurred", fault.subcode);
        if (fault.isTransient !== undefined) body.error.is_transient = fault.isTransient;
        if (fault.type !== undefined) body.error.type = fault.type;
        if (fault.errorData !== undefined) body.error.error_data = fault.errorData;
        return send(res, fault.status, body, fault.headers ?? {});
      }
      case "html":
        call.status = fault.status ?? 502;
        return sendText(res, call.status, "text/html", HTML_502);
      case "empty":
        call.status = fault.status;
        return sendText(res, fault.status, undefined, "");
      case "raw":
        call.status = fault.status ?? 200;
        return sendText(res, call.status, fault.contentType ?? "application/json", fault.body, fault.headers);
      case "reset":
        call.status = 0;
        req.socket.destroy();
        return;
      case "hang":
      case "latency":
        return; // hang: never answer; the socket is destroyed on close
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;

  const simulator: GraphSimulator = {
    url: `http://${host}:${address.port}${basePath}`,
    calls,
    get connections() {
      return accepted;
    },
    inject: (fault) => faults.inject(fault),
    clearFaults: () => faults.clear(),
    clearCalls: () => {
      calls.length = 0;
    },
    group: (id) => state.view(id),
    addGroup: (group) => state.addGroup(group),
    setParticipants: (id, count) => state.setParticipants(id, count),
    setHiddenLimit: (limit) => limits.set(limit),
    clearHiddenLimits: () => limits.clear(),
    groupEvents,
    close() {
      closing ??= new Promise<void>((resolve) => {
        closed = true;
        for (const entry of timers) {
          clearTimeout(entry.timer);
          entry.resolve();
        }
        timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
  return simulator;
}
