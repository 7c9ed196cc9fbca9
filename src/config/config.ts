import { readFile } from "node:fs/promises";
import { checkPolicies, type CheckedGroups } from "./checks.js";
import { checkLinks, resolveLinks, type ResolvedLink } from "./links.js";
import { ConfigError, RotatorError, StopError, type ConfigIssue } from "../core/errors.js";
import type { AccountContext } from "../core/interfaces.js";
import { DEFAULT_CHANNEL, hashTag } from "../core/keys.js";
import { createScrubber } from "../infra/redact.js";
import {
  formatPath,
  parsePolicyFile,
  readDocument,
  type PolicyFile,
  type RawDocument,
} from "./policy-file.js";

/**
 * The policy file, loaded once at the edge: read, parsed, checked as a whole and resolved into a
 * deeply frozen `ResolvedConfig`. Nothing below reads the file or the environment again.
 */

/** An account with its token resolved from the environment. */
export interface ResolvedAccount {
  readonly name: string;
  /** Name of the environment variable holding the token. */
  readonly tokenEnv: string;
  /** The bearer token, or undefined when the variable is unset or empty. Never log it. */
  readonly token: string | undefined;
  readonly tokenPresent: boolean;
  readonly graphApiVersion: string;
  readonly phoneNumberId?: string | undefined;
  /** Graph requests per second. */
  readonly rateLimit?: number | undefined;
}

/** A policy with every default applied. */
export interface ResolvedPolicy {
  readonly name: string;
  readonly account: string;
  /** Cron: 5 fields, or 6 with leading seconds; use with `cron.ts`. */
  readonly schedule: string;
  /** IANA zone, default UTC. */
  readonly timezone: string;
  readonly jitterMs: number;
  /** How late a missed fire may still run; 0 = no catch-up. */
  readonly catchUpMs: number;
  readonly channel: string;
  readonly groups: readonly string[] | "all";
  /** Rotate a group (trigger `joins`) once this many joined through its current link; unset = never. */
  readonly rotateAfterJoins?: number | undefined;
}

/** The whole policy file, resolved and frozen. */
export interface ResolvedConfig {
  readonly file: string;
  readonly accounts: ReadonlyMap<string, ResolvedAccount>;
  readonly policies: readonly ResolvedPolicy[];
  /** Every explicitly listed group → its policy (groups of `all` policies are not listed). */
  readonly policyByGroup: ReadonlyMap<string, ResolvedPolicy>;
  /** The join links of the `links:` section (served by the `gateway` command). */
  readonly links: readonly ResolvedLink[];
  /** Problems that do not make the file invalid, such as an unset token variable. */
  readonly warnings: readonly string[];
}

export interface ConfigDefaults {
  /** Used where an account names no `graph_api_version` (GRAPH_API_VERSION). */
  readonly graphApiVersion: string;
  /** The instant schedules are checked from (jitter against gaps); default now. */
  readonly now?: number;
  /** Redis Cluster mode (REDIS_CLUSTER_NODES): every channel needs a hash tag. */
  readonly cluster?: boolean;
}

/** Why a channel cannot be used on a Redis Cluster, for messages. */
export function clusterChannelProblem(channel: string): string {
  return (
    `channel ${JSON.stringify(channel)} has no hash tag: on a Redis Cluster, C, C:latest and ` +
    `C:stream must share one hash slot; name it with one, for example "{wa}:invite-links"`
  );
}

export const DEFAULT_ACCOUNT = "default";
export const DEFAULT_TOKEN_ENV = "WHATSAPP_ACCESS_TOKEN";
const DEFAULT_CATCH_UP_MS = 3_600_000;

/** Reads and resolves the policy file. Throws ConfigError (exit 2) listing every issue. */
export async function loadConfig(
  file: string,
  env: Readonly<Record<string, string | undefined>>,
  defaults: ConfigDefaults,
): Promise<ResolvedConfig> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new ConfigError(file, [{ path: "", message: `cannot read ${file}: ${readFailure(error)}` }]);
  }
  return parseConfigText(text, file, env, defaults);
}

