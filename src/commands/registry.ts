import type { Command } from "./command.js";

/**
 * Every CLI command: its help, and how to load it. Help is plain data here, so `--help` and
 * `help <command>` print without importing any command (BullMQ, ioredis and undici stay unloaded).
 * To add a command: one entry below, and `src/commands/<name>.ts` exporting a `Command` as default.
 */
export interface CommandSpec {
  readonly name: string;
  /** Usage line after the binary's name, for example `rotate <group_id>... [--wait]`. */
  readonly usage: string;
  /** One line for the command list. */
  readonly summary: string;
  readonly options?: readonly OptionHelp[];
  /**
   * The main environment variables it reads (settings.ts names them all; a test checks these are
   * among them), or TOKENS for each account's `token_env`. Help prints them as a `reads:` line.
   */
  readonly reads?: readonly string[];
  /** Further lines of `<command> --help`: exit codes, environment it reads. */
  readonly notes?: readonly string[];
  load(): Promise<{ default: Command }>;
}

export interface OptionHelp {
  /** As typed, with its value: `--timeout <duration>`. */
  readonly flag: string;
  readonly text: string;
  /** The default when the option is left out, with its unit. */
  readonly default?: string;
}

/** In `reads`: each account's token variable (`token_env`; WHATSAPP_ACCESS_TOKEN for `default`). */
export const TOKENS = "each account's token_env";

const DURATION_NOTE = "durations: 500ms, 30s, 15m, 2h, 1d, or compound from the largest unit down: 1h30m";
/** Redis and the policy file, which every long-lived role reads. */
const READS_BASE = [
  "REDIS_URL",
  "REDIS_CLUSTER_NODES",
  "REDIS_SENTINELS",
  "ROTATOR_CONFIG",
  "ROTATOR_PREFIX",
];
/** What `start` and `worker` read: that, the Graph side, publishing, the health server. */
const READS_WORKER = [
  ...READS_BASE,
  TOKENS,
  "ROTATOR_SIGNING_SECRET",
  "ROTATOR_CONCURRENCY",
  "GRAPH_API_BASE_URL",
  "GRAPH_API_VERSION",
  "HEALTH_PORT",
  "HEALTH_HOST",
  "LOG_LEVEL",
  "ROTATOR_SHUTDOWN_TIMEOUT",
];

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: "start",
    usage: "start",
    summary: "run the scheduler, rotation workers and the health server until SIGTERM/SIGINT",
    reads: READS_WORKER,
    notes: ["exit: 0 after a clean shutdown, 2 on an invalid environment or policy file, 1 otherwise"],
    load: () => import("./start.js"),
  },
  {
    name: "worker",
    usage: "worker",
    summary: "run rotation workers (and the health server) only",
    reads: READS_WORKER,
    notes: ["exit: as for start"],
    load: () => import("./worker.js"),
  },
  {
    name: "scheduler",
    usage: "scheduler",
    summary: "run the scheduler (and the health server) only",
    // The tokens: a policy with `groups: all` lists its groups through Graph.
    reads: [
      ...READS_BASE,
      TOKENS,
      "GRAPH_API_BASE_URL",
      "GRAPH_API_VERSION",
      "HEALTH_PORT",
      "HEALTH_HOST",
      "LOG_LEVEL",
      "ROTATOR_SHUTDOWN_TIMEOUT",
    ],
    notes: ["exit: as for start"],
    load: () => import("./scheduler.js"),
  },
  {
    name: "rotate",
    usage: "rotate <group_id>... [--wait] [--timeout <duration>] [--account <name>] [--channel <channel>]",
    summary: "rotate groups now (trigger manual); --wait prints each published message",
    options: [
      { flag: "--wait", text: "wait for each rotation and print its published message as one JSON line" },
      { flag: "--timeout <duration>", text: "how long --wait waits in all", default: "2m" },
      {
        flag: "--account <name>",
        text: "the account to rotate with",
        default: "the group's policy's account, else default",
      },
      {
        flag: "--channel <channel>",
        text: "the channel to publish on",
        default: "the group's policy's channel, else whatsapp:invite-links",
      },
    ],
    notes: [
      "exit: 0 all rotated (or enqueued, without --wait), 1 any failed or not done in time, 2 bad usage",
      DURATION_NOTE,
    ],
    load: () => import("./rotate.js"),
  },
  {
    name: "plan",
    usage: "plan [--count N] [--json] [--from <ISO time>]",
    summary: "show the next N fires of every policy in UTC and in its time zone, with group counts",
    options: [
      { flag: "--count N", text: "fires per policy, 1 to 1000", default: "5" },
      { flag: "--json", text: "one JSON document instead of the table" },
      { flag: "--from <ISO time>", text: "list fires after this instant", default: "now" },
    ],
    notes: [
      "exit: 0, 2 on an invalid policy file or bad usage",
      "reads only the policy file: no Redis, no Graph",
    ],
    load: () => import("./plan.js"),
  },
  {
    name: "validate",
    usage: "validate [--check-graph] [--allow-missing-tokens]",
    summary: "check the policy file; --check-graph also asks Graph whether each token sees its groups",
    options: [
      {
        flag: "--check-graph",
        text: "also ask Graph (read-only) whether each account's token can see its groups",
      },
      {
        flag: "--allow-missing-tokens",
        text: "a policy's account without its token, or a signed link without ROTATOR_LINK_SECRET, warns instead of exit 2 (checks the file alone, for CI without secrets)",
      },
    ],
    notes: [
      "exit: 0 valid; 2 invalid: a fault in the file, a policy whose account's token variable is",
      "      unset, a signed link without ROTATOR_LINK_SECRET, or with --check-graph a group its",
      "      token cannot see; 1 Graph could not be asked",
    ],
    load: () => import("./validate.js"),
  },
  {
    name: "status",
    usage: "status [--json] [--check]",
    summary: "per group: last rotation, sequence, trigger, masked link, next due time, failures",
    options: [
      { flag: "--json", text: "one JSON document (groups and a summary) instead of the table" },
      { flag: "--check", text: "exit 3 when any group has no link or is failing (for scripts and cron)" },
    ],
    notes: [
      "exit: 0 (with --check: every group has a link and none is failing); 3 with --check, some",
      "      group needs attention; 1 Redis could not be read; 2 invalid environment or policy file",
    ],
    load: () => import("./status.js"),
  },
  {
    name: "graph-sim",
    usage:
      "graph-sim [--port N] [--host H] [--token T]... [--phone-number-id ID] [--group ID]... [--webhook-url URL]",
    summary: "run a local WhatsApp Graph API simulator (for demos and tests); prints its base URL",
    options: [
      { flag: "--port N", text: "port to listen on; 0 picks a free one", default: "0" },
      { flag: "--host H", text: "address to bind", default: "127.0.0.1" },
      {
        flag: "--token T",
        text: "a bearer token to accept (repeatable); with none and no WHATSAPP_ACCESS_TOKEN, any",
      },
      {
        flag: "--phone-number-id ID",
        text: "the business number the tokens and --group groups belong to (GET /<version>/ID/groups)",
        default: "none: tokens accept any number id, and no group is listed",
      },
      { flag: "--group ID", text: "a group to create at start (repeatable)" },
      {
        flag: "--webhook-url URL",
        text: "send signed group webhooks (joins, leaves, suspensions) here; needs WHATSAPP_APP_SECRET",
      },
    ],
    notes: ["runs until SIGTERM/SIGINT"],
    load: () => import("./graph-sim.js"),
  },
  {
    name: "gateway",
    usage: "gateway",
    summary: "serve the stable join URLs (/join/{slug}) of the policy file's links, with probes and metrics",
    reads: [
      ...READS_BASE,
      "GATEWAY_PORT",
      "GATEWAY_HOST",
      "GATEWAY_PUBLIC_URL",
      "ROTATOR_LINK_SECRET",
      "WHATSAPP_APP_SECRET",
      "WHATSAPP_VERIFY_TOKEN",
      "LOG_LEVEL",
      "ROTATOR_SHUTDOWN_TIMEOUT",
    ],
    notes: [
      "needs Redis and the policy file, never a Graph token; listens on GATEWAY_PORT (default 8090)",
      "exit: as for start",
    ],
    load: () => import("./gateway.js"),
  },
  {
    name: "link",
    usage: "link <slug> [--ttl <duration>] [--uses N]",
    summary: "print a signed join URL of a link that expires after --ttl and admits at most N visits",
    options: [
      { flag: "--ttl <duration>", text: "how long the URL admits visits", default: "7d" },
      { flag: "--uses N", text: "visits the URL admits in all", default: "no limit" },
    ],
    notes: [
      "prints GATEWAY_PUBLIC_URL/join/<slug>?exp=…&uses=…&sig=… signed with ROTATOR_LINK_SECRET",
      "exit: 0; 2 on an unknown slug, bad usage or no ROTATOR_LINK_SECRET",
      DURATION_NOTE,
    ],
    load: () => import("./link.js"),
  },
];

