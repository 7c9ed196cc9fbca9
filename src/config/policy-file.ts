import { LineCounter, parseDocument, type Document } from "yaml";
import { z } from "zod";
import { parseDuration } from "../core/durations.js";
import type { ConfigIssue, IssuePath } from "../core/errors.js";
import { JSON_STRING, jsonDuplicateKeys } from "./json-duplicates.js";

/**
 * The policy file as written: its zod schema and the issue paths it reports. Checks that need
 * more than one field (unique names and groups, known accounts, schedules against jitter) live
 * in `config.ts`. Group lists are checked by hand there too: they can hold 100,000 ids.
 */

/** Names of policies and accounts: they appear in Redis keys, logs and metrics. */
export const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const NAME_HELP = "1 to 64 letters, digits, _ . - (starting with a letter or digit)";

const durationField = z.union([z.string(), z.number()]).transform((value, ctx) => {
  if (typeof value === "number") {
    if (value === 0) return 0;
    ctx.addIssue({
      code: "custom",
      message: `a duration needs a unit: write 500ms, 30s, 15m, 2h, 1d or 1h30m, not ${value}`,
    });
    return z.NEVER;
  }
  const ms = parseDuration(value);
  if (ms === undefined) {
    ctx.addIssue({
      code: "custom",
      message: `not a duration (write 500ms, 30s, 15m, 2h, 1d, 1h30m or 0): "${value}"`,
    });
    return z.NEVER;
  }
  return ms;
});

/** A numeric id that YAML may have read as a number: kept only when the number is exact. */
const digitsField = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const text = typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? String(value) : value;
  if (typeof text === "number") {
    ctx.addIssue({ code: "custom", message: "quote long ids: YAML turns them into imprecise numbers" });
    return z.NEVER;
  }
  if (!/^\d+$/.test(text)) {
    ctx.addIssue({ code: "custom", message: `digits only, got "${text}"` });
    return z.NEVER;
  }
  return text;
});

export const accountSchema = z
  .object({
    /** Name of the environment variable that holds the bearer token. */
    token_env: z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]*$/, "an environment variable name such as WHATSAPP_ACCESS_TOKEN"),
    graph_api_version: z
      .string()
      .regex(/^v\d+\.\d+$/, "a Graph API version such as v23.0")
      .optional(),
    /** The business phone number id; needed for `groups: all`. */
    phone_number_id: digitsField.optional(),
    /** Graph requests per second this account may make. */
    rate_limit: z.number().positive().finite().optional(),
  })
  .strict();

export const policySchema = z
  .object({
    name: z.string().regex(NAME, NAME_HELP),
    account: z.string().min(1).optional(),
    /** Cron: 5 fields, or 6 with leading seconds; checked against the zone in config.ts. */
    schedule: z.string().min(1, "an empty schedule"),
    /** IANA zone; checked in config.ts. */
    timezone: z.string().min(1).optional(),
    /** Spread the group starts of a fire over this window. */
    jitter: durationField.optional(),
    /** How late a missed fire may still run after a restart; 0 turns catch-up off. */
    catch_up: durationField.optional(),
    channel: z.string().regex(/^\S+$/, "a non-empty channel name without whitespace").optional(),
    /** Rotate a group once this many people joined through its current link (WhatsApp webhooks). */
    rotate_after_joins: z
      .number()
      .refine(Number.isInteger, "a whole number of joins")
      .min(1, "at least 1 join")
      .max(100_000, "at most 100000 joins")
      .optional(),
    /** Group ids, or "all" (every group of the account's phone number); checked in config.ts. */
    groups: z.union([z.literal("all"), z.array(z.unknown())], {
      error: (issue) => (issue.input === undefined ? "required" : 'a list of group ids, or "all"'),
    }),
  })
  .strict();

