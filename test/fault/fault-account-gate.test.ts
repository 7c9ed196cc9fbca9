import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createAccountGate, tokenFingerprint, type AccountGateOptions } from "../../src/accounts/gate.js";
import { GraphError } from "../../src/graph/errors.js";
import { retryAfterMs } from "../../src/graph/usage.js";
import type { AccountContext } from "../../src/core/interfaces.js";
import { createKeys } from "../../src/core/keys.js";
import { createLogger, type Logger } from "../../src/infra/logger.js";
import { deleteKeys, testRedis, uniquePrefix } from "../helpers/redis.js";

/** The account gate on a real Redis: pauses by scope, back-off, steady rate, failing tokens. */
const redis = testRedis();
const prefixes: string[] = [];
const logger = createLogger("silent");

afterEach(async () => deleteKeys(redis, ...prefixes.splice(0)));
afterAll(async () => redis.quit());

/** An account gate on keys of its own (deleted after the test), silent unless `options` log. */
function newGate(options: Omit<AccountGateOptions, "redis" | "keys" | "logger"> & { logger?: Logger }) {
  const prefix = uniquePrefix("gate");
  prefixes.push(prefix);
  const keys = createKeys(prefix);
  const gate = createAccountGate({ redis, keys, logger, ...options });
  return { gate, keys };
}

function gateFor(options: { rate?: number; base?: number; max?: number } = {}) {
  return newGate({
    rateOf: () => options.rate,
    throttleBaseMs: options.base ?? 200,
    ...(options.max !== undefined && { throttleMaxMs: options.max }),
    recheckMs: 5_000,
  });
}

const account = (name: string, token: string, phone?: string): AccountContext => ({
  name,
  token,
  graphApiVersion: "v23.0",
  phoneNumberId: phone,
});

const throttle = (graphCode: number, scope: "account" | "number", retryAfterMs?: number) =>
  new GraphError({
    code: "GRAPH_THROTTLED",
    action: "throttle",
    scope,
    operation: "delete-invite-link",
    detail: "rate limited",
    graphCode,
    retryAfterMs,
  });

const auth = () =>
  new GraphError({
    code: "GRAPH_AUTH",
    action: "stop",
    scope: "account",
    operation: "delete-invite-link",
    detail: "Session has expired",
    graphCode: 190,
  });

