import type { ResolvedConfig, ResolvedPolicy } from "../config/config.js";
import { nextFires, offsetMs } from "../config/cron.js";
import { formatDuration } from "../core/durations.js";
import { UsageError } from "../core/errors.js";
import { loadSettings } from "../config/settings.js";
import { parseCommandArgs } from "./args.js";
import type { Command } from "./command.js";
import { loadPolicyFile } from "./runtime.js";

/**
 * `plan [--count N] [--json] [--from <time>]`: the next fires of every policy, in UTC and in the
 * policy's zone, with group counts. Reads only the policy file: no Redis, no Graph.
 */

/** One policy in `plan --json`. */
export interface PlannedPolicy {
  readonly name: string;
  readonly schedule: string;
  readonly timezone: string;
  readonly account: string;
  /** Listed groups, or "all" (discovered from Graph at each fire). */
  readonly groups: number | "all";
  readonly jitter_ms: number;
  readonly catch_up_ms: number;
  readonly channel: string;
  readonly fires: readonly { readonly utc: string; readonly local: string }[];
}

const MAX_COUNT = 1000;

const OPTIONS = {
  count: { type: "string", default: "5" },
  json: { type: "boolean", default: false },
  from: { type: "string" },
} as const;

const command: Command = {
  options: OPTIONS,
  async run(args, io) {
    const options = parse(args);
    const settings = loadSettings(io.env);
    const config = await loadPolicyFile(settings);
    const planned = plan(config, options.from, options.count);
    if (options.json) {
      io.out(JSON.stringify({ file: config.file, from: iso(options.from), policies: planned }, null, 2));
      return 0;
    }
    for (const warning of config.warnings) io.err(`warning: ${warning}`);
    for (const line of render(config, planned, options)) io.out(line);
    return 0;
  },
};
export default command;

/** The next `count` fires after `from` of every policy. */
export function plan(config: ResolvedConfig, from: number, count: number): PlannedPolicy[] {
  return config.policies.map((policy) => ({
    name: policy.name,
    schedule: policy.schedule,
    timezone: policy.timezone,
    account: policy.account,
    groups: policy.groups === "all" ? "all" : policy.groups.length,
    jitter_ms: policy.jitterMs,
    catch_up_ms: policy.catchUpMs,
    channel: policy.channel,
    fires: nextFires(policy.schedule, policy.timezone, from, count).map((at) => ({
      utc: iso(at),
      local: localTime(at, policy.timezone),
    })),
  }));
}

/** `2026-03-29T03:30:00+02:00`: wall-clock time in the zone with its UTC offset at that instant. */
export function localTime(at: number, timezone: string): string {
  const offset = offsetMs(timezone, at);
  const wall = new Date(at + offset)
    .toISOString()
    .replace(/\.000Z$/, "")
    .replace(/Z$/, "");
  const sign = offset < 0 ? "-" : "+";
  const minutes = Math.abs(offset) / 60_000;
  const hh = String(Math.floor(minutes / 60)).padStart(2, "0");
  const mm = String(minutes % 60).padStart(2, "0");
  return `${wall}${sign}${hh}:${mm}`;
}

function render(
  config: ResolvedConfig,
  planned: PlannedPolicy[],
  options: { count: number; from: number },
): string[] {
  const lines = [
    `${config.file}: next ${options.count} fire${options.count === 1 ? "" : "s"} of each policy after ${iso(options.from)}`,
  ];
  config.policies.forEach((policy, i) => {
    const entry = planned[i]!;
    lines.push(
      "",
      `policy ${policy.name}: "${policy.schedule}" in ${policy.timezone}`,
      `  ${describe(policy)}`,
    );
    lines.push(`  ${"UTC".padEnd(22)}local time (${policy.timezone})`);
    for (const fire of entry.fires) lines.push(`  ${fire.utc.padEnd(22)}${readable(fire.local)}`);
    if (entry.fires.length === 0) lines.push("  (no upcoming fires)");
  });
  return lines;
}

/** `Sun 2026-03-29 03:30:00 +02:00` from `2026-03-29T03:30:00+02:00`. */
function readable(local: string): string {
  const day = WEEKDAYS[new Date(`${local.slice(0, 10)}T00:00:00Z`).getUTCDay()]!;
  return `${day} ${local.slice(0, 10)} ${local.slice(11, 19)} ${local.slice(19)}`;
}

const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

function describe(policy: ResolvedPolicy): string {
  const groups =
    policy.groups === "all"
      ? "all groups of the account's phone number (listed from Graph at each fire)"
      : `${policy.groups.length} group${policy.groups.length === 1 ? "" : "s"}`;
  const parts = [groups, `account ${policy.account}`, `channel ${policy.channel}`];
  if (policy.jitterMs > 0)
    parts.push(`starts spread over ${formatDuration(policy.jitterMs)} after each fire`);
  parts.push(policy.catchUpMs > 0 ? `catch-up ${formatDuration(policy.catchUpMs)}` : "no catch-up");
  return parts.join(", ");
}

function iso(at: number): string {
  return new Date(at).toISOString().replace(/\.000Z$/, "Z");
}

function parse(args: string[]): { count: number; json: boolean; from: number } {
  const { values } = parseCommandArgs({
    args,
    options: OPTIONS,
  });
  const count = Number(values.count);
  if (!/^\d+$/.test(values.count) || count < 1 || count > MAX_COUNT) {
    throw new UsageError(`--count must be an integer from 1 to ${MAX_COUNT}, got ${values.count}`);
  }
  const from = values.from === undefined ? Date.now() : Date.parse(values.from);
  if (Number.isNaN(from)) throw new UsageError(`--from must be an ISO-8601 time, got ${values.from}`);
  return { count, json: values.json, from };
}