/** Parses and resolves policy file text; `file` picks JSON (`.json`) or YAML and names the file. */
export function parseConfigText(
  text: string,
  file: string,
  env: Readonly<Record<string, string | undefined>>,
  defaults: ConfigDefaults,
): ResolvedConfig {
  const scrub = createScrubber(configTokens(text, env), env);
  const fail = (issues: readonly ConfigIssue[]) =>
    new ConfigError(
      file,
      issues.map((i) => ({ ...i, path: scrub(i.path), message: scrub(i.message) })),
    );
  const read = readDocument(text, file);
  if (!read.document) throw fail(read.issues);
  const { value } = read.document;
  if (value === null || value === undefined) {
    throw new ConfigError(file, [
      { path: "", message: "the policy file is empty: it needs a policies list" },
    ]);
  }
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new ConfigError(file, [
      { path: "", message: "the policy file must be a mapping with policies (and accounts)" },
    ]);
  }
  const schema = parsePolicyFile(value);
  const issues: ConfigIssue[] = schema.issues.map((i) => located(read.document!, i.path, i.message));
  const taken = new Set(issues.map((i) => i.path));
  const checked = checkPolicies(
    value as Record<string, unknown>,
    defaults.now ?? Date.now(),
    (path, message) => {
      const issue = located(read.document!, path, message);
      if (!taken.has(issue.path)) issues.push(issue);
    },
  );
  if (defaults.cluster && schema.data) {
    schema.data.policies.forEach((policy, i) => {
      const channel = policy.channel ?? DEFAULT_CHANNEL;
      if (hashTag(channel) !== undefined) return;
      const issue = located(read.document!, ["policies", i, "channel"], clusterChannelProblem(channel));
      if (!taken.has(issue.path)) issues.push(issue);
    });
  }
  checkLinks(value as Record<string, unknown>, (path, message) => {
    const issue = located(read.document!, path, message);
    if (!taken.has(issue.path)) issues.push(issue);
  });
  if (issues.length > 0 || !schema.data) throw fail(inFileOrder(issues));
  return resolve(file, schema.data, checked, env, defaults);
}

/**
 * The tokens an error about this file must never repeat, beside the environment's secrets: those
 * of the variables its accounts name as `token_env` (found in the raw text, so this works on a file
 * that does not parse). A token pasted into the wrong field, or as a key, is then redacted.
 */
