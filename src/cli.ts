#!/usr/bin/env node
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ConfigError, UsageError } from "./core/errors.js";
import type { Command, CommandIO } from "./commands/command.js";
import { redactSecrets } from "./infra/redact.js";

/** Command name → module. Loaded lazily so `graph-sim` does not pull in BullMQ. */
const COMMANDS: Record<string, () => Promise<{ default: Command }>> = {
  // one line per command: name: () => import("./commands/<name>.js"),
  start: () => import("./commands/start.js"),
  scheduler: () => import("./commands/scheduler.js"),
  worker: () => import("./commands/worker.js"),
  rotate: () => import("./commands/rotate.js"),
  "graph-sim": () => import("./commands/graph-sim.js"),
  validate: () => import("./commands/validate.js"),
  plan: () => import("./commands/plan.js"),
  status: () => import("./commands/status.js"),
};

export async function main(argv: string[], io: CommandIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    io.out(await helpText());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-v") {
    const { VERSION } = await import("./core/version.js");
    io.out(VERSION);
    return 0;
  }
  const load = COMMANDS[name];
  if (!load) {
    io.err(`unknown command: ${name}\n\n${await helpText()}`);
    return 2;
  }
  const command = (await load()).default;
  if (rest.includes("--help") || rest.includes("-h")) {
    io.out(`usage: wa-invite-rotator ${command.usage}\n\n${command.summary}`);
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`${error.message}\nusage: wa-invite-rotator ${command.usage}`);
      return 2;
    }
    if (error instanceof ConfigError) {
      io.err(redactSecrets(error.message, io.env, io.secrets));
      return 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    io.err(`wa-invite-rotator ${name}: ${redactSecrets(message, io.env, io.secrets)}`);
    return 1;
  }
}

async function helpText(): Promise<string> {
  const lines = ["usage: wa-invite-rotator <command> [options]", "", "commands:"];
  for (const load of Object.values(COMMANDS)) {
    const command = (await load()).default;
    lines.push(`  ${command.usage}`, `      ${command.summary}`);
  }
  lines.push("", "Run `wa-invite-rotator <command> --help` for one command. Environment: see README.md.");
  return lines.join("\n");
}

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  // A reader that goes away (`status --json | head`) closes stdout: stop writing to it and let the
  // command finish with its own exit code, instead of dying on an unhandled EPIPE.
  let stdoutOpen = true;
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") throw error;
    stdoutOpen = false;
  });
  const io: CommandIO = {
    env: process.env,
    secrets: new Set(),
    out: (line) => void (stdoutOpen && process.stdout.write(`${line}\n`)),
    err: (line) => process.stderr.write(`${line}\n`),
  };
  main(process.argv.slice(2), io).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`wa-invite-rotator: ${String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
