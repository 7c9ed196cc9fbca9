/**
 * `--help` start-up: the CLI prints help from the command registry without loading any command.
 * Side by side in one run: bare `node` (the floor), `--help` and `rotate --help` as shipped, and
 * the same help after importing every command module (what `--help` cost before the registry).
 * Each row: the median wall time and the median CPU time of the process (user + system, read at
 * its exit): on a busy machine the wall time is mostly waiting for a core, the CPU time is not.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));
const REGISTRY = fileURLToPath(new URL("../src/commands/registry.js", import.meta.url));
const RUNS = 11;

/** Preloaded into each run: prints the process's CPU time on stderr as it exits. */
const CPU_AT_EXIT = `process.on("exit", () => {
  const u = process.cpuUsage();
  require("node:fs").writeSync(2, "\\ncpu-ms " + (u.user + u.system) / 1000 + "\\n");
});`;

interface Timing {
  readonly wallMs: number;
  readonly cpuMs: number;
}

function median(preload: string, args: string[]): Timing {
  const walls: number[] = [];
  const cpus: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const start = performance.now();
    const run = spawnSync(process.execPath, ["--require", preload, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      encoding: "utf8",
    });
    walls.push(performance.now() - start);
    if (run.status !== 0) throw new Error(`${args.join(" ")} exited ${run.status}: ${run.stderr}`);
    cpus.push(Number(/cpu-ms ([\d.]+)/.exec(run.stderr)?.[1] ?? Number.NaN));
  }
  const mid = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(RUNS / 2)]!;
  return { wallMs: mid(walls), cpuMs: mid(cpus) };
}

export function benchCliHelp(): void {
  console.log(`\ncli start-up: median of ${RUNS} runs each`);
  const preload = join(mkdtempSync(join(tmpdir(), "wa-rotator-bench-")), "cpu-at-exit.cjs");
  writeFileSync(preload, CPU_AT_EXIT);
  const floor = median(preload, ["-e", "0"]);
  const help = median(preload, [CLI, "--help"]);
  const commandHelp = median(preload, [CLI, "rotate", "--help"]);
  const eager = median(preload, [
    "--input-type=module",
    "-e",
    `const { COMMANDS, overviewHelp } = await import(${JSON.stringify(REGISTRY)});` +
      "await Promise.all(COMMANDS.map((c) => c.load())); overviewHelp();",
  ]);
  const row = (label: string, t: Timing) =>
    console.log(
      `  ${label.padEnd(46)} ${t.wallMs.toFixed(0).padStart(6)} ms  (node alone + ${(t.wallMs - floor.wallMs).toFixed(0)} ms)  CPU ${t.cpuMs.toFixed(0)} ms (+ ${(t.cpuMs - floor.cpuMs).toFixed(0)})`,
    );
  row("node -e 0 (floor)", floor);
  row("--help (registry only)", help);
  row("rotate --help (registry only)", commandHelp);
  row("help after importing every command (before)", eager);
  console.log(
    `  ratio eager/--help: ${(eager.wallMs / help.wallMs).toFixed(1)}x   goal 200 ms: ${help.wallMs <= 200 && commandHelp.wallMs <= 200 ? "met" : "MISSED"}`,
  );
}
