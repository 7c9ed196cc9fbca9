import { RotatorError } from "../core/errors.js";
import type { FailureScope, RetryAction } from "../core/interfaces.js";
import { scrub, scrubAndCut } from "../infra/redact.js";

/** Stable codes of every Graph failure. Callers branch on `action`/`scope`; the code names the cause. */
export type GraphErrorCode =
  | "GRAPH_TRANSIENT"
  | "GRAPH_THROTTLED"
  | "GRAPH_AUTH"
  | "GRAPH_PERMISSION"
  | "GRAPH_INVALID_REQUEST"
  | "GRAPH_GROUP_UNKNOWN"
  | "GRAPH_GROUP_SUSPENDED"
  | "GRAPH_NOT_ELIGIBLE"
  | "GRAPH_BLOCKED"
  | "GRAPH_BAD_RESPONSE"
  | "GRAPH_NETWORK"
  | "GRAPH_TIMEOUT"
  | "GRAPH_UNKNOWN";

/** The Graph calls the project makes. */
export type GraphOperation =
  | "delete-invite-link"
  | "create-invite-link"
  | "get-invite-link"
  | "list-groups"
  | "get-group"
  | "get-participants";

/** Everything a GraphError is built from. `detail` is the free text; it is scrubbed and truncated. */
export interface GraphErrorInit {
  readonly code: GraphErrorCode;
  readonly action: RetryAction;
  readonly scope: FailureScope;
  readonly operation: GraphOperation;
  readonly detail: string;
  readonly groupId?: string | undefined;
  readonly account?: string | undefined;
  readonly status?: number | undefined;
  readonly graphCode?: number | undefined;
  readonly subcode?: number | undefined;
  readonly fbtraceId?: string | undefined;
  readonly isTransient?: boolean | undefined;
  readonly retryAfterMs?: number | undefined;
  /** Token values to remove from the message (the account's bearer token). */
  readonly secrets?: readonly string[] | undefined;
  readonly cause?: unknown;
}

const MAX_DETAIL = 300;
/** Real fbtrace_ids are about a dozen characters. */
const MAX_TRACE_ID = 64;

/**
 * A failed Graph call, classified once at the HTTP boundary (`classify.ts`). The message always
 * reads `Graph <operation> for group <id> failed: HTTP <status>, code <n>: <detail>` and never
 * contains a token.
 */
export class GraphError extends RotatorError {
  declare readonly code: GraphErrorCode;
  readonly action: RetryAction;
  readonly scope: FailureScope;
  readonly operation: GraphOperation;
  readonly groupId?: string;
  readonly account?: string;
  readonly status?: number;
  readonly graphCode?: number;
  readonly subcode?: number;
  readonly fbtraceId?: string;
  readonly isTransient?: boolean;
  readonly retryAfterMs?: number;

  constructor(init: GraphErrorInit) {
    super(init.code, graphErrorMessage(init), init.cause === undefined ? undefined : { cause: init.cause });
    this.action = init.action;
    this.scope = init.scope;
    this.operation = init.operation;
    if (init.groupId !== undefined) this.groupId = init.groupId;
    if (init.account !== undefined) this.account = init.account;
    if (init.status !== undefined) this.status = init.status;
    if (init.graphCode !== undefined) this.graphCode = init.graphCode;
    if (init.subcode !== undefined) this.subcode = init.subcode;
    // Graph's own text: a hostile or buggy answer can put anything there, the token included.
    if (init.fbtraceId !== undefined)
      this.fbtraceId = scrubAndCut(init.fbtraceId, MAX_TRACE_ID, (text) => scrub(text, init.secrets ?? []));
    if (init.isTransient !== undefined) this.isTransient = init.isTransient;
    if (init.retryAfterMs !== undefined) this.retryAfterMs = init.retryAfterMs;
  }
}

export function isGraphError(value: unknown): value is GraphError {
  return value instanceof GraphError;
}

/** Graph codes that mean the token itself is bad. */
export function isTokenFailure(error: GraphError): boolean {
  return error.code === "GRAPH_AUTH" || error.code === "GRAPH_PERMISSION";
}

/** The one message format of every Graph failure. */
function graphErrorMessage(init: GraphErrorInit): string {
  const target =
    init.groupId !== undefined
      ? ` for group ${init.groupId}`
      : init.account !== undefined
        ? ` for account ${init.account}`
        : "";
  const facts: string[] = [];
  if (init.status !== undefined) facts.push(`HTTP ${init.status}`);
  if (init.graphCode !== undefined) facts.push(`code ${init.graphCode}`);
  if (init.subcode !== undefined) facts.push(`subcode ${init.subcode}`);
  const head = `Graph ${init.operation}${target} failed: `;
  const detail = scrubAndCut(init.detail, MAX_DETAIL, (text) => scrub(text, init.secrets ?? []));
  return facts.length > 0 ? `${head}${facts.join(", ")}: ${detail}` : `${head}${detail}`;
}
