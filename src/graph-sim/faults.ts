/**
 * Fault injection for the Graph simulator: what to do instead of (or before) answering a request
 * that matches. Faults are tried in injection order; the first match with uses left applies.
 */

/** Which requests a fault applies to; every given field must match. */
export interface FaultMatch {
  /** HTTP method, case-insensitive. */
  method?: string;
  /** Decoded group id. */
  groupId?: string;
  /** Account name (see SimAccountOptions.name). */
  account?: string;
  /** A bearer token; turned into its account name at injection, never kept. */
  token?: string;
  /** Substring of the request path (raw, as sent, e.g. `/invite_link`). */
  path?: string;
}

/** What the simulator does instead of answering normally. */
export type FaultKind =
  /** Wait `ms`, then answer normally. */
  | { kind: "latency"; ms: number }
  /** A Graph error response. */
  | {
      kind: "error";
      status: number;
      code: number;
      subcode?: number;
      isTransient?: boolean;
      message?: string;
      type?: string;
      /** Sent as `error_data`: an object (WhatsApp style) or a string (other Graph APIs). */
      errorData?: unknown;
      /** Extra response headers, e.g. `Retry-After` or `X-Business-Use-Case-Usage`. */
      headers?: Record<string, string>;
    }
  /** A proxy's HTML error page (default 502). */
  | { kind: "html"; status?: number }
  /** A response without a body. */
  | { kind: "empty"; status: number }
  /** Any body, verbatim (default status 200, JSON content type). */
  | { kind: "raw"; status?: number; body: string; contentType?: string; headers?: Record<string, string> }
  /** Destroy the socket without answering. */
  | { kind: "reset" }
  /** Never answer; the client has to give up. Closed with the simulator. */
  | { kind: "hang" };

/** One injected fault. `times` defaults to 1; `Infinity` lasts until cleared. */
export type Fault = FaultKind & { match?: FaultMatch; times?: number };

/** A fault as stored: the token replaced by its account, uses counted. */
export type StoredFault = FaultKind & { id: number; match: Omit<FaultMatch, "token">; remaining: number };

/** The request a fault is matched against. */
export interface FaultTarget {
  method: string;
  path: string;
  groupId?: string | undefined;
  account?: string | undefined;
}

type MatchArg = FaultMatch | undefined;

/** Ready-made faults for the common Graph failures. */
export const simFaults = {
  /** 503, code 2, is_transient: service temporarily unavailable. */
  transient: (match?: MatchArg, times = 1): Fault => ({
    kind: "error",
    status: 503,
    code: 2,
    isTransient: true,
    message: "Service temporarily unavailable",
    ...opts(match, times),
  }),
  /** 429, code 131208: too many group operations from this phone number. */
  groupRateLimit: (match?: MatchArg, times = 1): Fault => ({
    kind: "error",
    status: 429,
    code: 131208,
    message: "Rate limit hit",
    errorData: { messaging_product: "whatsapp", details: "Too many group operations from this phone number" },
    ...opts(match, times),
  }),
  /** 401, code 190: token invalid or expired. */
  tokenInvalid: (match?: MatchArg, times = 1): Fault => ({
    kind: "error",
    status: 401,
    code: 190,
    subcode: 463,
    message: "Error validating access token: Session has expired.",
    ...opts(match, times),
  }),
  /** 400, code 131041: group unknown or the number is not a member. */
  groupUnknown: (match?: MatchArg, times = 1): Fault => ({
    kind: "error",
    status: 400,
    code: 131041,
    message: "Group not found",
    errorData: {
      messaging_product: "whatsapp",
      details: "The group does not exist or the number is not a member",
    },
    ...opts(match, times),
  }),
  /** 403, code 131207: group suspended. */
  groupSuspended: (match?: MatchArg, times = 1): Fault => ({
    kind: "error",
    status: 403,
    code: 131207,
    message: "Group suspended",
    errorData: { messaging_product: "whatsapp", details: "This group has been suspended" },
    ...opts(match, times),
  }),
};

/** Preset names for the HTTP control API: `POST /__sim/faults {"preset":"group-rate-limit"}`. */
export const FAULT_PRESETS: Record<string, (match?: MatchArg, times?: number) => Fault> = {
  transient: simFaults.transient,
  "group-rate-limit": simFaults.groupRateLimit,
  "token-invalid": simFaults.tokenInvalid,
  "group-unknown": simFaults.groupUnknown,
  "group-suspended": simFaults.groupSuspended,
};

function opts(match: MatchArg, times: number): { match?: FaultMatch; times: number } {
  return match ? { match, times } : { times };
}

const KINDS = new Set(["latency", "error", "html", "empty", "raw", "reset", "hang"]);

/**
 * Reads a fault sent to the control API: a Fault, or `{preset, match?, times?}`. `times` may be a
 * number, `-1`, `null` or `"Infinity"` (the last three: until cleared). Throws on nonsense.
 */
export function faultFromJson(value: unknown): Fault {
  if (value === null || typeof value !== "object") throw new Error("fault must be a JSON object");
  const input = { ...(value as Record<string, unknown>) };
  const times = input.times === undefined ? 1 : input.times;
  input.times = times === null || times === -1 || times === "Infinity" ? Infinity : times;
  if (typeof input.times !== "number" || !(input.times > 0))
    throw new Error("times must be a positive number");
  if (typeof input.preset === "string") {
    const preset = FAULT_PRESETS[input.preset];
    if (!preset)
      throw new Error(`unknown preset ${input.preset}; known: ${Object.keys(FAULT_PRESETS).join(", ")}`);
    return preset(input.match as FaultMatch | undefined, input.times);
  }
  if (typeof input.kind !== "string" || !KINDS.has(input.kind)) {
    throw new Error(`kind must be one of ${[...KINDS].join(", ")}`);
  }
  if (input.kind === "error" && (typeof input.status !== "number" || typeof input.code !== "number")) {
    throw new Error("an error fault needs a numeric status and code");
  }
  return input as unknown as Fault;
}

/** The injected faults, in order. */
export class FaultBook {
  private faults: StoredFault[] = [];
  private nextId = 1;

  constructor(private readonly accountOfToken: (token: string) => string | undefined) {}

  inject(fault: Fault): number {
    const { match = {}, times = 1, ...kind } = fault;
    const { token, ...rest } = match;
    const stored = { ...kind, id: this.nextId++, match: rest, remaining: times } as StoredFault;
    // An unknown token can match nothing; a name no account has keeps it that way.
    if (token !== undefined) stored.match.account = this.accountOfToken(token) ?? "\u0000unknown-token";
    this.faults.push(stored);
    return stored.id;
  }

  clear(): void {
    this.faults = [];
  }

  list(): StoredFault[] {
    return this.faults.map((f) => ({ ...f }));
  }

  /** The first matching fault, with one use taken; undefined when none applies. */
  take(target: FaultTarget): StoredFault | undefined {
    const fault = this.faults.find((f) => f.remaining > 0 && matches(f.match, target));
    if (!fault) return undefined;
    fault.remaining -= 1;
    if (fault.remaining <= 0) this.faults = this.faults.filter((f) => f !== fault);
    return fault;
  }
}

function matches(match: Omit<FaultMatch, "token">, target: FaultTarget): boolean {
  if (match.method !== undefined && match.method.toUpperCase() !== target.method.toUpperCase()) return false;
  if (match.groupId !== undefined && match.groupId !== target.groupId) return false;
  if (match.account !== undefined && match.account !== target.account) return false;
  if (match.path !== undefined && !target.path.includes(match.path)) return false;
  return true;
}
