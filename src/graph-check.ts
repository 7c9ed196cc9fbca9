import type { GraphCheckInput } from "./commands/validate.js";
import { accountContext, type ResolvedConfig } from "./config.js";
import { toError } from "./errors.js";
import { createGraphClient, type GraphClient } from "./graph/client.js";
import type { AccountContext } from "./interfaces.js";
import { redactSecrets } from "./redact.js";

/**
 * `validate --check-graph`: asks Graph, read-only, whether each account's token can see each
 * group of its policies (GET /{version}/{group_id}?fields=subject, a bounded number at a time),
 * and for `groups: all` whether the phone number's group list can be read. Changes nothing.
 */

/** Group checks in flight at once. */
const CONCURRENCY = 8;
/** Failing groups named per policy; the rest are counted. */
const NAMED_FAILURES = 20;

/** The `checkGraph` hook of `validate`: resolves with the number of problems found. */
export async function checkGraph(input: GraphCheckInput): Promise<number> {
  const { settings } = input;
  const graph = createGraphClient({
    baseUrl: settings.GRAPH_API_BASE_URL,
    connectTimeoutMs: settings.GRAPH_CONNECT_TIMEOUT,
    headersTimeoutMs: settings.GRAPH_REQUEST_TIMEOUT,
    bodyTimeoutMs: settings.GRAPH_REQUEST_TIMEOUT,
  });
  try {
    return await checkGraphWith(graph, input.config, (line) =>
      input.io.out(redactSecrets(line, settings.env)),
    );
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
): Promise<number> {
  let problems = 0;
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
      problems++;
      continue;
    }
    if (policy.groups === "all") {
      try {
        const phone = account.phoneNumberId ?? "";
        const groups = await graph.listGroups(account, phone);
        out(`${label}: ok, groups: all lists ${groups.length} group(s) of phone number ${phone}`);
      } catch (error) {
        out(`${label}: FAIL cannot list the groups of the phone number: ${describe(error)}`);
        problems++;
      }
      continue;
    }
    const failures = await checkGroups(graph, account, policy.groups, concurrency);
    if (failures.length === 0) {
      out(`${label}: ok, the token sees all ${policy.groups.length} group(s)`);
      continue;
    }
    problems += failures.length;
    out(`${label}: FAIL ${failures.length} of ${policy.groups.length} group(s) not visible to the token`);
    for (const failure of failures.slice(0, NAMED_FAILURES))
      out(`    group ${failure.group}: ${failure.reason}`);
    if (failures.length > NAMED_FAILURES) out(`    ... and ${failures.length - NAMED_FAILURES} more`);
  }
  out(problems === 0 ? "graph check: ok" : `graph check: ${problems} problem(s)`);
  return problems;
}

async function checkGroups(
  graph: Pick<GraphClient, "getGroup">,
  account: AccountContext,
  groups: readonly string[],
  concurrency: number,
): Promise<{ group: string; reason: string }[]> {
  const failures: { index: number; group: string; reason: string }[] = [];
  let next = 0;
  const lane = async () => {
    while (next < groups.length) {
      const index = next++;
      const group = groups[index]!;
      try {
        await graph.getGroup(account, group);
      } catch (error) {
        failures.push({ index, group, reason: describe(error) });
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
