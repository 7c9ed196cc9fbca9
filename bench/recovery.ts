import { startBenchRig } from "./harness.js";

/**
 * Recovery time after a SIGKILL with the DEFAULT lock settings (job lock 20 s, stalled check 10 s,
 * group lock 15 s): two worker processes, the first killed while its POST hangs (after DELETE);
 * measures kill → the second worker's successful POST. Run after `npm run build`:
 *
 *   node dist/bench/recovery.js [trials]      (REDIS_URL, default redis://127.0.0.1:6379)
 */
const TOKEN = "bench-token-0123456789";
const trials = Number(process.argv[2] ?? 2);
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await sleep(20);
  }
}

async function trial(n: number): Promise<number> {
  const rig = await startBenchRig({
    name: "recovery",
    redisUrl,
    token: TOKEN,
    sim: { tokens: { [TOKEN]: { name: "default" } } },
    policy: (channel) =>
      `policies:\n  - name: bench\n    schedule: "0 3 * * *"\n    channel: "${channel}"\n    groups: ["K1"]\n`,
  });
  const { sim } = rig;
  try {
    sim.inject({ kind: "hang", match: { groupId: "K1", method: "POST" } });
    const first = rig.worker();
    await first.ready;
    await rig.rotate(["K1"]);
    await until(() => sim.calls.some((c) => c.method === "POST"), 10_000);
    const second = rig.worker();
    await second.ready;
    first.child.kill("SIGKILL");
    const killedAt = Date.now();
    await until(() => sim.calls.some((c) => c.method === "POST" && c.status === 200), 60_000);
    const ms = sim.calls.find((c) => c.method === "POST" && c.status === 200)!.at - killedAt;
    console.log(`trial ${n}: resumed at POST ${ms} ms after SIGKILL`);
    return ms;
  } finally {
    await rig.close();
  }
}

const results: number[] = [];
for (let i = 1; i <= trials; i++) results.push(await trial(i));
console.log(
  `recovery after SIGKILL with default locks: min ${Math.min(...results)} ms, max ${Math.max(...results)} ms, ` +
    `mean ${Math.round(results.reduce((a, b) => a + b, 0) / results.length)} ms over ${results.length} trials`,
);
