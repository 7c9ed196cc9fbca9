/**
 * `--help` start-up: the CLI prints help from the command registry without loading any command.
 * Side by side in one run: bare `node` (the floor), `--help` and `rotate --help` as shipped, and
 * the same help after importing every command module (what `--help` cost before the registry).
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));
const REGISTRY = fileURLToPath(new URL("../src/commands/registry.js", import.meta.url));
const RUNS = 7;

function median(args: string[]): number {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const start = performance.now();
    const run = spawnSync(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    times.push(performance.now() - start);
    if (run.status !== 0) throw new Error(`${args.join(" ")} exited ${run.status}: ${String(run.stderr)}`);
  }
  return times.sort((a, b) => a - b)[Math.floor(RUNS / 2)]!;
}

export function benchCliHelp(): void {
  console.log(`\ncli start-up: median of ${RUNS} runs each`);
  const floor = median(["-e", "0"]);
  const help = median([CLI, "--help"]);
  const commandHelp = median([CLI, "rotate", "--help"]);
  const eager = median([
    "--input-type=module",
    "-e",
    `const { COMMANDS, overviewHelp } = await import(${JSON.stringify(REGISTRY)});` +
      "await Promise.all(COMMANDS.map((c) => c.load())); overviewHelp();",
  ]);
  const row = (label: string, ms: number) =>
    console.log(
      `  ${label.padEnd(46)} ${ms.toFixed(0).padStart(6)} ms  (node alone + ${(ms - floor).toFixed(0)} ms)`,
    );
  row("node -e 0 (floor)", floor);
  row("--help (registry only)", help);
  row("rotate --help (registry only)", commandHelp);
  row("help after importing every command (before)", eager);
  console.log(`  ratio eager/--help: ${(eager / help).toFixed(1)}x`);
}
