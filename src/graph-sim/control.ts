import type { ServerResponse } from "node:http";
import { faultFromJson, type FaultBook } from "./faults.js";
import { decodeSegment, parseJson, send, sendText, type SimCall } from "./http.js";
import type { HiddenLimit, HiddenLimits } from "./limits.js";
import type { SimGroupInput, SimState } from "./state.js";
import { SimRefusal, type SimGroupEvents, type SimMember } from "./webhooks.js";

/** What the control API reads and changes. */
export interface ControlContext {
  readonly calls: SimCall[];
  readonly faults: FaultBook;
  readonly state: SimState;
  /** TCP connections accepted so far. */
  readonly connections: () => number;
  readonly limits: HiddenLimits;
  readonly groupEvents: SimGroupEvents;
}

/**
 * The simulator's control API under `/__sim/` (JSON; not recorded in the call log):
 *   GET    /__sim/calls          {calls: SimCall[]}        DELETE /__sim/calls   clear the log
 *   GET    /__sim/faults         {faults}                  DELETE /__sim/faults  clear all faults
 *   POST   /__sim/faults         body: a Fault, or {preset, match?, times?} with preset one of
 *                                transient, group-rate-limit, token-invalid, group-unknown,
 *                                group-suspended; times -1/null/"Infinity" = until cleared → 201 {id}
 *   GET    /__sim/groups         {groups}                  GET /__sim/groups/{id}  one group or 404
 *   GET    /__sim/connections    {accepted}: TCP connections accepted so far
 *   POST   /__sim/groups         body: {id, subject?, phoneNumberId?} → 201 the group
 *   GET    /__sim/limits         {limits}                  DELETE /__sim/limits  clear them
 *   POST   /__sim/limits         body: a HiddenLimit {phoneNumberId?, ratePerSec, burst?} → 201
 *   POST   /__sim/groups/{id}/participants  body: {count} → 204: sets total_participant_count
 *   POST   /__sim/groups/{id}/join  body: {link, wa_id?, user_id?}: joins through `link` (410 unless
 *                                it is the current one) and sends the signed group webhook → 200
 *                                {delivery}; likewise /leave {wa_id?, user_id?}, /suspend,
 *                                /clear-suspension, /delete (see webhooks.ts, `options.webhook`)
 */
export function handleControl(
  ctx: ControlContext,
  method: string,
  route: string,
  text: string,
  res: ServerResponse,
): void {
  const { calls, faults, state, limits } = ctx;
  const json = parseJson(text);
  if (route === "calls" && method === "GET") return send(res, 200, { calls });
  if (route === "calls" && method === "DELETE") {
    calls.length = 0;
    return sendText(res, 204, undefined, "");
  }
  if (route === "connections" && method === "GET") return send(res, 200, { accepted: ctx.connections() });
  if (route === "faults" && method === "GET") return send(res, 200, { faults: faults.list() });
  if (route === "faults" && method === "DELETE") {
    faults.clear();
    return sendText(res, 204, undefined, "");
  }
  if (route === "faults" && method === "POST") {
    try {
      return send(res, 201, { id: faults.inject(faultFromJson(json)) });
    } catch (error) {
      return send(res, 400, { error: { message: (error as Error).message } });
    }
  }
  if (route === "limits" && method === "GET") return send(res, 200, { limits: limits.list() });
  if (route === "limits" && method === "DELETE") {
    limits.clear();
    return sendText(res, 204, undefined, "");
  }
  if (route === "limits" && method === "POST") {
    try {
      limits.set((json ?? {}) as HiddenLimit);
      return sendText(res, 201, undefined, "");
    } catch (error) {
      return send(res, 400, { error: { message: (error as Error).message } });
    }
  }
  if (route === "groups" && method === "GET") return send(res, 200, { groups: state.allGroups() });
  if (route === "groups" && method === "POST") {
    const input = json as Partial<SimGroupInput> | undefined;
    if (typeof input?.id !== "string") return send(res, 400, { error: { message: "id must be a string" } });
    return send(res, 201, state.addGroup(input as SimGroupInput));
  }
  const count = /^groups\/([^/]+)\/participants$/.exec(route);
  if (count && method === "POST") {
    const n = (json as { count?: unknown } | undefined)?.count;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 0)
      return send(res, 400, { error: { message: "count must be a whole number >= 0" } });
    return state.setParticipants(decodeSegment(count[1]!) ?? "", n)
      ? sendText(res, 204, undefined, "")
      : send(res, 404, { error: { message: "no such group" } });
  }
  const change = /^groups\/([^/]+)\/(join|leave|suspend|clear-suspension|delete)$/.exec(route);
  if (change && method === "POST") {
    const groupId = decodeSegment(change[1]!) ?? "";
    const body = (json ?? {}) as { link?: string } & SimMember;
    const events = ctx.groupEvents;
    const run = {
      join: () => events.join(groupId, body.link ?? "", body),
      leave: () => events.leave(groupId, body),
      suspend: () => events.suspend(groupId),
      "clear-suspension": () => events.clearSuspension(groupId),
      delete: () => events.deleteGroup(groupId),
    }[change[2] as "join"];
    void run().then(
      (delivery) => send(res, 200, { delivery }),
      (error: unknown) =>
        error instanceof SimRefusal
          ? send(res, 410, { error: { message: error.message } })
          : send(res, 500, { error: { message: String(error) } }),
    );
    return;
  }
  if (route.startsWith("groups/") && method === "GET") {
    const group = state.view(decodeSegment(route.slice("groups/".length)) ?? "");
    return group ? send(res, 200, group) : send(res, 404, { error: { message: "no such group" } });
  }
  send(res, 404, { error: { message: `unknown control route ${method} /__sim/${route}` } });
}