export function findCommand(name: string): CommandSpec | undefined {
  return COMMANDS.find((spec) => spec.name === name);
}

/** The list `wa-invite-rotator --help` prints. */
export function overviewHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "usage: wa-invite-rotator <command> [options]",
    "",
    "commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "  wa-invite-rotator help <command>   options, defaults and exit codes of one command",
    "  wa-invite-rotator --version        print the version",
    "",
    "Environment: see README.md; a .env file in the working directory is read (real variables win).",
  ].join("\n");
}

/** What `<command> --help` and `help <command>` print. */
export function commandHelp(spec: CommandSpec): string {
  const lines = [`usage: wa-invite-rotator ${spec.usage}`, "", spec.summary];
  if (spec.options && spec.options.length > 0) {
    const width = Math.max(...spec.options.map((o) => o.flag.length));
    lines.push("", "options:");
    for (const option of spec.options) {
      const fallback = option.default === undefined ? "" : ` (default: ${option.default})`;
      lines.push(`  ${option.flag.padEnd(width)}  ${option.text}${fallback}`);
    }
  }
  const notes = [...(spec.reads ? readsLines(spec.reads) : []), ...(spec.notes ?? [])];
  if (notes.length > 0) lines.push("", ...notes);
  return lines.join("\n");
}

/** `reads: A, B, …` wrapped at 100 columns, and where every variable is described. */
function readsLines(reads: readonly string[]): string[] {
  const indent = "       ";
  const lines: string[] = [];
  let line = "reads:";
  reads.forEach((name, i) => {
    const word = ` ${name}${i < reads.length - 1 ? "," : ""}`;
    if (line.length + word.length > 100) {
      lines.push(line);
      line = indent.slice(1);
    }
    line += word;
  });
  lines.push(
    line,
    `${indent}(every variable and its default: README.md "Environment", .env.example; .env is read)`,
  );
  return lines;
}

/** The command whose name is nearest to `name` (edit distance at most 2 or a prefix), if any. */
export function nearestCommand(name: string): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const spec of COMMANDS) {
    const distance = spec.name.startsWith(name) ? 0 : editDistance(name, spec.name);
    if (distance <= 2 && (!best || distance < best.distance)) best = { name: spec.name, distance };
  }
  return best?.name;
}

/** Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, d[i - 2]![j - 2]! + 1);
      }
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}
