import type { ResolvedConfig } from "../config/config.js";
import { formatDuration } from "../core/durations.js";
import { ConfigError, RotatorError, type ConfigIssue } from "../core/errors.js";
import { unsignableLinks } from "../config/links.js";
import { loadSettings } from "../config/settings.js";
import { parseCommandArgs } from "./args.js";
import type { Command, CommandIO } from "./command.js";
import type { CheckGraph, GraphCheckResult } from "../config/check-graph.js";
import { loadPolicyFile } from "./runtime.js";

/**
 * `validate [--check-graph] [--allow-missing-tokens]`: loads the environment and the policy file and
 * prints a summary. An invalid file throws ConfigError (exit 2, naming file and path); so does a
 * policy whose account's token variable is unset, and a signed link while ROTATOR_LINK_SECRET is
 * unset, unless `--allow-missing-tokens` (CI without secrets). `--check-graph` runs a
 * read-only Graph check through the `checkGraph` hook: a group a token cannot see makes the file
 * invalid (exit 2); Graph being unreachable, slow, failing (5xx) or throttling is an outside
 * failure (exit 1).
 */

export interface ValidateOptions {
  /** The `--check-graph` implementation; without one, the flag fails with E_NOT_AVAILABLE. */
  readonly checkGraph?: CheckGraph | undefined;
}

const OPTIONS = {
  "check-graph": { type: "boolean", default: false },
  "allow-missing-tokens": { type: "boolean", default: false },
} as const;

export function createValidateCommand(options: ValidateOptions = {}): Command {
  return {
    options: OPTIONS,
    async run(args, io) {
      const values = parse(args);
      const settings = loadSettings(io.env);
      const config = await loadPolicyFile(settings);
      const missing = missingTokens(config);
      // A signed link without the secret that signs it, like a policy without its token.
      const unsignable = unsignableLinks(config.links, settings.ROTATOR_LINK_SECRET);
      if (missing.length + unsignable.length > 0 && !values["allow-missing-tokens"])
        throw new ConfigError(config.file, [...missing, ...unsignable]);
      for (const line of summary(config)) io.out(line);
      for (const warning of config.warnings) io.err(`warning: ${warning}`);
      for (const issue of unsignable) io.err(`warning: ${issue.path}: ${issue.message}`);
      if (!values["check-graph"]) return 0;
      if (!options.checkGraph) {
        throw new RotatorError("E_NOT_AVAILABLE", "--check-graph is not available in this build");
      }
      const result = await options.checkGraph({ config, settings, io });
      return graphCheckExitCode(result, io);
    },
  };
}

/**
 * Exit code of `validate --check-graph`: 2 if any finding (the file is invalid for its tokens,
 * whatever else happened), else 1 if Graph could not be asked about something, else 0.
 */
export function graphCheckExitCode(result: GraphCheckResult, io?: CommandIO): number {
  if (result.findings > 0) return 2;
  if (result.unreachable > 0) {
    io?.err(
      `error: the Graph check could not finish: ${result.unreachable} check(s) failed to reach Graph; ` +
        "the policy file itself is valid",
    );
    return 1;
  }
  return 0;
}

/**
 * A policy whose account has no token cannot rotate anything: one issue per such policy, at its
 * `account` path. (An account no policy uses only warns.)
 */
export function missingTokens(config: ResolvedConfig): ConfigIssue[] {
  return config.policies.flatMap((policy, index) => {
    const account = config.accounts.get(policy.account);
    if (!account || account.tokenPresent) return [];
    return [
      {
        path: `policies[${index}].account`,
        message:
          `account ${account.name} has no token: the environment variable ${account.tokenEnv} is not set ` +
          "(set it, or run validate --allow-missing-tokens to check the file alone)",
      },
    ];
  });
}

/** The summary lines `validate` prints for a valid file. */
export function summary(config: ResolvedConfig): string[] {
  const listed = config.policyByGroup.size;
  const all = config.policies.filter((p) => p.groups === "all").length;
  const lines = [
    `${config.file}: valid`,
    `  ${plural(config.accounts.size, "account")}, ${plural(config.policies.length, "policy", "policies")}, ` +
      `${plural(listed, "group")}${all > 0 ? ` (+ all groups of ${plural(all, "account")})` : ""}`,
  ];
  for (const policy of config.policies) {
    const groups = policy.groups === "all" ? "all groups" : plural(policy.groups.length, "group");
    const jitter = policy.jitterMs > 0 ? `, jitter ${formatDuration(policy.jitterMs)}` : "";
    lines.push(
      `  policy ${policy.name}: "${policy.schedule}" ${policy.timezone}, ${groups}, account ${policy.account}${jitter}`,
    );
  }
  return lines;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function parse(args: string[]): { "check-graph": boolean; "allow-missing-tokens": boolean } {
  const { values } = parseCommandArgs({
    args,
    options: OPTIONS,
  });
  return { "check-graph": values["check-graph"], "allow-missing-tokens": values["allow-missing-tokens"] };
}

// The Graph check is loaded only when asked for: plain `validate` needs no HTTP client.
export default createValidateCommand({
  checkGraph: async (input) => (await import("../config/check-graph.js")).checkGraph(input),
});
