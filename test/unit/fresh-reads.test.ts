import { describe, expect, it } from "vitest";
import { freshReads } from "../../src/gateway/fresh-reads.js";

/** A read that answers when the test says so; `sent` counts reads sent, in order. */
function manualReads() {
  const pending: ((value: number) => void)[] = [];
  let sent = 0;
  const read = () =>
    new Promise<number>((resolve) => {
      const n = ++sent;
      pending.push(() => resolve(n));
    });
  return { read, answer: () => pending.shift()!(0), sent: () => sent };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe("freshReads", () => {
  it("never hands a visit a read sent before it arrived; visits that wait share the next read", async () => {
    const reads = manualReads();
    const reader = freshReads<string, number>(reads.read);
    const first = reader("spring");
    expect(reads.sent()).toBe(1);
    // Arrive while read 1 is out: they wait for read 2, which is not sent yet.
    const second = reader("spring");
    const third = reader("spring");
    expect(reads.sent()).toBe(1);
    reads.answer();
    expect(await first).toBe(1);
    await tick();
    expect(reads.sent()).toBe(2);
    // Arrives while read 2 is out: read 3.
    const fourth = reader("spring");
    reads.answer();
    expect(await second).toBe(2);
    expect(await third).toBe(2);
    await tick();
    reads.answer();
    expect(await fourth).toBe(3);
    expect(reads.sent()).toBe(3);
  });

  it("keeps pools apart, and a failed read fails only the visits that shared it", async () => {
    let n = 0;
    const reader = freshReads<string, number>(async (key) => {
      n++;
      if (key === "bad") throw new Error("redis down");
      return n;
    });
    await expect(reader("bad")).rejects.toThrow("redis down");
    expect(await reader("good")).toBe(2);
    expect(await Promise.all([reader("good"), reader("good")])).toEqual([3, 4]);
  });
});