/** Join link slugs: they appear in URLs, Redis keys and metric labels. */
export const SLUG = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** A stable join URL (`/join/{slug}` on the gateway) over a pool of groups; checked in links.ts. */
export const linkSchema = z
  .object({
    slug: z.string().regex(SLUG, "1 to 63 lowercase letters, digits and - (starting with a letter or digit)"),
    /** The pool: group ids the project rotates, or `policy` for all groups of one policy. */
    groups: z.array(z.unknown()).min(1, "list at least one group").optional(),
    policy: z.string().min(1).optional(),
    /** Participants per group before it counts as full (8 is the Cloud API maximum). */
    capacity: z.number().int().min(1).max(1024).optional(),
    /** Only URLs made by `link` (with exp and sig) are admitted. */
    signed: z.boolean().optional(),
    /** How often the worker reads each pool group's `total_participant_count` from Graph; 0 = never. */
    participants_poll: durationField.optional(),
  })
  .strict();

export const policyFileSchema = z
  .object({
    /** For editor completion; ignored. */
    $schema: z.string().optional(),
    accounts: z.record(z.string(), accountSchema).optional(),
    policies: z.array(policySchema).min(1, "list at least one policy"),
    links: z.array(linkSchema).optional(),
  })
  .strict();

/** The policy file after the schema: per-field valid, not yet cross-checked or resolved. */
export type PolicyFile = z.infer<typeof policyFileSchema>;
export type RawAccount = z.infer<typeof accountSchema>;
export type RawPolicy = z.infer<typeof policySchema>;
export type RawLink = z.infer<typeof linkSchema>;

/** Formats a path the way messages name it: `policies[2].schedule`, `accounts.main.token_env`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (typeof segment === "string" && /^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(segment)) {
      out += out === "" ? segment : `.${segment}`;
    } else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out;
}

const UNKNOWN_KEY_HINTS: Record<string, string> = {
  token: "tokens come from the environment: use token_env",
  access_token: "tokens come from the environment: use token_env",
  tz: "the key is timezone",
  group: "the key is groups",
  cron: "the key is schedule",
};

/** One issue found by the schema, as path segments and a message. */
export interface SchemaIssue {
  readonly path: IssuePath;
  readonly message: string;
}

/** Validates the parsed document; every zod issue becomes one SchemaIssue (unknown keys: one per key). */
export function parsePolicyFile(document: unknown): { data?: PolicyFile; issues: SchemaIssue[] } {
  const result = policyFileSchema.safeParse(document);
  if (result.success) return { data: result.data, issues: [] };
  const issues: SchemaIssue[] = [];
  for (const issue of result.error.issues) {
    const path = issue.path.filter((s): s is string | number => typeof s !== "symbol");
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        const hint = UNKNOWN_KEY_HINTS[key];
        issues.push({ path: [...path, key], message: `unknown key "${key}"${hint ? `: ${hint}` : ""}` });
      }
    } else if (issue.code === "invalid_type" && issue.input === undefined) {
      issues.push({ path, message: "required" });
    } else {
      issues.push({ path, message: issue.message });
    }
  }
  return { issues };
}

/** The document as read from text: the plain value and a way to find where a path is written. */
export interface RawDocument {
  readonly value: unknown;
  /** `line N, column M` of the node at `path` (or of its nearest written parent). */
  locate(path: IssuePath): string | undefined;
}

