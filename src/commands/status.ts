import { connectOneShot, projectKeys, redisDeployment } from "../infra/redis.js";
import { readPoolStatuses, type PoolStatus } from "../groups/pools.js";
import { listGroupIds, readGroupStatuses, type GroupStatus } from "../ops/status.js";
import { parseCommandArgs } from "./args.js";
import type { Command, CommandIO } from "./command.js";
import { loadRuntime } from "./runtime.js";

const OPTIONS = {
  json: { type: "boolean", default: false },
  check: { type: "boolean", default: false },
} as const;

/**
 * `status [--json] [--check]`: per group, the last rotation (time, sequence, trigger), a masked link,
 * the next due time and why it is failing, if it is; with `--check`, exit 3 when any group has no
 * link, is failing (its account included), or was suspended or deleted by WhatsApp. Rows stream as Redis answers, batch by batch; the human
 * table's column widths are fixed up front (ids and policy names are known before any row), so it
 * needs no second pass. `--json` prints one JSON document, also streamed.
 */
const command: Command = {
  options: OPTIONS,
  async run(args, io) {
    const { json, check } = parse(args);
    const { settings, logger, config, scrub } = await loadRuntime(io, { logLevel: "warn" });
    const deployment = redisDeployment(settings);
    const keys = projectKeys(settings.ROTATOR_PREFIX, deployment);
    const redis = await connectOneShot(deployment, "status", logger);
    try {
      const now = Date.now();
      const ids = await listGroupIds(redis, keys, config);
      const batches = readGroupStatuses({ redis, keys, config, now, clean: scrub }, ids);
      const render = json ? jsonRenderer(io, now) : tableRenderer(io, ids, config);
      for await (const batch of batches) for (const row of batch) render.row(row);
      const counts = render.end(await readPoolStatuses(redis, keys, config.links));
      return check && needsAttention(counts) ? NEEDS_ATTENTION : 0;
    } finally {
      redis.disconnect();
    }
  },
};
export default command;

/**
 * `status --check`'s exit code when a group has no link, is failing, or WhatsApp suspended or
 * deleted it (1 is "could not tell").
 */
export const NEEDS_ATTENTION = 3;

const needsAttention = (c: Counts) => c.without_link + c.failing + c.suspended + c.deleted > 0;

interface Renderer {
  row(status: GroupStatus): void;
  /** Ends the output with the join links' pools (`links:` of the policy file). */
  end(pools: readonly PoolStatus[]): Counts;
}

interface Counts {
  groups: number;
  without_link: number;
  failing: number;
  pending: number;
  suspended: number;
  deleted: number;
}

function counter(): Counts & { add(status: GroupStatus): void } {
  return {
    groups: 0,
    without_link: 0,
    failing: 0,
    pending: 0,
    suspended: 0,
    deleted: 0,
    add(status) {
      this.groups++;
      if (status.without_link_since) this.without_link++;
      if (status.failure || status.account_failure) this.failing++;
      if (status.pending_rotation) this.pending++;
      if (status.suspended_since) this.suspended++;
      if (status.deleted_at) this.deleted++;
    },
  };
}

/** `{ generated_at, groups: [...], summary }`, one group per line so it streams. */
function jsonRenderer(io: CommandIO, now: number): Renderer {
  const counts = counter();
  // Each row is printed once the next arrives, so only the last one goes without a comma.
  let held: string | undefined;
  io.out(`{"generated_at":${JSON.stringify(new Date(now).toISOString())},"groups":[`);
  return {
    row(status) {
      if (held !== undefined) io.out(`${held},`);
      held = JSON.stringify(status);
      counts.add(status);
    },
    end(pools) {
      if (held !== undefined) io.out(held);
      const { groups, without_link, failing, pending, suspended, deleted } = counts;
      const summary = { groups, without_link, failing, pending, suspended, deleted };
      io.out(`],"links":${JSON.stringify(pools)},`);
      io.out(`"summary":${JSON.stringify(summary)}}`);
      return counts;
    },
  };
}

const TIME_WIDTH = 20; // 2026-05-01 03:00:00Z
const LINK_WIDTH = "https://chat.whatsapp.com/AbCd…".length;

