import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createAccountGate, type AccountGate } from "../../src/accounts/gate.js";
import {
  CUBIC_BETA,
  CUBIC_C,
  CUT_WINDOW_MS,
  MIN_RATE,
  RECUT_MIN_MS,
  RECUT_MIN_OK,
  SLOW_START_MS,
} from "../../src/accounts/rate-script.js";
import type { AccountContext } from "../../src/core/interfaces.js";
import { createKeys, type Keys } from "../../src/core/keys.js";
import { GraphError } from "../../src/graph/errors.js";
import { createLogger } from "../../src/infra/logger.js";
import { createMetrics, type Metrics } from "../../src/infra/metrics.js";
import { deleteKeys, testRedis, uniquePrefix } from "../helpers/redis.js";

/**
 * The adaptive per-number rate on a real Redis with a fake clock (the gate's `clock`): no test
 * here depends on how fast the machine is. `maxInlineWaitMs: 0` makes every wait a returned delay,
 * so each call's slot is visible.
 */
const redis = testRedis();
const prefixes: string[] = [];
afterEach(async () => deleteKeys(redis, ...prefixes.splice(0)));
afterAll(async () => redis.quit());

const account: AccountContext = {
  name: "a",
  token: "tok-a-123456",
  graphApiVersion: "v23.0",
  phoneNumberId: "111",
};
const refused = (operation: "delete-invite-link" | "create-invite-link" = "delete-invite-link") =>
  new GraphError({
    code: "GRAPH_THROTTLED",
    action: "throttle",
    scope: "number",
    operation,
    detail: "Rate limit hit",
    graphCode: 131208,
  });

function setup(
  options: {
    rate?: number;
    keys?: Keys;
    clock?: { now: number };
    maxInlineWaitMs?: number;
    sleep?: (ms: number) => Promise<void>;
    metrics?: Metrics;
  } = {},
) {
  let keys = options.keys;
  if (!keys) {
    const prefix = uniquePrefix("rate");
    prefixes.push(prefix);
    keys = createKeys(prefix);
  }
  const clock = options.clock ?? { now: 1_000_000 };
  const gate = createAccountGate({
    redis,
    keys,
    logger: createLogger("silent"),
    rateOf: () => options.rate,
    maxInlineWaitMs: options.maxInlineWaitMs ?? 0,
    clock: () => clock.now,
    ...(options.sleep ? { sleep: options.sleep } : {}),
    ...(options.metrics ? { metrics: options.metrics } : {}),
  });
  return { gate, keys, clock };
}

const field = async (keys: Keys, name: string) => Number(await redis.hget(keys.account("number:111"), name));
const rateOf = async (keys: Keys) => field(keys, "r_rate");

/**
 * Asks for a call `perSecond` times a second at the clock's pace; a call let go succeeds (Graph
 * answered it) unless `succeed` is false. Returns how many went at once.
 */
async function pump(
  gate: AccountGate,
  clock: { now: number },
  seconds: number,
  perSecond: number,
  succeed = true,
) {
  let went = 0;
  for (let i = 0; i < seconds * perSecond; i++) {
    if ((await gate.beforeGraphCall(account, "create", `G${i % 50}`)) === undefined) {
      went++;
      if (succeed) gate.succeeded(account.name);
    }
    clock.now += 1000 / perSecond;
  }
  return went;
}

/**
 * A backlog of `jobs` callers arriving at once, each coming back when told (its job's delay), for
 * `ms` of fake time in 1 ms steps; every call let go succeeds. Returns the calls let go a second.
 */
async function backlog(gate: AccountGate, clock: { now: number }, jobs: number, ms: number) {
  const start = clock.now;
  const at = Array.from({ length: jobs }, () => start);
  const went: number[] = [];
  for (; clock.now < start + ms; clock.now += 1) {
    for (let j = 0; j < at.length; j++) {
      if (at[j]! > clock.now) continue;
      const wait = await gate.beforeGraphCall(account, "create", `B${j}`);
      if (wait === undefined) {
        const second = Math.floor((clock.now - start) / 1000);
        went[second] = (went[second] ?? 0) + 1;
        gate.succeeded(account.name);
        at[j] = Infinity;
      } else at[j] = clock.now + wait;
    }
  }
  return went;
}

