import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createAccountGate, type AccountGate } from "../../src/accounts/gate.js";
import { CUBIC_BETA, MIN_RATE } from "../../src/accounts/rate-script.js";
import type { AccountContext } from "../../src/core/interfaces.js";
import { createKeys, type Keys } from "../../src/core/keys.js";
import { GraphError } from "../../src/graph/errors.js";
import { createLogger } from "../../src/infra/logger.js";
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

function setup(options: { rate?: number; keys?: Keys; clock?: { now: number } } = {}) {
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
    maxInlineWaitMs: 0,
    clock: () => clock.now,
  });
  return { gate, keys, clock };
}

const rateOf = async (keys: Keys) => Number(await redis.hget(keys.account("number:111"), "r_rate"));

/** Lets `n` single calls through at the clock's pace; returns how many went at once. */
async function pump(gate: AccountGate, clock: { now: number }, seconds: number, perSecond: number) {
  let went = 0;
  for (let i = 0; i < seconds * perSecond; i++) {
    if ((await gate.beforeGraphCall(account, "create", `G${i % 50}`)) === undefined) went++;
    clock.now += 1000 / perSecond;
  }
  return went;
}

describe("adaptive rate per phone number", () => {
  it("starts at rate_limit and never goes above it; spaces calls in order", async () => {
    const { gate, keys } = setup({ rate: 5 });
    // Five callers at the same instant: slots 0, 200, 400, 600, 800 ms (create: one slot each).
    const waits = [];
    for (let i = 0; i < 5; i++) waits.push(await gate.beforeGraphCall(account, "create", `G${i}`));
    expect(waits[0]).toBeUndefined();
    expect(waits.slice(1)).toEqual([200, 400, 600, 800].map((ms) => Math.min(ms, 2000)));
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

  it("grows while calls succeed (CUBIC) and cuts by β on 131208, at most once a second, never below the floor", async () => {
    const { gate, keys, clock } = setup({ rate: 100 });
    await pump(gate, clock, 1, 20); // a line exists, rate at its start of 100
    expect(await rateOf(keys)).toBe(100);
    await gate.throttled(account, refused());
    const cut = await rateOf(keys);
    expect(cut).toBeCloseTo(100 * CUBIC_BETA, 5);
    // The calls that were already in flight answer 131208 too: no further cut within the second.
    await gate.throttled(account, refused());
    expect(await rateOf(keys)).toBeCloseTo(cut, 5);
    // Keep a line waiting; the rate climbs back towards 100 and stays at the ceiling.
    for (let i = 0; i < 10; i++) {
      await pump(gate, clock, 1, 200);
    }
    expect(await rateOf(keys)).toBe(100);
    // A storm of refusals, one a second, brings it far down, but never below the floor.
    for (let i = 0; i < 40; i++) {
      clock.now += 1_000;
      await gate.throttled(account, refused());
      expect(await rateOf(keys)).toBeGreaterThanOrEqual(MIN_RATE);
    }
    expect(await rateOf(keys)).toBeLessThan(10);
    // Even at the floor, the next caller gets a slot within 1/floor seconds.
    const wait = await gate.beforeGraphCall(account, "create", "Z");
    expect(wait === undefined || wait <= 2_000 / MIN_RATE).toBe(true);
  });

  it("without rate_limit starts at the default and climbs above it while a line waits", async () => {
    const { gate, keys, clock } = setup();
    await pump(gate, clock, 1, 100);
    const start = await rateOf(keys);
    expect(start).toBeCloseTo(20, 0);
    await pump(gate, clock, 5, 100);
    expect(await rateOf(keys)).toBeGreaterThan(start);
  });

  it("is one rate for every process: a cut seen by one gate slows the other", async () => {
    const first = setup({ rate: 50 });
    const second = setup({ rate: 50, keys: first.keys, clock: first.clock });
    await pump(first.gate, first.clock, 1, 10);
    await second.gate.throttled(account, refused());
    expect(await rateOf(first.keys)).toBeCloseTo(50 * CUBIC_BETA, 5);
    // The first gate's next slots are spaced at the cut rate.
    expect(await first.gate.beforeGraphCall(account, "create", "X")).toBeUndefined();
    expect(await first.gate.beforeGraphCall(account, "create", "Y")).toBe(
      Math.floor(1000 / (50 * CUBIC_BETA)),
    );
  });

  it("a refused POST comes back first in line", async () => {
    const { gate, clock } = setup({ rate: 10 });
    for (let i = 0; i < 10; i++) await gate.beforeGraphCall(account, "delete", `Q${i}`); // a line of 2 s
    await gate.throttled(account, refused("create-invite-link"), "P");
    clock.now += 10;
    const wait = await gate.beforeGraphCall(account, "create", "P");
    expect(wait === undefined || wait < 1000 / (10 * CUBIC_BETA)).toBe(true);
  });
});
