#!/usr/bin/env node
import { existsSync, realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { printable } from "./core/printable.js";
import type { CommandIO } from "./commands/command.js";
import { commandHelp, findCommand, nearestCommand, overviewHelp } from "./commands/registry.js";

export async function main(argv: string[], io: CommandIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h") {
    io.out(overviewHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === "help") return help(rest, io);
  if (name === "--version" || name === "-v" || name === "version") {
    const { VERSION } = await import("./core/version.js");
    io.out(VERSION);
    return 0;
  }
  const spec = findCommand(name);
  if (!spec) return unknownCommand(name, io);
  // Before loading the command: help needs no module of it (and no BullMQ, ioredis or undici).
  if (rest.includes("--help") || rest.includes("-h")) {
    io.out(commandHelp(spec));
    return 0;
  }
  const command = (await spec.load()).default;
  try {
    return await command.run(rest, io);
  } catch (error) {
    // Loaded here, not at the top: help and a mistyped command need neither (the command module
    // has loaded them already, so this costs nothing).
    const [{ ConfigError, UsageError }, { redactSecrets }] = await Promise.all([
      import("./core/errors.js"),
      import("./infra/redact.js"),
    ]);
    if (error instanceof UsageError) {
      io.err(
        `${error.message}\nusage: wa-invite-rotator ${spec.usage}\n(wa-invite-rotator help ${name} for more)`,
      );
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

/** `help` alone, or `help <command>`. */
function help(args: string[], io: CommandIO): number {
  const [topic] = args;
  if (topic === undefined) {
    io.out(overviewHelp());
    return 0;
  }
  const spec = findCommand(topic);
  if (!spec) return unknownCommand(topic, io);
  io.out(commandHelp(spec));
  return 0;
}

function unknownCommand(name: string, io: CommandIO): number {
  const nearest = nearestCommand(name);
  const hint = nearest ? `\ndid you mean: wa-invite-rotator ${nearest}?` : "";
  io.err(`unknown command: ${name}${hint}\n\n${overviewHelp()}`);
  return 2;
}

/**
 * Reads `.env` of the working directory into the environment when there is one (Node's own parser;
 * a variable the real environment sets, even to "", wins). Returns true, or the reason it failed.
 */
function loadDotEnv(): true | string {
  if (!existsSync(".env")) return true;
  try {
    process.loadEnvFile(".env");
    return true;
  } catch (error) {
    return `invalid environment: cannot read .env: ${(error as Error).message}`;
  }
}

function fail(message: string): number {
  process.stderr.write(`${message}\n`);
  return 2;
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
  const dotEnv = loadDotEnv();
  let progressShown = false;
  const io: CommandIO = {
    env: process.env,
    secrets: new Set(),
    // Control and bidi characters the CLI did not make (a link, a group id, a reason from Redis or
    // Graph) reach the terminal escaped, whichever command printed them.
    out: (line) => void (stdoutOpen && process.stdout.write(`${printable(line, { keepNewlines: true })}\n`)),
    // A progress line (terminal only) is cleared before a message takes its place.
    err: (line) =>
      process.stderr.write(`${progressShown ? "\r\x1b[K" : ""}${printable(line, { keepNewlines: true })}\n`),
    ...(process.stderr.isTTY && {
      progress: (line: string) => {
        progressShown = line !== "";
        process.stderr.write(`\r\x1b[K${printable(line)}`);
      },
    }),
  };
  (dotEnv === true ? main(process.argv.slice(2), io) : Promise.resolve(fail(dotEnv))).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`wa-invite-rotator: ${String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
