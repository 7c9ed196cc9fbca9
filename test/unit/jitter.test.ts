import { describe, expect, it } from "vitest";
import { GAP_SHARE, jitterFraction, jitterOffset, maxJitterWindow } from "../../src/config/jitter.js";

describe("jitter", () => {
  const groups = Array.from({ length: 2000 }, (_, i) => `G${i}`);

  it("keeps every offset inside [0, jitter) and spreads the groups across the window", () => {
    const window = 15 * 60_000;
    const offsets = groups.map((g) => jitterOffset("nightly", g, window));
    for (const offset of offsets) {
      expect(Number.isInteger(offset)).toBe(true);
      expect(offset).toBeGreaterThanOrEqual(0);
      expect(offset).toBeLessThan(window);
    }
    // Ten equal slices of the window each get roughly a tenth of the groups.
    const slices = new Array<number>(10).fill(0);
    for (const offset of offsets) slices[Math.floor((offset / window) * 10)]!++;
    for (const count of slices) expect(count).toBeGreaterThan(120);
  });

  it("gives each group the same offset at every fire, in every process", () => {
    expect(jitterOffset("nightly", "G7", 60_000)).toBe(jitterOffset("nightly", "G7", 60_000));
    expect(jitterFraction("nightly", "G7")).toBe(jitterFraction("nightly", "G7"));
    // Another policy or group gives another place.
    expect(jitterFraction("weekly", "G7")).not.toBe(jitterFraction("nightly", "G7"));
    expect(jitterFraction("nightly", "G8")).not.toBe(jitterFraction("nightly", "G7"));
  });

  it("never spills past the next fire: the window is clamped to 90% of the gap", () => {
    const gap = 10_000;
    const offsets = groups.map((g) => jitterOffset("p", g, 60 * 60_000, gap));
    groups.forEach((g, i) => {
      const offset = offsets[i]!;
      // The last tenth of the gap is left for the rotations to finish before the next fire.
      expect(offset).toBeLessThan(gap * GAP_SHARE);
      expect(offset).toBeGreaterThanOrEqual(0);
      // The clamped offset keeps the group's relative place in the window.
      expect(Math.abs(offset - jitterFraction("p", g) * gap * GAP_SHARE)).toBeLessThanOrEqual(1);
    });
    expect(Math.max(...offsets)).toBeGreaterThan(gap * GAP_SHARE - 50); // the window is still used
    expect(maxJitterWindow(gap)).toBe(9_000);
    // A jitter shorter than 90% of the gap is not touched.
    expect(jitterOffset("p", "G1", 5_000, gap)).toBe(jitterOffset("p", "G1", 5_000));
    expect(jitterOffset("p", "G1", 1, 1)).toBe(0);
  });

  it("is 0 without jitter", () => {
    expect(jitterOffset("p", "G1", 0)).toBe(0);
    expect(jitterOffset("p", "G1", 5_000, 0)).toBe(0);
  });
});
