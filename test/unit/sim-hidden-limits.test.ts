import { describe, expect, it } from "vitest";
import { HiddenLimits } from "../../src/graph-sim/limits.js";

/** The simulator's hidden per-number token bucket, on a fake clock. */
describe("hidden limits", () => {
  const clock = () => {
    let now = 0;
    return { now: () => now, advance: (ms: number) => (now += ms) };
  };

  it("admits a burst, then the number's rate; refused calls take no token", () => {
    const c = clock();
    const limits = new HiddenLimits(c.now);
    limits.set({ phoneNumberId: "111", ratePerSec: 10, burst: 3 });
    expect([1, 2, 3, 4].map(() => limits.take("111"))).toEqual([true, true, true, false]);
    c.advance(50); // half a token
    expect(limits.take("111")).toBe(false);
    c.advance(50);
    expect(limits.take("111")).toBe(true);
    expect(limits.take("111")).toBe(false);
    // 1 s at 10/s refills 10 tokens, capped at the burst of 3.
    c.advance(1_000);
    expect([1, 2, 3, 4].map(() => limits.take("111"))).toEqual([true, true, true, false]);
    // Another number has no limit; a default limit gives each number its own bucket.
    expect(Array.from({ length: 20 }, () => limits.take("222")).every(Boolean)).toBe(true);
    limits.set({ ratePerSec: 1, burst: 1 });
    expect([limits.take("222"), limits.take("222"), limits.take("333")]).toEqual([true, false, true]);
    expect(limits.take("111")).toBe(false); // still its own limit
  });

  it("a limit changed mid-run applies at once and keeps what the bucket holds", () => {
    const c = clock();
    const limits = new HiddenLimits(c.now);
    limits.set({ phoneNumberId: "111", ratePerSec: 40, burst: 10 });
    for (let i = 0; i < 10; i++) limits.take("111");
    limits.set({ phoneNumberId: "111", ratePerSec: 20, burst: 10 });
    c.advance(1_000);
    let admitted = 0;
    for (let i = 0; i < 40; i++) admitted += limits.take("111") ? 1 : 0;
    expect(admitted).toBe(10); // 20 refilled, capped at the burst
    c.advance(100);
    expect([limits.take("111"), limits.take("111"), limits.take("111")]).toEqual([true, true, false]);
    limits.clear();
    expect(Array.from({ length: 50 }, () => limits.take("111")).every(Boolean)).toBe(true);
  });

  it("rejects a limit that is not a positive rate or a burst below 1", () => {
    const limits = new HiddenLimits();
    expect(() => limits.set({ ratePerSec: 0 })).toThrow(/ratePerSec/);
    expect(() => limits.set({ ratePerSec: Infinity })).toThrow(/ratePerSec/);
    expect(() => limits.set({ ratePerSec: 5, burst: 0.5 })).toThrow(/burst/);
  });
});