describe("account gate", () => {
  it("pauses by token for app/account codes and by phone number for 131208", async () => {
    const { gate, keys } = gateFor();
    const a = account("a", "tok-a-123456", "111");
    const aTwin = account("a2", "tok-a-123456", "222"); // same token, other number
    const b = account("b", "tok-b-123456", "111"); // other token, same number
    expect(await gate.beforeGraphCall(a, "delete", "G")).toBeUndefined();

    expect(await gate.throttled(a, throttle(80007, "account", 1_000))).toBe(1_000);
    expect(await gate.beforeGraphCall(aTwin, "delete", "G")).toBeGreaterThan(900);
    expect(await gate.beforeGraphCall(b, "delete", "G")).toBeUndefined();
    // The account hash shows the pause for `status`, and never the token.
    const hash = await redis.hgetall(keys.account("a"));
    expect(Number(hash.paused_until)).toBeGreaterThan(Date.now());
    expect(JSON.stringify(hash)).not.toContain("tok-a");

    const c = account("c", "tok-c-123456", "333");
    const cOther = account("c2", "tok-c2-12345", "444");
    const cShared = account("c3", "tok-c3-12345", "333");
    await gate.throttled(c, throttle(131208, "number", 1_000));
    expect(await gate.beforeGraphCall(cShared, "create", "G")).toBeGreaterThan(900);
    expect(await gate.beforeGraphCall(cOther, "create", "G")).toBeUndefined();
  });

  it("131208 on an account without phone_number_id pauses that account, not others sharing its token", async () => {
    const { gate } = gateFor();
    const a = account("a", "tok-shared-1234");
    const twin = account("a2", "tok-shared-1234");
    await gate.throttled(a, throttle(131208, "number", 1_000));
    expect(await gate.beforeGraphCall(a, "delete", "G")).toBeGreaterThan(900);
    expect(await gate.beforeGraphCall(twin, "delete", "G")).toBeUndefined();
  });

  it("the first throttle sets the pause, the others see it; back-off grows 4x and resets after a success", async () => {
    const { gate } = gateFor({ base: 100 });
    const a = account("a", "tok-a-123456");
    const waits = await Promise.all([1, 2, 3, 4].map(() => gate.throttled(a, throttle(4, "account"))));
    expect(waits[0]).toBe(100);
    expect(Math.max(...waits)).toBeLessThanOrEqual(100);

    await new Promise((r) => setTimeout(r, 120));
    // After the pause one call goes through as a probe; the others wait for it.
    expect(await gate.beforeGraphCall(a, "delete", "G1")).toBeUndefined();
    expect(await gate.beforeGraphCall(a, "delete", "G2")).toBeGreaterThan(0);
    expect(await gate.throttled(a, throttle(4, "account"))).toBe(400);
    await new Promise((r) => setTimeout(r, 420));
    expect(await gate.beforeGraphCall(a, "delete", "G1")).toBeUndefined();
    gate.succeeded("a");
    await new Promise((r) => setTimeout(r, 50));
    expect(await gate.beforeGraphCall(a, "delete", "G2")).toBeUndefined();
    expect(await gate.throttled(a, throttle(4, "account"))).toBe(100);
  });

  it("a later, longer Retry-After lengthens a pause in progress; a shorter one or none leaves it", async () => {
    const { gate, keys } = gateFor({ base: 100 });
    const a = account("a", "tok-a-123456", "111");
    expect(await gate.throttled(a, throttle(4, "account", 1_000))).toBe(1_000);
    // Shorter, or no Retry-After: the pause keeps its end.
    expect(await gate.throttled(a, throttle(4, "account", 200))).toBeLessThanOrEqual(1_000);
    expect(await gate.throttled(a, throttle(4, "account", 200))).toBeGreaterThan(800);
    expect(await gate.throttled(a, throttle(4, "account"))).toBeGreaterThan(800);
    // Longer: the pause now ends when the later answer asked.
    expect(await gate.throttled(a, throttle(4, "account", 5_000))).toBe(5_000);
    expect(await gate.beforeGraphCall(a, "delete", "G")).toBeGreaterThan(4_500);
    expect(Number(await redis.hget(keys.account("a"), "paused_until"))).toBeGreaterThan(Date.now() + 4_500);
  });

  it("an absurd Retry-After is cut to ROTATOR_THROTTLE_MAX, logged at warn, and leaves whole state", async () => {
    const lines: string[] = [];
    const { gate, keys } = newGate({
      logger: createLogger("warn", { write: (line: string) => lines.push(line) }),
      throttleMaxMs: 60_000,
    });
    const a = account("a", "tok-a-123456", "111");
    // Retry-After: 99999999999999 (seconds), as classify reads it.
    const huge = retryAfterMs({ "retry-after": "99999999999999" })!;
    expect(await gate.throttled(a, throttle(131208, "number", huge))).toBe(60_000);
    // A pause in progress is not lengthened past the maximum either.
    expect(await gate.throttled(a, throttle(131208, "number", Infinity))).toBeLessThanOrEqual(60_000);
    const number = await redis.hgetall(keys.account("number:111"));
    expect(number.throttle_level).toBe("1");
    expect(Number.isSafeInteger(Number(number.paused_until))).toBe(true);
    expect(Number(number.paused_until)).toBeLessThanOrEqual(Date.now() + 60_000 + 1_000);
    expect(await redis.pttl(keys.account("number:111"))).toBeGreaterThan(0);
    expect(Number.isSafeInteger(Number(await redis.hget(keys.account("a"), "paused_until")))).toBe(true);
    const wait = await gate.beforeGraphCall(a, "delete", "G");
    expect(wait).toBeGreaterThan(55_000);
    expect(wait).toBeLessThanOrEqual(60_000);
    const warned = lines.map((l) => JSON.parse(l) as { level: string; msg: string; maxMs?: number });
    expect(warned.filter((l) => l.level === "warn" && l.maxMs === 60_000)).toHaveLength(2);
    expect(warned[0]?.msg).toContain("ROTATOR_THROTTLE_MAX");
  });

  it("holds an account to its steady rate across callers", async () => {
    const { gate } = gateFor({ rate: 20 });
    const a = account("a", "tok-a-123456");
    const started = Date.now();
    const results = await Promise.all(
      // POSTs take one slot each (a DELETE keeps a second for its POST).
      Array.from({ length: 10 }, (_, i) => gate.beforeGraphCall(a, "create", `G${i}`)),
    );
    expect(results.every((r) => r === undefined)).toBe(true);
    // 10 calls at 20/s: the last goes 9 intervals (450 ms) after the first.
    expect(Date.now() - started).toBeGreaterThanOrEqual(420);
  });

  it("a failing token stops rotations before DELETE, holds them after, and clears on a new token", async () => {
    const { gate, keys } = gateFor();
    const a = account("a", "tok-a-123456");
    await gate.failed(a, auth(), "G1");
    await expect(gate.beforeGraphCall(a, "delete", "G2")).rejects.toMatchObject({
      code: "E_ACCOUNT_FAILING",
    });
    expect(await gate.beforeGraphCall(a, "create", "G3")).toBe(5_000);
    const hash = await redis.hgetall(keys.account("a"));
    expect(hash).toMatchObject({
      failing_code: "GRAPH_AUTH",
      token_fingerprint: tokenFingerprint("tok-a-123456"),
      probe_group: "G1",
    });
    expect(JSON.stringify(hash)).not.toContain("tok-a-123456");

    const renewed = account("a", "tok-a-NEW-7890");
    expect(await gate.beforeGraphCall(renewed, "delete", "G2")).toBeUndefined();
    expect(await gate.failing("a")).toBeUndefined();
  });
});
