/**
 * Throttle scenario of `npm run bench`: N groups of one phone number rotated by 1 or 2 `worker`
 * processes against the simulator with a hidden token-bucket limit on the number (burst 10).
 *
 * - efficiency = floor time / actual time, floor = 2 × N / limit (one DELETE and one POST per group
 *   at exactly the hidden limit); actual = enqueue → the last group's link published;
 * - refused = the share of Graph calls the simulator refused with 131208;
 * - link gap = how long each group was without a link (its DELETE answered → its POST answered);
 * - settle: the limit halves and later doubles back mid-run; the time until the calls follow the
 *   new limit (every later 1 s window has ≤ 10 % refused and at least 80 % of the limit done);
 * - next fire: the same groups again after a quiet spell longer than the gate's idle restart, as a
 *   schedule's next fire finds the number (its learned limit kept; the hidden bucket full again).
 */
import type { Redis } from "ioredis";
import type { GraphSimulator, SimCall } from "../src/graph-sim/simulator.js";
import { createKeys } from "../src/core/keys.js";
import { startBenchRig } from "./harness.js";

const TOKEN = "bench-throttle-token-0123456789";
const NUMBER = "15550001";
const BURST = 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  sim: GraphSimulator;
  redis: Redis;
  channel: string;
  startedAt: number;
  /** Enqueues a rotation of every group again; returns when it began (ms since the epoch). */
  again(): Promise<number>;
  /** The learned rate sampled every 250 ms (BENCH_THROTTLE_TRACE=1): [ms since start, rate]. */
  rates: Array<[number, number]>;
  close(): Promise<void>;
}