function configTokens(text: string, env: Readonly<Record<string, string | undefined>>): string[] {
  const names = [...text.matchAll(/token_env["']?\s*:\s*["']?([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]!);
  return names.map((name) => env[name]).filter((v): v is string => v !== undefined);
}

/** The account as a rotation uses it. Throws E_NO_TOKEN (naming the variable, never a value). */
export function accountContext(account: ResolvedAccount): AccountContext {
  if (account.token === undefined) {
    throw new RotatorError(
      "E_NO_TOKEN",
      `account ${account.name} has no token: the environment variable ${account.tokenEnv} is not set`,
    );
  }
  return {
    name: account.name,
    token: account.token,
    graphApiVersion: account.graphApiVersion,
    phoneNumberId: account.phoneNumberId,
  };
}

/** The account a rotation uses, with its token; a missing account or token stops the rotation. */
export function resolveAccount(config: ResolvedConfig, name: string): AccountContext {
  const account = config.accounts.get(name);
  if (!account) throw new StopError("E_UNKNOWN_ACCOUNT", `account ${name} is not in the policy file`);
  try {
    return accountContext(account);
  } catch (error) {
    const code = error instanceof RotatorError ? error.code : "E_NO_TOKEN";
    throw new StopError(code, error instanceof Error ? error.message : String(error));
  }
}

function resolve(
  file: string,
  data: PolicyFile,
  checked: CheckedGroups,
  env: Readonly<Record<string, string | undefined>>,
  defaults: ConfigDefaults,
): ResolvedConfig {
  const rawAccounts = data.accounts ?? { [DEFAULT_ACCOUNT]: { token_env: DEFAULT_TOKEN_ENV } };
  const accounts = new Map<string, ResolvedAccount>();
  for (const [name, raw] of Object.entries(rawAccounts)) {
    const value = env[raw.token_env];
    const token = value === undefined || value === "" ? undefined : value;
    accounts.set(
      name,
      Object.freeze({
        name,
        tokenEnv: raw.token_env,
        token,
        tokenPresent: token !== undefined,
        graphApiVersion: raw.graph_api_version ?? defaults.graphApiVersion,
        phoneNumberId: raw.phone_number_id,
        rateLimit: raw.rate_limit,
      }),
    );
  }

  const policies: ResolvedPolicy[] = [];
  const policyByGroup = new Map<string, ResolvedPolicy>();
  data.policies.forEach((raw, index) => {
    const groups = checked.groups[index];
    const policy: ResolvedPolicy = Object.freeze({
      name: raw.name,
      account: raw.account ?? DEFAULT_ACCOUNT,
      schedule: raw.schedule.trim().replace(/\s+/g, " "),
      timezone: raw.timezone ?? "UTC",
      jitterMs: raw.jitter ?? 0,
      catchUpMs: raw.catch_up ?? DEFAULT_CATCH_UP_MS,
      channel: raw.channel ?? DEFAULT_CHANNEL,
      ...(raw.rotate_after_joins === undefined ? {} : { rotateAfterJoins: raw.rotate_after_joins }),
      groups: groups === "all" ? "all" : Object.freeze(groups ?? []),
    });
    policies.push(policy);
    if (policy.groups !== "all") for (const group of policy.groups) policyByGroup.set(group, policy);
  });

  const warnings: string[] = [];
  const used = new Set(policies.map((p) => p.account));
  for (const account of accounts.values()) {
    if (!account.tokenPresent) {
      warnings.push(`account ${account.name}: the environment variable ${account.tokenEnv} is not set`);
    }
    if (!used.has(account.name)) warnings.push(`account ${account.name} is not used by any policy`);
  }
  const links = resolveLinks(data.links ?? [], policies, policyByGroup, warnings);

  return Object.freeze({
    file,
    accounts: frozenMap(accounts),
    policies: Object.freeze(policies),
    policyByGroup: frozenMap(policyByGroup),
    links: Object.freeze(links),
    warnings: Object.freeze(warnings),
  });
}

function located(document: RawDocument, path: readonly (string | number)[], message: string): ConfigIssue {
  const where = document.locate(path);
  return { path: formatPath(path), message: where ? `${message} (${where})` : message };
}

/** Sorts issues by the line they point at (issues without one keep their place at the end). */
function inFileOrder(issues: ConfigIssue[]): ConfigIssue[] {
  const position = (issue: ConfigIssue): number => {
    const match = /\(line (\d+), column (\d+)\)$/.exec(issue.message);
    return match ? Number(match[1]) * 100_000 + Number(match[2]) : Number.MAX_SAFE_INTEGER;
  };
  return issues
    .map((issue, index) => ({ issue, index, at: position(issue) }))
    .sort((a, b) => a.at - b.at || a.index - b.index)
    .map((entry) => entry.issue);
}

/** A Map whose mutators throw, so a shared config cannot be changed by accident. */
function frozenMap<K, V>(map: Map<K, V>): ReadonlyMap<K, V> {
  const refuse = () => {
    throw new TypeError("the resolved config is read-only");
  };
  for (const method of ["set", "delete", "clear"]) Object.defineProperty(map, method, { value: refuse });
  return Object.freeze(map);
}

function readFailure(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === "ENOENT") return "not found";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EISDIR") return "it is a directory";
  return typeof code === "string" ? code : error instanceof Error ? error.message : String(error);
}