/** Parses policy file text: JSON when the file name ends in `.json`, YAML otherwise. */
export function readDocument(text: string, file: string): { document?: RawDocument; issues: ConfigIssue[] } {
  if (/\.json$/i.test(file)) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      // Node's own message quotes the text around the fault, and with it whatever was pasted
      // there (a token): the position and a reason of our own say enough.
      const offset = jsonErrorOffset(text);
      const where = offset === undefined ? "" : ` at ${lineColumn(text, offset)}`;
      return {
        issues: [{ path: "", message: `JSON syntax error${where}: ${jsonErrorReason(text, offset)}` }],
      };
    }
    // JSON.parse keeps the last of two equal keys without a word; YAML rejects them, so does this.
    const duplicates = jsonDuplicateKeys(text);
    if (duplicates.length > 0) {
      const issues = duplicates.map(({ path, at, firstAt }) => ({
        path: formatPath(path),
        message:
          `duplicate key ${JSON.stringify(path[path.length - 1])}: a key may appear once in an object ` +
          `(first at ${lineColumn(text, firstAt)}) (${lineColumn(text, at)})`,
      }));
      return { issues };
    }
    // JSON is YAML too: its node positions are parsed only when an issue needs them.
    let located: Document | undefined;
    let counter: LineCounter | undefined;
    const locate = (path: IssuePath): string | undefined => {
      if (!located) {
        counter = new LineCounter();
        located = parseDocument(text, { lineCounter: counter, uniqueKeys: false });
      }
      return locateIn(located, counter!, path);
    };
    return { document: { value, locate }, issues: [] };
  }
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter });
  if (doc.errors.length > 0) {
    const issues = doc.errors.map((error) => {
      const position = error.linePos?.[0];
      const where = position ? ` at line ${position.line}, column ${position.col}` : "";
      const detail = error.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
      return { path: "", message: `YAML syntax error${where}: ${detail}` };
    });
    return { issues };
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // An alias bomb or a similar abuse of anchors.
    return {
      issues: [{ path: "", message: `cannot read the YAML: ${error instanceof Error ? error.message : ""}` }],
    };
  }
  return { document: { value, locate: (path) => locateIn(doc, counter, path) }, issues: [] };
}

function locateIn(doc: Document, counter: LineCounter, path: IssuePath): string | undefined {
  for (let length = path.length; length >= 0; length--) {
    const node = doc.getIn(path.slice(0, length), true) as { range?: [number, number, number] } | undefined;
    const start = node?.range?.[0];
    if (start !== undefined) {
      const { line, col } = counter.linePos(start);
      return `line ${line}, column ${col}`;
    }
  }
  return undefined;
}

function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return `line ${line}, column ${offset - before.lastIndexOf("\n")}`;
}

const JSON_NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** What is wrong at `offset`, in words that never quote the text. */
function jsonErrorReason(text: string, offset: number | undefined): string {
  if (offset === undefined) return "not valid JSON";
  const c = text[offset];
  if (c === undefined) return "the file ends before the JSON does";
  if (c === '"') return "a string that is not closed, or holds a character JSON does not allow unescaped";
  if (c === "}" || c === "]") return "a closing bracket where a value or a key was expected";
  if (c === ",") return "a comma where a value or a key was expected";
  if (c === ":") return "a colon where a value or a key was expected";
  if (c === "'") return "a single quote: JSON strings use double quotes";
  if (/[A-Za-z0-9_$-]/.test(c)) return "text that is not a JSON value (a string without quotes?)";
  return "an unexpected character";
}

/** The offset of the first JSON syntax error in `text` (Node 20's JSON.parse does not say). */
function jsonErrorOffset(text: string): number | undefined {
  let i = 0;
  const space = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++;
  };
  const token = (pattern: RegExp): boolean => {
    pattern.lastIndex = i;
    if (!pattern.test(text)) return false;
    i = pattern.lastIndex;
    return true;
  };
  const value = (): boolean => {
    space();
    const c = text[i];
    if (c === "{" || c === "[") {
      const close = c === "{" ? "}" : "]";
      i++;
      space();
      if (text[i] === close) return ++i > 0;
      for (;;) {
        if (c === "{") {
          space();
          if (!token(JSON_STRING)) return false;
          space();
          if (text[i] !== ":") return false;
          i++;
        }
        if (!value()) return false;
        space();
        if (text[i] === close) return ++i > 0;
        if (text[i] !== ",") return false;
        i++;
      }
    }
    if (c === '"') return token(JSON_STRING);
    for (const literal of ["true", "false", "null"]) {
      if (text.startsWith(literal, i)) return (i += literal.length) > 0;
    }
    return token(JSON_NUMBER);
  };
  if (!value()) return i;
  space();
  return i < text.length ? i : undefined;
}
