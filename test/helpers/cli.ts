import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Rig } from "./fixture.js";
import { testRedisUrl } from "./redis.js";
import { policyYaml, TEST_TOKEN } from "./rotator.js";

/** The built CLI (`npm test` builds first, through `pretest`). */
export const CLI = fileURLToPath(new URL("../../dist/src/cli.js", import.meta.url));
export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface CliProcess {
  readonly child: ChildProcess;
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Resolves with the exit code (or the signal name) once the process ends. */
  readonly exited: Promise<number | string>;
  /** Waits until stdout or stderr contains `text`. */
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<void>;
  /** The JSON log lines on stdout that contain `text`, parsed. */
  logged<T>(text: string): T[];
  kill(signal?: NodeJS.Signals): void;
}

/** Runs `wa-invite-rotator <args>` with plain node, as an operator would. */
export function spawnCli(args: string[], env: Record<string, string>): CliProcess {
  return spawnNode(CLI, args, env);
}

/** Runs `node <script> <args>` in the repository's root with PATH and `env` alone, capturing its output. */
export function spawnNode(script: string, args: string[], env: Record<string, string>): CliProcess {
  const child = spawn(process.execPath, [script, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  const waiters = new Set<() => void>();
  const notify = () => waiters.forEach((w) => w());
  child.stdout!.on("data", (chunk: Buffer) => ((out += chunk.toString()), notify()));
  child.stderr!.on("data", (chunk: Buffer) => ((err += chunk.toString()), notify()));
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)),
  );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    kill: (signal = "SIGTERM") => void child.kill(signal),
    logged: <T>(text: string) =>
      out
        .split("\n")
        .filter((line) => line.includes(text))
        .map((line) => JSON.parse(line) as T),
    waitFor(text, timeoutMs = 15_000) {
      const seen = () => (typeof text === "string" ? (out + err).includes(text) : text.test(out + err));
      if (seen()) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `timed out waiting for ${String(text)}; stdout: ${out.slice(-2000)} stderr: ${err.slice(-2000)}`,
            ),
          );
        }, timeoutMs);
        const check = () => {
          if (!seen()) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
      });
    },
  };
}

/** Runs the CLI to completion. */
export async function runCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const proc = spawnCli(args, env);
  const code = await proc.exited;
  return { code, stdout: proc.stdout(), stderr: proc.stderr() };
}

/** Runs `wa-invite-rotator <args>` until `during` is done (or throws), then stops it (SIGTERM). */
export async function runCliWhile(
  args: string[],
  env: Record<string, string>,
  during: (proc: CliProcess) => Promise<unknown>,
): Promise<CliProcess> {
  const proc = spawnCli(args, env);
  try {
    await during(proc);
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
  return proc;
}

/**
 * For CLI processes of a test: a prefix, a policy file on disk over `groups` (on the prefix's
 * channel, on `schedule`), and `spawn` with the environment for both against the test's simulator
 * (and `env`). The file goes, and each process is killed with `killWith`, after the test.
 */
export function cliSetup(
  rig: Rig,
  name: string,
  groups: string[],
  options: { schedule?: string; env?: Record<string, string>; killWith?: NodeJS.Signals } = {},
) {
  const { prefix, channel } = rig.prefix(name);
  const dir = mkdtempSync(join(tmpdir(), `wa-rotator-${name}-`));
  rig.defer(async () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "policy.yaml");
  writeFileSync(file, policyYaml(groups, channel, options.schedule));
  const env = {
    REDIS_URL: testRedisUrl(),
    ROTATOR_PREFIX: prefix,
    ROTATOR_CONFIG: file,
    GRAPH_API_BASE_URL: rig.sim.url,
    WHATSAPP_ACCESS_TOKEN: TEST_TOKEN,
    HEALTH_PORT: "0",
    ...options.env,
  };
  const spawn = (args: string[]): CliProcess => {
    const proc = spawnCli(args, env);
    rig.defer(async () => {
      proc.kill(options.killWith);
      await proc.exited;
    });
    return proc;
  };
  return { prefix, channel, spawn };
}
