import { accountContext, type ResolvedConfig } from "./config.js";
import { toError } from "../core/errors.js";
import { createGraphClient, type GraphClient } from "../graph/client.js";
import { GraphError } from "../graph/errors.js";
import type { AccountContext } from "../core/interfaces.js";
import { accountTokens, createScrubber } from "../infra/redact.js";
import type { Settings } from "./settings.js";

/**
 * `validate --check-graph`: asks Graph, read-only, whether each account's token can see each
 * group of its policies (GET /{version}/{group_id}?fields=subject, a bounded number at a time),
 * and for `groups: all` whether the phone number's group list can be read. Changes nothing.
 *
 * Each failed check is either a finding or an outside failure. A finding is Graph saying no for
 * good (a GraphError with action `stop`: bad token, no permission, unknown group, ...) or an
 * account that cannot be resolved: the file names groups its tokens cannot see, so `validate`
 * calls it invalid (exit 2). An outside failure is Graph not answering usefully (network error,
 * timeout, 5xx, throttling: action `retry` or `throttle`, or any other throwable): nothing was
 * learnt about the file (exit 1, unless there is also a finding).
 */

/** What a Graph check gets: the loaded file and settings, and where to write. */
export interface GraphCheckInput {
  readonly config: ResolvedConfig;
  readonly settings: Settings;
  readonly io: { out(line: string): void };
}

/** What a Graph check found. */
export interface GraphCheckResult {
  /**
   * Groups (or group lists) Graph refused for good: bad token, no permission, unknown group, an
   * account that cannot be resolved. The file names groups its tokens cannot see: exit 2.
   */
  readonly findings: number;
  /** Checks Graph did not answer (network, timeout, 5xx, throttling): exit 1 if no finding. */
  readonly unreachable: number;
}

/** Asks Graph (read-only) whether each account's token can see its groups, writing lines to `io`. */
export type CheckGraph = (input: GraphCheckInput) => Promise<GraphCheckResult>;

/** Group checks in flight at once. */
const CONCURRENCY = 8;
/** Failing groups named per policy; the rest are counted. */
const NAMED_FAILURES = 20;

/** The `checkGraph` hook of `validate`: resolves with the findings and outside failures. */
export async function checkGraph(input: GraphCheckInput): Promise<GraphCheckResult> {
  const { settings } = input;
  const graph = createGraphClient({
    baseUrl: settings.GRAPH_API_BASE_URL,
    connectTimeoutMs: settings.GRAPH_CONNECT_TIMEOUT,
    headersTimeoutMs: settings.GRAPH_REQUEST_TIMEOUT,
    bodyTimeoutMs: settings.GRAPH_REQUEST_TIMEOUT,
  });
  const scrub = createScrubber(accountTokens(input.config), settings.env);
  try {
    return await checkGraphWith(graph, input.config, (line) => input.io.out(scrub(line)));
  } finally {
    await graph.close();
  }
}

/** The check against a given client; writes one line per finding to `out`. */
export async function checkGraphWith(
  graph: Pick<GraphClient, "getGroup" | "listGroups">,
  config: ResolvedConfig,
  out: (line: string) => void,
  concurrency = CONCURRENCY,
): Promise<GraphCheckResult> {
  let findings = 0;
  let unreachable = 0;
  out("graph check (read-only):");
  for (const policy of config.policies) {
    const label = `  policy ${policy.name} (account ${policy.account})`;
    const resolved = config.accounts.get(policy.account);
    let account: AccountContext;
    try {
      if (!resolved) throw new Error(`account ${policy.account} is not in the policy file`);
      account = accountContext(resolved);
    } catch (error) {
      out(`${label}: FAIL ${toError(error).message}`);
      findings++;
      continue;
    }
    if (policy.groups === "all") {
      try {
        const phone = account.phoneNumberId ?? "";
        const groups = await graph.listGroups(account, phone);
        out(`${label}: ok, groups: all lists ${groups.length} group(s) of phone number ${phone}`);
      } catch (error) {
        const outside = isOutsideFailure(error);
        const what = outside ? "ERROR could not ask Graph for" : "FAIL cannot list";
        out(`${label}: ${what} the groups of the phone number: ${describe(error)}`);
        if (outside) unreachable++;
        else findings++;
      }
      continue;
    }
    const failures = await checkGroups(graph, account, policy.groups, concurrency);
    if (failures.length === 0) {
      out(`${label}: ok, the token sees all ${policy.groups.length} group(s)`);
      continue;
    }
    const unseen = failures.filter((f) => !isOutsideFailure(f.error));
    const unasked = failures.filter((f) => isOutsideFailure(f.error));
    findings += unseen.length;
    unreachable += unasked.length;
    const total = policy.groups.length;
    if (unseen.length > 0)
      out(`${label}: FAIL ${unseen.length} of ${total} group(s) not visible to the token`);
    if (unasked.length > 0)
      out(`${label}: ERROR could not ask Graph about ${unasked.length} of ${total} group(s)`);
    for (const failure of failures.slice(0, NAMED_FAILURES))
      out(`    group ${failure.group}: ${describe(failure.error)}`);
    if (failures.length > NAMED_FAILURES) out(`    ... and ${failures.length - NAMED_FAILURES} more`);
  }
  if (findings === 0 && unreachable === 0) out("graph check: ok");
  else if (findings > 0) out(`graph check: ${findings} problem(s)`);
  if (unreachable > 0) {
    out(
      `graph check: ${unreachable} check(s) could not reach Graph (network, timeout, server error or ` +
        "throttling); try again later",
    );
  }
  return { findings, unreachable };
}

/** Graph did not answer usefully (retry or throttle), or something other than Graph failed. */
export function isOutsideFailure(error: unknown): boolean {
  return !(error instanceof GraphError) || error.action !== "stop";
}

async function checkGroups(
  graph: Pick<GraphClient, "getGroup">,
  account: AccountContext,
  groups: readonly string[],
  concurrency: number,
): Promise<{ group: string; error: unknown }[]> {
  const failures: { index: number; group: string; error: unknown }[] = [];
  let next = 0;
  const lane = async () => {
    while (next < groups.length) {
      const index = next++;
      const group = groups[index]!;
      try {
        await graph.getGroup(account, group);
      } catch (error) {
        failures.push({ index, group, error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, groups.length) }, lane));
  return failures.sort((a, b) => a.index - b.index);
}

function describe(error: unknown): string {
  const err = toError(error);
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? `${code}: ${err.message}` : err.message;
}
