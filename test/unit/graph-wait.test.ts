import { describe, expect, it } from "vitest";
import { boundWait, DEFAULT_THROTTLE_MAX_MS } from "../../src/graph/wait.js";
import { retryAfterMs } from "../../src/graph/usage.js";

describe("boundWait", () => {
  const max = 15 * 60_000;
  it("keeps a wait within the maximum, in whole milliseconds", () => {
    expect(boundWait(1_500.2, max)).toEqual({ ms: 1_501, clamped: false });
    expect(boundWait(-5, max)).toEqual({ ms: 0, clamped: false });
    expect(boundWait(max, max)).toEqual({ ms: max, clamped: false });
  });

  it("cuts absurd asks to the maximum and says so", () => {
    for (const asked of [
      retryAfterMs({ "retry-after": "99999999999999" }),
      retryAfterMs({ "retry-after": "9".repeat(400) }), // Infinity
      retryAfterMs({ "retry-after": new Date(Date.now() + 365 * 86_400_000).toUTCString() }),
      retryAfterMs({
        "x-business-use-case-usage": JSON.stringify({ "1": [{ estimated_time_to_regain_access: 1e300 }] }),
      }),
      Number.NaN,
    ]) {
      const bounded = boundWait(asked ?? Number.NaN, max);
      expect(bounded).toEqual({ ms: max, clamped: true });
      expect(Number.isSafeInteger(bounded.ms)).toBe(true);
    }
  });

  it("an unusable maximum falls back to the default", () => {
    expect(boundWait(1e12, Infinity)).toEqual({ ms: DEFAULT_THROTTLE_MAX_MS, clamped: true });
  });
});
