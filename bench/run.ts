/**
 * `npm run bench`: the scale goals, measured side by side in one run on this machine.
 *
 * 1. A policy file of 100,000 groups loads and validates within 2 s — against parsing the same
 *    YAML alone, to show what validation costs on top.
 * 2. fire (bench/fire.ts): a fire of 100,000 groups is enqueued within 3 s — the scheduler's path
 *    (one Lua call per 1,000 groups) at 10,000 and 100,000 groups, against a naive one at 10,000.
 * 3. drain (bench/drain.ts): the worker against a raw loop of the same Graph calls and publish.
 * 4. throttle (bench/throttle.ts): rotations of one phone number against a hidden limit.
 * 5. gateway (bench/gateway.ts): visits per second and latency of one gateway process, against a
 *    bare node server answering the same 302.
 *
 * Uses the Redis at REDIS_URL (default 127.0.0.1:6379) under a private key prefix it deletes after.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { loadConfig } from "../src/config/config.js";
import { benchCliHelp } from "./cli-help.js";
import { benchDrain } from "./drain.js";
import { benchFire } from "./fire.js";
import { benchThrottle } from "./throttle.js";
import { benchGateway } from "./gateway.js";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const GOAL_MS = 2_000;

async function timed<T>(run: () => Promise<T>): Promise<{ ms: number; value: T; heapMb: number }> {
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const start = performance.now();
  const value = await run();
  const ms = performance.now() - start;
  const heapMb = (process.memoryUsage().heapUsed - heapBefore) / 1024 / 1024;
  return { ms, value, heapMb };
}

const fmt = (ms: number) => `${ms.toFixed(0).padStart(6)} ms`;
const line = (label: string, ms: number, extra = "") =>
  console.log(`  ${label.padEnd(46)} ${fmt(ms)}  ${extra}`);

async function benchConfig(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "wa-rotator-bench-"));
  try {
    const policies = 10;
    const perPolicy = 10_000;
    const lines = ["accounts:", "  default:", "    token_env: BENCH_TOKEN", "policies:"];
    for (let p = 0; p < policies; p++) {
      lines.push(
        `  - name: policy-${p}`,
        `    schedule: "0 ${p} * * *"`,
        "    timezone: Europe/Berlin",
        "    jitter: 15m",
      );
      lines.push("    groups:");
      for (let g = 0; g < perPolicy; g++)
        lines.push(`      - "1203630${String(p * perPolicy + g).padStart(11, "0")}"`);
    }
    const file = join(dir, "rotation.yaml");
    const text = lines.join("\n");
    writeFileSync(file, text);

    console.log(
      `\npolicy file: ${policies * perPolicy} groups in ${policies} policies (${(text.length / 1e6).toFixed(1)} MB)`,
    );
    const yamlOnly = await timed(async () => parseYaml(text) as unknown);
    const full = await timed(() =>
      loadConfig(file, { BENCH_TOKEN: "x".repeat(40) }, { graphApiVersion: "v23.0" }),
    );
    line("parse YAML alone (baseline)", yamlOnly.ms);
    line("load + validate + resolve (loadConfig)", full.ms, `heap +${full.heapMb.toFixed(0)} MB`);
    console.log(
      `  ratio load/parse: ${(full.ms / yamlOnly.ms).toFixed(2)}x   goal ${GOAL_MS} ms: ${full.ms <= GOAL_MS ? "met" : "MISSED"} (${(full.ms / GOAL_MS).toFixed(2)} of it)`,
    );
    if (full.value.policyByGroup.size !== policies * perPolicy) throw new Error("wrong group count");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Scenarios by name: `npm run bench -- drain` runs one; no name runs them all. */
const scenarios: Record<string, () => Promise<void>> = {
  config: benchConfig,
  fire: () => benchFire(REDIS_URL),
  "cli-help": async () => benchCliHelp(),
  drain: () =>
    benchDrain({
      rotations: Number(process.env.BENCH_DRAIN_ROTATIONS ?? 2_000),
      concurrency: 64,
      latenciesMs: [0, 50],
      countedRotations: 300,
      runs: Math.max(1, Number(process.env.BENCH_DRAIN_RUNS ?? 1)),
    }),
  throttle: () => benchThrottle(REDIS_URL),
  gateway: () => benchGateway(REDIS_URL),
};
// Ctrl-C or `timeout`'s SIGTERM ends the run through exit, so the workers, simulators and servers
// it started go with it (scripts/children.ts).
process.once("SIGINT", () => process.exit(130));
process.once("SIGTERM", () => process.exit(143));

const chosen = process.argv.slice(2);
for (const name of chosen) if (!scenarios[name]) throw new Error(`unknown scenario ${name}`);

console.log(`wa-invite-rotator bench — node ${process.version}, ${new Date().toISOString()}`);
for (const [name, run] of Object.entries(scenarios))
  if (chosen.length === 0 || chosen.includes(name)) await run();
