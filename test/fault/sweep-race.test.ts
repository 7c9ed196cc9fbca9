import { expect } from "vitest";
import { accountsYaml, assertPromise, seeded, settleAll } from "../helpers/faults.js";
import { simTest, type Rig } from "../helpers/fixture.js";
import { capturingLogger, type LogLine } from "../helpers/rotator.js";

/**
 * The sweep of groups without link under load (issue 8): many rotations at once, Graph slow, the
 * sweep every 200 ms. A group is in the without-link index from its DELETE until its publish, so the
 * sweep sees rotations in flight; one that finished between the sweep's read of the index and its
 * look at the job must not count as finished without a link. No recovery rotation, no
 * `GROUP WITHOUT INVITE LINK` line, one published rotation per group.
 */
const TOKEN = "sweep-race-token-0123456789";
const GROUPS = 200;
const it = simTest({
  tokens: { [TOKEN]: { name: "acct", phoneNumberId: "3001" } },
  latencyMs: 50,
});

async function rotateAllUnderSweep(rig: Rig, faultRate: number) {
  const { sim, redis } = rig;
  const { prefix, channel } = rig.prefix("sweep-race");
  const groups = Array.from({ length: GROUPS }, (_, i) => `SR${i + 1}`);
  for (const id of groups) sim.addGroup({ id, token: TOKEN, phoneNumberId: "3001" });
  const random = seeded(80_808);
  let injected = 0;
  for (const groupId of groups) {
    // Two calls per rotation: a group gets a 5xx on one of them with twice the rate.
    if (random() < faultRate * 2) {
      sim.inject({
        kind: "error",
        status: 500,
        code: 1,
        message: "An unknown error occurred",
        match: { groupId },
      });
      injected++;
    }
  }
  const lines: LogLine[] = [];
  const app = await rig.rotator(prefix, {
    yaml: accountsYaml([{ name: "a", tokenEnv: "TOKEN_A", phone: "3001", groups }], channel),
    env: {
      TOKEN_A: TOKEN,
      ROTATOR_CONCURRENCY: "64",
      ROTATOR_ACCOUNT_PROBE_INTERVAL: "200ms",
      ROTATOR_THROTTLE_BASE: "50ms",
    },
    logger: capturingLogger(lines, "info"),
  });
  const tq = await rig.queue(prefix);
  const jobs = await tq.rotate(
    groups.map((groupId) => ({ groupId, account: "a" })),
    channel,
  );
  const results = await settleAll(jobs, tq, 60_000);
  expect(results.filter((r) => r instanceof Error)).toEqual([]);
  // Two more sweeps after the last rotation finished.
  await new Promise((r) => setTimeout(r, 600));

  const linkless = lines.filter((l) => String(l.msg).includes("GROUP WITHOUT INVITE LINK"));
  expect(linkless.map((l) => l.msg)).toEqual([]);
  const recoveries = (
    await tq.queue.getJobs(["waiting", "active", "delayed", "completed", "failed", "prioritized"])
  )
    .filter((job) => job.id?.startsWith("recover-"))
    .map((job) => job.id);
  expect(recoveries).toEqual([]);
  const { published } = await assertPromise({
    redis,
    sim,
    keys: app.keys,
    channel,
    groups,
    secrets: [TOKEN],
    minPublished: 1,
  });
  expect(published).toBe(GROUPS);
  return { injected };
}

it("the sweep never takes a rotation that just finished for one that left its group without link", async ({
  rig,
}) => {
  await rotateAllUnderSweep(rig, 0);
}, 120_000);

it("likewise with 5% of Graph calls answered 5xx", async ({ rig }) => {
  const { injected } = await rotateAllUnderSweep(rig, 0.05);
  expect(injected).toBeGreaterThan(10);
}, 120_000);