/**
 * A number that learned its limit: no rate_limit (slow start from 20/s, ceiling 1,000/s), calls
 * asked `perSecond` for 2 s, a 131208, then 3 s of CUBIC back near w_max.
 */
async function learned(perSecond: number) {
  const { gate, keys, clock } = setup();
  await pump(gate, clock, 2, perSecond);
  await gate.throttled(account, refused());
  const wmax = await field(keys, "r_wmax");
  await pump(gate, clock, 3, perSecond);
  return { gate, keys, clock, wmax };
}

describe("adaptive rate per phone number", () => {
  it("starts at rate_limit and never goes above it; spaces calls in order", async () => {
    const { gate, keys } = setup({ rate: 5 });
    // Five callers at the same instant: slots 0, 200, 400, 600, 800 ms (create: one slot each);
    // slow start cannot raise a rate at its ceiling, so each comes back for its slot.
    const waits = [];
    for (let i = 0; i < 5; i++) waits.push(await gate.beforeGraphCall(account, "create", `G${i}`));
    expect(waits[0]).toBeUndefined();
    expect(waits.slice(1)).toEqual([200, 400, 600, 800]);
    expect(await rateOf(keys)).toBe(5);
    // Mirrored on the account for `status`.
    expect(await redis.hget(keys.account("a"), "rate")).toBe("5");
  });

  it("a DELETE keeps the slot after it for its POST, so the group is not left waiting behind the line", async () => {
    const { gate, clock } = setup({ rate: 10 });
    expect(await gate.beforeGraphCall(account, "delete", "A")).toBeUndefined(); // slot 0, keeps 1 for A's POST
    expect(await gate.beforeGraphCall(account, "delete", "B")).toBe(200); // slot 2
    clock.now += 100;
    expect(await gate.beforeGraphCall(account, "create", "A")).toBeUndefined(); // its kept slot (100 ms): now
  });

  it("a DELETE pays for its POST's slot: the POST goes at once when the DELETE is answered, not behind the line; a cut between voids that", async () => {
    const slept: number[] = [];
    const { gate, clock } = setup({ rate: 10, sleep: async (ms) => void slept.push(ms) });
    const start = clock.now;
    expect(await gate.beforeGraphCall(account, "delete", "D1")).toBeUndefined(); // the line moves on 200 ms
    for (let i = 0; i < 5; i++)
      expect(await gate.beforeGraphCall(account, "create", `C${i}`)).toBeGreaterThanOrEqual(200);
    clock.now = start + 150; // D1 answered: its group has no link
    expect(await gate.beforeGraphCall(account, "create", "D1")).toBeUndefined();
    // The line did not move for it: the first in line still goes at 200 ms.
    expect(await gate.beforeGraphCall(account, "create", "C0")).toBe(50);

    // A cut between a DELETE and its POST: the POST waits (in line, first) for the new rate's
    // next slot.
    clock.now = start + 1_000;
    expect(await gate.beforeGraphCall(account, "delete", "D2")).toBeUndefined();
    clock.now += 600;
    await gate.throttled(account, refused(), "X");
    clock.now += 5;
    expect(slept).toEqual([]);
    expect(await gate.beforeGraphCall(account, "create", "D2")).toBeUndefined();
    expect(slept).toHaveLength(1);
    expect(slept[0]).toBeGreaterThan(0);
  });

  it("a slot whose holder is away (a delayed job not back yet) goes to a call that is here, spaced at the rate; a DELETE that takes one has its POST next", async () => {
    const slept: number[] = [];
    const { gate, clock } = setup({ rate: 10, sleep: async (ms) => void slept.push(ms) });
    const start = clock.now;
    // G0's DELETE goes (it pays for its POST: the line moves on 200 ms); G1-G4 are given places
    // 2-8 (200-800 ms) and their jobs are delayed: none is back.
    expect(await gate.beforeGraphCall(account, "delete", "G0")).toBeUndefined();
    for (let i = 1; i < 5; i++)
      expect(await gate.beforeGraphCall(account, "delete", `G${i}`)).toBeGreaterThan(0);
    // 250 ms on, nobody went for G1's slot: a newcomer DELETE (place 10, 750 ms away) goes now…
    clock.now = start + 250;
    expect(await gate.beforeGraphCall(account, "delete", "N")).toBeUndefined();
    // …and the rate's spacing holds: the next caller does not go within its two slots.
    expect(await gate.beforeGraphCall(account, "delete", "M")).toBeGreaterThanOrEqual(200);
    // G1 comes back late: its place is behind the line's front, it takes the next slot, no burst.
    clock.now = start + 300;
    expect(await gate.beforeGraphCall(account, "delete", "G1")).toBe(150);
    // N's POST goes at its paid slot, the one after its DELETE's (350 ms), not at its far place
    // nor behind G1 (450 ms).
    clock.now = start + 310;
    expect(await gate.beforeGraphCall(account, "create", "N")).toBeUndefined();
    expect(slept).toEqual([40]);
  });

  it("a call joins the line that is here when it ends within the inline wait, instead of waiting for a far place", async () => {
    const slept: number[] = [];
    const { gate, clock } = setup({
      rate: 10,
      maxInlineWaitMs: 300,
      sleep: async (ms) => void slept.push(ms),
    });
    const start = clock.now;
    // G0 goes, G1-G3 sleep for their slots (100-300 ms), G4-G9 are delayed: their jobs are away.
    for (let i = 0; i < 4; i++)
      expect(await gate.beforeGraphCall(account, "create", `G${i}`)).toBeUndefined();
    expect(slept).toEqual([100, 200, 300]);
    for (let i = 4; i < 10; i++)
      expect(await gate.beforeGraphCall(account, "create", `G${i}`)).toBeGreaterThan(0);
    // At 350 ms the line here ends at 400 ms: a newcomer (place 10, a slot 650 ms away) sleeps
    // 50 ms and goes after it, at the rate's spacing.
    clock.now = start + 350;
    expect(await gate.beforeGraphCall(account, "create", "N")).toBeUndefined();
    expect(slept).toEqual([100, 200, 300, 50]);
  });

  it("in slow start a call sleeps in line for at most one doubling (the rate may double meanwhile); longer waits are delayed", async () => {
    const slept: number[] = [];
    const { gate } = setup({ maxInlineWaitMs: 500, sleep: async (ms) => void slept.push(ms) });
    // No rate_limit: slow start from 20/s, calls 50 ms apart.
    const waits = [];
    for (let i = 0; i < 8; i++) waits.push(await gate.beforeGraphCall(account, "create", `S${i}`));
    expect(slept).toEqual([50, 100, 150, 200, 250]);
    expect(waits.slice(0, 6)).toEqual(Array(6).fill(undefined));
    // The next ones are delayed, back after one doubling at the soonest (not two).
    expect(waits[6]).toBeGreaterThanOrEqual(SLOW_START_MS - 100);
    expect(waits[6]).toBeLessThan(2 * SLOW_START_MS - 100);
  });

  it("cuts on 131208 from the rate that got through, by β, at most once per window, never below the floor; grows back (CUBIC) to the ceiling", async () => {
    const { gate, keys, clock } = setup({ rate: 100 });
    await pump(gate, clock, 1, 60); // the rate starts at its ceiling of 100; 60/s get through
    expect(await rateOf(keys)).toBe(100);
    await gate.throttled(account, refused());
    // Not β·100: the limit is near what got through (AWS's measuredTxRate), not the overshot rate.
    const wmax = await field(keys, "r_wmax");
    expect(wmax).toBeGreaterThan(50);
    expect(wmax).toBeLessThanOrEqual(70);
    const cut = await rateOf(keys);
    expect(cut).toBeCloseTo(wmax * CUBIC_BETA, 5);
    // The calls that were already in flight answer 131208 too: no further cut within the window.
    await gate.throttled(account, refused());
    expect(await rateOf(keys)).toBeCloseTo(cut, 5);
    // Keep a line waiting; the rate climbs back past w_max and stays at the ceiling.
    for (let i = 0; i < 6; i++) await pump(gate, clock, 1, 120);
    expect(await rateOf(keys)).toBe(100);
    // A storm of refusals, one a second, nothing getting through: down to the floor, not below.
    for (let i = 0; i < 40; i++) {
      clock.now += 1_000;
      await gate.throttled(account, refused());
      expect(await rateOf(keys)).toBeGreaterThanOrEqual(MIN_RATE);
    }
    expect(await rateOf(keys)).toBe(MIN_RATE);
    // Even at the floor, the next caller gets a slot within 1/floor seconds.
    const wait = await gate.beforeGraphCall(account, "create", "Z");
    expect(wait === undefined || wait <= 2_000 / MIN_RATE).toBe(true);
  });

  it("after a cut CUBIC probes a steady limit gently (within 20 % of w_max 2 s past its plateau) yet passes 1.5 × w_max within 4 s of it", async () => {
    const { gate, keys, clock } = setup({ rate: 100 });
    await pump(gate, clock, 1, 60);
    await gate.throttled(account, refused());
    const wmax = await field(keys, "r_wmax");
    const k = Math.cbrt((1 - CUBIC_BETA) / CUBIC_C);
    // A line keeps waiting (120/s asked); the rate follows CUBIC from the cut.
    await pump(gate, clock, k + 2, 120);
    expect(await rateOf(keys)).toBeLessThanOrEqual(1.2 * wmax);
    await pump(gate, clock, 2, 120);
    expect(await rateOf(keys)).toBeGreaterThanOrEqual(1.5 * wmax);
  });

  it("mirrors the limit it learned for status and /metrics: nothing before the first 131208, w_max after", async () => {
    const metrics = createMetrics({ collectDefault: false });
    const { gate, keys, clock } = setup({ metrics });
    await pump(gate, clock, 1, 40);
    expect(await redis.hget(keys.account("a"), "learned_limit")).toBeNull();
    expect((await metrics.learnedLimit.get()).values).toEqual([]);
    await gate.throttled(account, refused());
    const wmax = await field(keys, "r_wmax");
    expect(Number(await redis.hget(keys.account("a"), "learned_limit"))).toBeCloseTo(wmax, 5);
    expect((await metrics.learnedLimit.get()).values[0]).toMatchObject({ labels: { account: "a" } });
    expect((await metrics.learnedLimit.get()).values[0]!.value).toBeCloseTo(wmax, 5);
    // Every later call of the number's accounts carries it (another process, another account).
    clock.now += 1_000;
    await gate.beforeGraphCall({ ...account, name: "b" }, "create", "G");
    expect(Number(await redis.hget(keys.account("b"), "learned_limit"))).toBeCloseTo(wmax, 5);
  });

  it("a lone rotation now and then is no line: a quiet number's rate does not climb along CUBIC unused", async () => {
    const { gate, keys, clock } = setup(); // no rate_limit: start 20/s, ceiling 1,000/s
    expect(await pump(gate, clock, 1, 10)).toBe(10); // every call went: no ticket left behind
    await gate.throttled(account, refused()); // out of slow start: CUBIC from here
    // One rotation (its DELETE, then its POST) every 500 ms for 20 s: CUBIC's value would be
    // ~100 × w_max by then; with no line the rate stays within twice what is asked (or the start).
    for (let i = 0; i < 40; i++) {
      clock.now += 500;
      expect(await gate.beforeGraphCall(account, "delete", `L${i}`)).toBeUndefined();
      expect(await gate.beforeGraphCall(account, "create", `L${i}`)).toBeUndefined();
    }
    expect(await rateOf(keys)).toBeLessThanOrEqual(20);
  });

  it("a place left behind (a rotation that stopped after its DELETE, a job removed while delayed) is no line for long", async () => {
    const { gate, keys, clock } = setup(); // no rate_limit: start 20/s, ceiling 1,000/s
    expect(await pump(gate, clock, 1, 10)).toBe(10);
    await gate.throttled(account, refused()); // out of slow start: CUBIC from here
    // A rotation whose DELETE went and whose POST never comes (its group was deleted meanwhile)
    // leaves its POST's credit; a job delayed with a place and then removed leaves its ticket.
    clock.now += 1_000;
    expect(await gate.beforeGraphCall(account, "delete", "STOPPED")).toBeUndefined();
    for (let i = 0; i < 3; i++) await gate.beforeGraphCall(account, "delete", `REMOVED${i}`);
    expect(await redis.hlen(`${keys.account("number:111")}:tickets`)).toBe(3);
    expect(await redis.hlen(`${keys.account("number:111")}:credits`)).toBe(1);
    // Then one rotation every 500 ms for 30 s, as in a quiet week (rotate-after-joins, `rotate`).
    for (let i = 0; i < 60; i++) {
      clock.now += 500;
      expect(await gate.beforeGraphCall(account, "delete", `L${i}`)).toBeUndefined();
      expect(await gate.beforeGraphCall(account, "create", `L${i}`)).toBeUndefined();
    }
    // Counted as calls waiting forever, they let the rate climb along CUBIC to the ceiling, where
    // the next fire would start against the limit.
    expect(await rateOf(keys)).toBeLessThanOrEqual(20);
    // The next cut drops the credit whose POST never came (its slot is 30 s old).
    await gate.throttled(account, refused(), "X");
    expect(await redis.hexists(`${keys.account("number:111")}:credits`, "STOPPED")).toBe(0);
  });

  it("a second cut soon after the first starts from what got through since it (the limit itself)", async () => {
    const { gate, keys, clock } = setup({ rate: 100 });
    await pump(gate, clock, 1, 100);
    await gate.throttled(account, refused()); // w_max ≈ 100: still over a limit of 30
    const cutAt = clock.now;
    // ~30/s got through since (the first call, at the cut's instant, waits one interval: the
    // refused call took that slot)
    const went = await pump(gate, clock, 1, 30);
    expect(went).toBeGreaterThanOrEqual(29);
    await gate.throttled(account, refused());
    const since = (went * 1000) / (clock.now - cutAt);
    expect(await field(keys, "r_wmax")).toBeCloseTo(since, 5);
    expect(await rateOf(keys)).toBeCloseTo(since * CUBIC_BETA, 5);
  });

  it("a throttle within the cut window cuts again when what got through since the cut is well below the rate", async () => {
    const { gate, keys, clock } = setup({ rate: 100 });
    await pump(gate, clock, 1, 100); // 100/s got through (a burst the limit's bucket had saved)
    await gate.throttled(account, refused()); // w_max ≈ 100, rate ≈ 80: far above a limit of 20
    const first = await rateOf(keys);
    expect(first).toBeGreaterThan(70);
    // 20/s get through for a little more than RECUT_MIN_MS, well within the window: the evidence
    // is enough, and every call until the window's end would have been refused at ~80/s.
    const went = await pump(gate, clock, 0.2, 20);
    expect(went).toBeGreaterThanOrEqual(RECUT_MIN_OK);
    const elapsed = clock.now - 1_000_000 - 1_000;
    expect(elapsed).toBeLessThan(CUT_WINDOW_MS);
    expect(elapsed).toBeGreaterThanOrEqual(RECUT_MIN_MS);
    await gate.throttled(account, refused());
    expect(await field(keys, "r_wmax")).toBeCloseTo((went * 1000) / elapsed, 5);
    expect(await field(keys, "r_wmax")).toBeLessThanOrEqual(20);
    expect(await rateOf(keys)).toBeCloseTo(((went * 1000) / elapsed) * CUBIC_BETA, 5);
  });

  it("a cut takes w_max from the last half second, not the average since the last cut (which counts the climb back)", async () => {
    const { gate, keys, clock } = setup({ rate: 100 });
    await pump(gate, clock, 1, 50);
    await gate.throttled(account, refused()); // w_max ≈ 50
    await pump(gate, clock, 1, 30); // a thin line for a second: 30/s got through
    await pump(gate, clock, 1, 50); // then the limit's 50/s again
    await gate.throttled(account, refused());
    // The average since the cut is 40/s; the limit, seen in the last half second, is ~50/s.
    expect(await field(keys, "r_wmax")).toBeGreaterThan(47);
  });

  it("a call sleeping for its slot when a cut comes asks again at the new rate, keeping its place in line", async () => {
    const slept: number[] = [];
    const holder: { gate?: AccountGate } = {};
    const { gate, keys, clock } = setup({
      rate: 50,
      maxInlineWaitMs: 500,
      // While the first sleep lasts, another call of this process is refused: the rate is cut.
      sleep: async (ms) => {
        slept.push(ms);
        clock.now += ms / 2;
        if (slept.length === 1) await holder.gate!.throttled(account, refused());
        clock.now += ms - ms / 2;
      },
    });
    holder.gate = gate;
    await pump(gate, clock, 1, 40); // 40/s got through: the cut will be to ~32/s
    expect(slept).toEqual([]);
    expect(await gate.beforeGraphCall(account, "create", "S0")).toBeUndefined();
    expect(await gate.beforeGraphCall(account, "create", "S1")).toBeUndefined();
    const cutTo = await rateOf(keys);
    expect(cutTo).toBeLessThan(40);
    expect(await field(keys, "r_ep")).toBe(1);
    // S1 slept for its slot at 50/s, woke to the cut and slept again for its place at the new
    // rate, counted from the cut (before: it went after the first sleep, into an empty bucket).
    expect(slept).toHaveLength(2);
    expect(slept[1]).toBeGreaterThan(0);
    expect(slept[1]).toBeLessThanOrEqual(Math.ceil(1000 / cutTo));
  });

  it("without rate_limit starts at the default and doubles (slow start) while calls get through, until the first 131208", async () => {
    const { gate, keys, clock } = setup();
    await gate.beforeGraphCall(account, "create", "G0");
    expect(await rateOf(keys)).toBe(20);
    // Nothing reported as got through: no growth (a rate nobody tried is not raised).
    await pump(gate, clock, 1, 100, false);
    expect(await rateOf(keys)).toBe(20);
    // Successes: the rate may double every SLOW_START_MS, up to 3× what got through.
    await pump(gate, clock, 1, 400);
    const grown = await rateOf(keys);
    expect(grown).toBeGreaterThan(80);
    await gate.throttled(account, refused());
    expect(await field(keys, "r_ss")).toBe(0);
    const cut = await rateOf(keys);
    expect(cut).toBeLessThan(grown);
    // After the first cut it climbs along CUBIC: slower than doubling.
    await pump(gate, clock, 1, 400);
    expect(await rateOf(keys)).toBeLessThan(cut * 2);
  });

  it("in slow start a far place in line comes back when doubling would reach it, not every 2 doublings", async () => {
    const { gate } = setup(); // no rate_limit: slow start from 20/s
    let last: number | undefined;
    for (let i = 0; i < 200; i++) last = await gate.beforeGraphCall(account, "create", `W${i}`);
    // 199 tickets ahead at 20/s: 10 s at that rate; doubling every SLOW_START_MS, 1.2 s.
    expect(last).toBeGreaterThan(4 * SLOW_START_MS);
    expect(last).toBeLessThan(1_500);
  });

  it("calls that come back late for their slots are spaced at the rate, not let go in a burst", async () => {
    const { gate, clock } = setup({ rate: 10 });
    // Ten callers take tickets (slots 0..0.9 s), all but the first delayed.
    for (let i = 0; i < 10; i++) await gate.beforeGraphCall(account, "create", `L${i}`);
    clock.now += 5_000; // every delayed caller comes back late
    const waits = [];
    for (let i = 1; i < 10; i++) waits.push(await gate.beforeGraphCall(account, "create", `L${i}`));
    // One goes now, the next ones 100 ms apart (inline wait 0 here: returned as a delay).
    expect(waits[0]).toBeUndefined();
    expect(waits[1]).toBe(100);
  });

  it("spaces calls in fractions of a ms: a number allowed 5,000/s is not held to 1,000/s", async () => {
    const { gate } = setup({ rate: 5_000 });
    // Within one ms of the fake clock: five calls 0.2 ms apart go at once, the sixth waits 1 ms.
    const waits = [];
    for (let i = 0; i < 6; i++) waits.push(await gate.beforeGraphCall(account, "create", `F${i}`));
    expect(waits).toEqual([undefined, undefined, undefined, undefined, undefined, 1]);
  });

  it("is one rate for every process: a cut seen by one gate slows the other", async () => {
    const first = setup({ rate: 50 });
    const second = setup({ rate: 50, keys: first.keys, clock: first.clock });
    // The first process's calls get through at 40/s (it adds its successes with its next call).
    await pump(first.gate, first.clock, 1, 40);
    await second.gate.throttled(account, refused());
    const cut = await rateOf(first.keys);
    expect(cut).toBeCloseTo(40 * CUBIC_BETA, 0);
    // The first gate's next slots are spaced at the cut rate.
    first.clock.now += 100;
    expect(await first.gate.beforeGraphCall(account, "create", "X")).toBeUndefined();
    const next = await first.gate.beforeGraphCall(account, "create", "Y");
    expect(next).toBeGreaterThanOrEqual(Math.floor(1000 / (cut * 1.05)));
    expect(next).toBeLessThanOrEqual(Math.ceil(1000 / cut));
  });

  it("after a quiet spell a backlog slow-starts again up to w_max, not straight to CUBIC's far value", async () => {
    const { gate, keys, clock, wmax } = await learned(40);
    expect(wmax).toBeGreaterThan(30);
    expect(wmax).toBeLessThanOrEqual(45);
    clock.now += 60_000; // a minute with no call: CUBIC's w_max·(1 + C·(t − K)³) is far above w_max
    const went = await backlog(gate, clock, 150, 3_000);
    // The first second stays near w_max (the limit's burst aside), not hundreds a second.
    expect(went[0]).toBeLessThanOrEqual(1.5 * wmax);
    // Slow start takes it back to w_max within the second, then CUBIC carries on from w_max.
    expect(went[1]).toBeGreaterThanOrEqual(0.9 * wmax);
    expect(went[2]).toBeLessThanOrEqual(1.5 * wmax);
    expect(await field(keys, "r_ss")).toBe(0);
    expect(await field(keys, "r_wmax")).toBeCloseTo(wmax, 5);
  });

  it("after a quiet spell the next fire restarts from β·w_max, not from the start rate: a learned limit is not ramped to again", async () => {
    const { gate, keys, clock, wmax } = await learned(200);
    expect(wmax).toBeGreaterThan(150);
    clock.now += 3_600_000; // an hour with no call
    // The fire's first call finds no line yet: the rate is already β·w_max (was the start rate).
    expect(await gate.beforeGraphCall(account, "create", "first")).toBeUndefined();
    gate.succeeded(account.name);
    expect(await rateOf(keys)).toBeCloseTo(CUBIC_BETA * wmax, 5);
    const went = await backlog(gate, clock, 600, 2_000);
    // From 20/s, doubling every 250 ms, the first second got ~75 calls through; now near w_max.
    expect(went[0]).toBeGreaterThanOrEqual(0.9 * wmax);
    expect(went[0]).toBeLessThanOrEqual(1.5 * wmax);
    expect(await field(keys, "r_ss")).toBe(0);
    expect(await field(keys, "r_wmax")).toBeCloseTo(wmax, 5);
    // …and the number's hash outlives a weekly schedule's quiet week.
    expect(await redis.pttl(keys.account("number:111"))).toBeGreaterThan(7 * 86_400_000);
  });

  it("a POST waits in line longer than the inline wait instead of going back through the queue; DELETEs that come later wait behind it", async () => {
    const slept: number[] = [];
    const { gate } = setup({
      rate: 10,
      maxInlineWaitMs: 500,
      sleep: async (ms) => void slept.push(ms),
    });
    // DELETEs fill the line: each pays for two slots (200 ms); the third would wait 400 ms, the
    // fourth 600 ms: longer than the inline wait, its job is delayed.
    for (let i = 0; i < 3; i++)
      expect(await gate.beforeGraphCall(account, "delete", `D${i}`)).toBeUndefined();
    expect(slept).toEqual([200, 400]);
    expect(await gate.beforeGraphCall(account, "delete", "D3")).toBeGreaterThan(0);
    // A POST is refused (within the first cut window: no cut) and comes back: it sleeps 600 ms for
    // its slot at the line's end.
    await gate.throttled(account, refused("create-invite-link"), "P");
    expect(await gate.beforeGraphCall(account, "create", "P")).toBeUndefined();
    expect(slept).toEqual([200, 400, 600]);
    // A DELETE coming now finds the line longer still and waits behind the POST.
    expect(await gate.beforeGraphCall(account, "delete", "D4")).toBeGreaterThanOrEqual(600);
  });

  it("a refused POST takes the first free slot when refused: DELETEs that ask before it is back go after it", async () => {
    const slept: number[] = [];
    const { gate, keys, clock } = setup({
      rate: 10,
      maxInlineWaitMs: 500,
      sleep: async (ms) => void slept.push(ms),
    });
    expect(await pump(gate, clock, 2, 10)).toBe(20); // 10/s get through
    const wait = await gate.throttled(account, refused("create-invite-link"), "P"); // a cut
    const interval = 1000 / (await rateOf(keys));
    expect(wait).toBe(Math.ceil(interval)); // its slot: the next after the refused call's
    // Two DELETEs ask while P's job is delayed: they sleep for slots after P's.
    expect(await gate.beforeGraphCall(account, "delete", "E0")).toBeUndefined();
    expect(await gate.beforeGraphCall(account, "delete", "E1")).toBeUndefined();
    expect(slept).toEqual([Math.floor(2 * interval), Math.floor(4 * interval)]);
    // P is back at its slot and goes at once (as "first in line" only, it waited behind both:
    // four intervals more).
    clock.now += wait;
    expect(await gate.beforeGraphCall(account, "create", "P")).toBeUndefined();
    expect(slept).toHaveLength(2);
  });

  it("a cut keeps the turn of POSTs whose groups have no link: their paid slots move to the head of the new line", async () => {
    const slept: number[] = [];
    const { gate, keys, clock } = setup({
      rate: 10,
      maxInlineWaitMs: 500,
      sleep: async (ms) => void slept.push(ms),
    });
    expect(await pump(gate, clock, 2, 10)).toBe(20);
    await gate.throttled(account, refused(), "X0"); // the first cut
    const t0 = clock.now;
    for (const d of ["D0", "D1"]) {
      expect(await gate.beforeGraphCall(account, "delete", d)).toBeUndefined(); // asleep in line
      gate.succeeded(account.name);
    }
    // Within the cut's window P's POST is refused (no cut): it is paid the line's end.
    clock.now = t0 + 100;
    const wait = await gate.throttled(account, refused("create-invite-link"), "P");
    expect(wait).toBeGreaterThan(400);
    // A second cut: the line restarts at the new rate. D0's and D1's DELETEs went (their slots
    // have come) and their POSTs are not back: with P's, their paid slots are the new line's first
    // three, in their order.
    clock.now = t0 + 600;
    await gate.throttled(account, refused(), "X1");
    const interval = 1000 / (await rateOf(keys));
    const ep = await field(keys, "r_ep");
    const credits = await redis.hgetall(`${keys.account("number:111")}:credits`);
    const at = (n: number) => Math.ceil(clock.now + n * interval);
    expect(credits).toMatchObject({ D0: `p:${ep}:${at(1)}`, D1: `p:${ep}:${at(2)}`, P: `r:${ep}:${at(3)}` });
    // A DELETE asking now (one asleep that heard of the cut) goes after them…
    // (at 4 intervals, over the inline wait here: its job is delayed until just before then)…
    slept.length = 0;
    expect(await gate.beforeGraphCall(account, "delete", "E")).toBeGreaterThanOrEqual(3 * interval);
    // …and P, back when its job's delay ends, goes at its slot or at once, not behind E.
    clock.now = t0 + 100 + wait;
    expect(await gate.beforeGraphCall(account, "create", "P")).toBeUndefined();
    expect(slept.every((ms) => clock.now + ms <= at(3))).toBe(true);
  });

  it("a refused POST comes back first in line", async () => {
    const { gate, clock } = setup({ rate: 10 });
    for (let i = 0; i < 10; i++) await gate.beforeGraphCall(account, "delete", `Q${i}`); // a line of 2 s
    await gate.throttled(account, refused("create-invite-link"), "P");
    clock.now += 10;
    const wait = await gate.beforeGraphCall(account, "create", "P");
    // The next slot (Q0's DELETE paid for its POST's too: 200 ms), not behind Q1-Q9 (200-1,800 ms).
    expect(wait === undefined || wait <= 200 - 10).toBe(true);
  });
});