/** Starts the simulator and `processes` workers, enqueues `groups` manual rotations. */
async function start(redisUrl: string, groups: number, limit: number, processes: number): Promise<Run> {
  const rig = await startBenchRig({
    name: "throttle",
    redisUrl,
    token: TOKEN,
    sim: {
      tokens: { [TOKEN]: { name: "bench", phoneNumberId: NUMBER } },
      hiddenLimits: [{ phoneNumberId: NUMBER, ratePerSec: limit, burst: BURST }],
    },
    policy: (channel) =>
      [
        "accounts:",
        "  default:",
        "    token_env: WHATSAPP_ACCESS_TOKEN",
        `    phone_number_id: "${NUMBER}"`,
        "policies:",
        "  - name: bench",
        '    schedule: "0 3 * * *"',
        `    channel: "${channel}"`,
        '    groups: ["BENCH-PLACEHOLDER"]',
        "",
      ].join("\n"),
    env: { ROTATOR_CONCURRENCY: "64" },
  });
  const { sim, redis, prefix, channel } = rig;
  const workers = Array.from({ length: processes }, () => rig.worker());
  const rates: Array<[number, number]> = [];
  let sampler: NodeJS.Timeout | undefined;
  const close = async () => {
    clearInterval(sampler);
    await rig.close();
  };
  try {
    await Promise.all(workers.map((w) => w.ready));
    const again = async () => {
      const at = Date.now();
      await rig.rotate(
        Array.from({ length: groups }, (_, i) => `BENCH-${String(i).padStart(5, "0")}`),
        at,
      );
      return at;
    };
    const startedAt = await again();
    if (process.env.BENCH_THROTTLE_TRACE) {
      const key = createKeys(prefix).account(`number:${NUMBER}`);
      sampler = setInterval(() => {
        void redis.hget(key, "r_rate").then((r) => rates.push([Date.now() - startedAt, Number(r)]));
      }, 250);
    }
    return { sim, redis, channel, startedAt, again, rates, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/**
 * Waits until every group's link of the pass that began at `since` is published (each group has
 * a link created since, and the latest hash has a link for each); returns when the last was
 * created (ms since `since`).
 */
async function finished(run: Run, groups: number, since: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  const created = () => run.sim.calls.filter((c) => c.at >= since && c.method === "POST" && c.status === 200);
  for (;;) {
    const posted = new Set(created().map((c) => c.groupId));
    if (posted.size >= groups && (await run.redis.hlen(`${run.channel}:latest`)) >= groups) break;
    if (Date.now() > deadline) throw new Error(`not all ${groups} groups published within ${timeoutMs} ms`);
    await sleep(100);
  }
  return Math.max(...created().map((c) => c.at)) - since;
}

/**
 * BENCH_THROTTLE_TRACE=1: per 500 ms from `fromMs` to `untilMs` (ms since the first pass began),
 * calls done and refused, and the learned rate then.
 */
function trace(run: Run, untilMs: number, fromMs = 0): void {
  if (!process.env.BENCH_THROTTLE_TRACE) return;
  const first = run.sim.calls.find((c) => c.at - run.startedAt >= fromMs);
  const rows: string[] = [
    `    first Graph call ${first ? first.at - run.startedAt - fromMs : "-"} ms after the enqueue began`,
  ];
  for (let t = fromMs; t < untilMs; t += 500) {
    const window = run.sim.calls.filter((c) => c.at - run.startedAt >= t && c.at - run.startedAt < t + 500);
    const rate = run.rates.filter(([at]) => at >= t && at < t + 500).map(([, r]) => r.toFixed(1));
    rows.push(
      `    ${(t / 1000).toFixed(1).padStart(5)} s  ok ${String(window.filter((c) => c.status === 200).length).padStart(4)}` +
        `  refused ${String(window.filter((c) => c.limited).length).padStart(4)}  rate ${rate.join(" ")}`,
    );
  }
  console.log(rows.join("\n"));
}

const refusedShare = (calls: SimCall[]) => calls.filter((c) => c.limited).length / Math.max(1, calls.length);

/**
 * How long groups were without a link: DELETE answered → POST answered (both 200), per group, as
 * p50/p99 ms. Under a throttle the POST waits its turn in the number's line.
 */
function linkGaps(calls: SimCall[]): string {
  const deleted = new Map<string, number>();
  const gaps: number[] = [];
  for (const c of calls) {
    if (c.status !== 200 || !c.groupId) continue;
    if (c.method === "DELETE") deleted.set(c.groupId, c.at);
    else if (c.method === "POST" && deleted.has(c.groupId)) {
      gaps.push(c.at - deleted.get(c.groupId)!);
      deleted.delete(c.groupId);
    }
  }
  gaps.sort((a, b) => a - b);
  const at = (p: number) => gaps[Math.min(gaps.length - 1, Math.ceil((p / 100) * gaps.length) - 1)] ?? NaN;
  return `link gap p50 ${at(50)} ms p99 ${at(99)} ms`;
}

/** A quiet spell before the next fire: longer than the gate's idle restart (2 s). */
const QUIET_MS = 3_000;

async function steady(redisUrl: string, limit: number, processes: number): Promise<void> {
  const groups = limit * 5; // floor 10 s
  const floorMs = ((2 * groups) / limit) * 1000;
  const run = await start(redisUrl, groups, limit, processes);
  const line = (label: string, actualMs: number, calls: SimCall[]) =>
    console.log(
      `  ${label}  ${String(groups).padStart(4)} groups` +
        `  floor ${(floorMs / 1000).toFixed(1).padStart(5)} s  actual ${(actualMs / 1000).toFixed(1).padStart(5)} s` +
        `  efficiency ${(floorMs / actualMs).toFixed(2)}  refused ${(refusedShare(calls) * 100).toFixed(1).padStart(4)} %` +
        ` (${calls.filter((c) => c.limited).length} of ${calls.length} calls)  ${linkGaps(calls)}`,
    );
  try {
    const actualMs = await finished(run, groups, run.startedAt, floorMs * 12);
    trace(run, actualMs + 500);
    line(
      `limit ${String(limit).padStart(3)}/s  ${processes} process${processes > 1 ? "es" : "  "}`,
      actualMs,
      [...run.sim.calls],
    );
    // The next fire: the same groups after a quiet spell (a schedule's next fire, from the rate learned).
    await sleep(QUIET_MS);
    const secondAt = await run.again();
    const secondMs = await finished(run, groups, secondAt, floorMs * 12);
    trace(run, secondAt - run.startedAt + secondMs + 500, secondAt - run.startedAt);
    line(
      `  next fire (${QUIET_MS / 1000} s later)`.padEnd(25),
      secondMs,
      run.sim.calls.filter((c) => c.at >= secondAt),
    );
  } finally {
    await run.close();
  }
}

/**
 * When the calls follow a new limit set at `from` (ms since start) until `to`: the start of the
 * first 1 s window after which every window up to `to` has ≤ 10 % refused and ≥ 80 % of the limit
 * done. Undefined when it never settles.
 */
function settledAfter(calls: SimCall[], startedAt: number, from: number, to: number, limit: number) {
  for (let w = from; w + 1000 <= to; w += 250) {
    let ok = true;
    for (let s = w; s + 1000 <= to && ok; s += 250) {
      const window = calls.filter((c) => c.at - startedAt >= s && c.at - startedAt < s + 1000);
      const done = window.filter((c) => c.status === 200).length;
      ok = refusedShare(window) <= 0.1 && done >= 0.8 * limit;
    }
    if (ok) return w - from;
  }
  return undefined;
}

async function changing(redisUrl: string, limit: number, processes: number): Promise<void> {
  // limit for 10 s, half of it for 15 s, the limit again for 15 s, then the rest.
  const phases = [10_000, 15_000, 15_000];
  const groups = Math.round((limit * 10 + (limit / 2) * 15 + limit * 15 + limit * 5) / 2);
  const run = await start(redisUrl, groups, limit, processes);
  try {
    await sleep(phases[0]! - (Date.now() - run.startedAt));
    run.sim.setHiddenLimit({ phoneNumberId: NUMBER, ratePerSec: limit / 2, burst: BURST });
    const halvedAt = Date.now() - run.startedAt;
    await sleep(phases[0]! + phases[1]! - (Date.now() - run.startedAt));
    run.sim.setHiddenLimit({ phoneNumberId: NUMBER, ratePerSec: limit, burst: BURST });
    const doubledAt = Date.now() - run.startedAt;
    await sleep(phases[0]! + phases[1]! + phases[2]! - (Date.now() - run.startedAt));
    const calls = [...run.sim.calls];
    trace(run, phases[0]! + phases[1]! + phases[2]!);
    const down = settledAfter(calls, run.startedAt, halvedAt, doubledAt, limit / 2);
    const up = settledAfter(calls, run.startedAt, doubledAt, doubledAt + phases[2]!, limit);
    const fmt = (ms: number | undefined) =>
      ms === undefined ? "not settled" : `${(ms / 1000).toFixed(1)} s`;
    console.log(
      `  limit ${limit}/s → ${limit / 2}/s → ${limit}/s, ${processes} process${processes > 1 ? "es" : ""}:` +
        `  settled after halving ${fmt(down)}, after doubling ${fmt(up)}` +
        `  (refused ${(refusedShare(calls) * 100).toFixed(1)} % of ${calls.length} calls)`,
    );
  } finally {
    await run.close();
  }
}

export async function benchThrottle(redisUrl: string): Promise<void> {
  console.log(
    `\nthrottle: one phone number, hidden limit (token bucket, burst ${BURST}), worker concurrency 64; floor = 2 × groups / limit`,
  );
  // BENCH_THROTTLE_LIMITS=40 BENCH_THROTTLE_PROCESSES=1 narrows the run (the settle runs use 40/s).
  const pick = (name: string, all: number[]) =>
    process.env[name] ? process.env[name].split(",").map(Number) : all;
  const limits = pick("BENCH_THROTTLE_LIMITS", [10, 40, 200]);
  const processes = pick("BENCH_THROTTLE_PROCESSES", [1, 2]);
  for (const limit of limits) for (const n of processes) await steady(redisUrl, limit, n);
  if (limits.includes(40)) for (const n of processes) await changing(redisUrl, 40, n);
}