function tableRenderer(
  io: CommandIO,
  ids: readonly string[],
  config: { policies: readonly { name: string }[]; accounts: ReadonlyMap<string, unknown> },
): Renderer {
  const widest = (values: Iterable<string>, header: string) => {
    let width = header.length;
    for (const value of values) width = Math.max(width, value.length);
    return width;
  };
  const columns: [string, number, "left" | "right"][] = [
    ["GROUP", widest(ids, "GROUP"), "left"],
    ["POLICY", widest(["-", ...config.policies.map((p) => p.name)], "POLICY"), "left"],
    ["ACCOUNT", widest(["-", ...config.accounts.keys()], "ACCOUNT"), "left"],
    ["LAST ROTATED", TIME_WIDTH, "left"],
    ["SEQ", 6, "right"],
    ["TRIGGER", "catch-up".length, "left"],
    ["LINK", LINK_WIDTH, "left"],
    ["NEXT DUE", TIME_WIDTH, "left"],
    ["STATUS", 0, "left"],
  ];
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => {
        const [, width, align] = columns[i]!;
        return align === "right" ? cell.padStart(width) : cell.padEnd(width);
      })
      .join("  ")
      .trimEnd();
  const counts = counter();
  io.out(line(columns.map(([header]) => header)));
  return {
    row(s) {
      counts.add(s);
      io.out(
        line([
          s.group_id,
          s.policy ?? "-",
          s.account ?? "-",
          time(s.last_rotated_at),
          s.sequence === null ? "-" : String(s.sequence),
          s.trigger ?? "-",
          s.link ?? "-",
          time(s.next_due_at),
          reason(s),
        ]),
      );
    },
    end(pools) {
      if (counts.groups === 0) io.out("(no groups: the policy file lists none and none has rotated yet)");
      io.out(
        `${counts.groups} group${counts.groups === 1 ? "" : "s"}, ${counts.without_link} without link, ` +
          `${counts.failing} failing, ${counts.pending} pending` +
          // Rare, so named only when they happen.
          (counts.suspended ? `, ${counts.suspended} suspended` : "") +
          (counts.deleted ? `, ${counts.deleted} deleted by WhatsApp` : ""),
      );
      for (const pool of pools) io.out(poolLine(pool));
      return counts;
    },
  };
}

/**
 * One join link: `link spring-sale: 2 of 3 groups with room (G1 3/8, G2 8/8 full, G3 rotating)`.
 * Pools of more than 20 groups list only their counts.
 */
export function poolLine(pool: PoolStatus): string {
  const n = pool.groups.length;
  const head = `link ${pool.slug}: ${pool.counts.room} of ${n} group${n === 1 ? "" : "s"} with room`;
  if (n === 0) return `${head} (no group has published yet)`;
  const detail =
    n <= 20
      ? pool.groups
          .map((g) => {
            const count = `${g.group_id} ${g.participants}/${pool.capacity}`;
            return g.state === "room"
              ? count
              : g.state === "full"
                ? `${count} full`
                : `${g.group_id} ${g.state}`;
          })
          .join(", ")
      : (["full", "rotating", "no-link"] as const)
          .map((state) => `${pool.counts[state]} ${state}`)
          .join(", ");
  return `${head} (${detail})`;
}

/** The STATUS cell: every reason the group needs attention, most urgent first. */
export function reason(s: GroupStatus): string {
  const parts: string[] = [];
  if (s.deleted_at) parts.push(`DELETED by WhatsApp at ${time(s.deleted_at)}: not rotated, not offered`);
  if (s.suspended_since) parts.push(`SUSPENDED by WhatsApp since ${time(s.suspended_since)}: not rotated`);
  if (s.without_link_since) parts.push(`NO LINK since ${time(s.without_link_since)}`);
  if (s.failure) parts.push(`failed ${s.failure.code}: ${oneLine(s.failure.message)}`.trimEnd());
  if (s.account_failure) {
    const { code, message, since } = s.account_failure;
    const when = since ? ` since ${time(since)}` : "";
    parts.push(`account ${s.account} failing${when} ${code}: ${oneLine(message)}`.trimEnd());
  }
  if (s.account_paused_until) parts.push(`account paused until ${time(s.account_paused_until)}`);
  if (s.pending_rotation) {
    parts.push(s.pending_since ? `rotation pending since ${time(s.pending_since)}` : "rotation pending");
  }
  if (parts.length === 0) parts.push(s.sequence === null ? "never rotated" : "ok");
  // Facts rather than faults: the rate learned for the group's number, and what webhooks told.
  if (s.account_rate !== null) {
    const limit = s.account_learned_limit === null ? "" : ` (limit learned ${s.account_learned_limit}/s)`;
    parts.push(`number rate ${s.account_rate}/s${limit}`);
  }
  if (s.participants !== null) parts.push(`${s.participants} participants`);
  if (s.joins_since_rotation !== null) parts.push(`${s.joins_since_rotation} joined through this link`);
  return parts.join("; ");
}

const oneLine = (text: string) => text.replace(/\s+/g, " ").trim();

function time(iso: string | null): string {
  return iso === null ? "-" : `${iso.slice(0, 10)} ${iso.slice(11, 19)}Z`;
}

function parse(args: string[]): { json: boolean; check: boolean } {
  const { values } = parseCommandArgs({
    args,
    options: OPTIONS,
  });
  return values;
}
