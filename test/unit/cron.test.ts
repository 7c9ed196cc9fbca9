import { describe, expect, it } from "vitest";
import {
  firesBetween,
  nextFires,
  offsetMs,
  parseSchedule,
  previousFire,
  shortestGap,
} from "../../src/config/cron.js";

const iso = (ms: number[]) => ms.map((t) => new Date(t).toISOString());
const at = (text: string) => Date.parse(text);

describe("parseSchedule", () => {
  it("accepts 5 fields and 6 with leading seconds", () => {
    expect(parseSchedule("0 3 * * *", "UTC")).toMatchObject({ ok: true, schedule: { hasSeconds: false } });
    expect(parseSchedule("*/10 * * * * *", "UTC")).toMatchObject({
      ok: true,
      schedule: { hasSeconds: true },
    });
  });

  it("rejects other field counts, macros, bad values, impossible dates and unknown zones", () => {
    for (const expr of ["* * * *", "0 0 3 * * * 2026", "@daily", "61 * * * *", "a b c d e", "0 0 31 2 *"]) {
      expect(parseSchedule(expr, "UTC"), expr).toMatchObject({ ok: false });
    }
    expect(parseSchedule("0 3 * * *", "Mars/Olympus_Mons")).toEqual({
      ok: false,
      message: "unknown time zone: Mars/Olympus_Mons",
    });
  });
});

describe("parseSchedule: H", () => {
  it("rejects H (cron-parser makes it random per parse) but keeps THU", () => {
    for (const expr of ["H 3 * * *", "0 H/2 * * *", "0 3 * * 1,H"]) {
      expect(parseSchedule(expr, "UTC"), expr).toMatchObject({
        ok: false,
        message: expect.stringContaining("H"),
      });
    }
    expect(parseSchedule("0 3 * * MON-THU", "UTC")).toMatchObject({ ok: true });
  });
});

describe("previousFire agrees with the forward sequence on DST days", () => {
  it("finds the fire that spring-forward moved (02:30 → 03:30), which a backward walk skips", () => {
    expect(previousFire("30 2 * * *", "Europe/Berlin", at("2026-03-29T01:31:00Z"))).toBe(
      at("2026-03-29T01:30:00Z"),
    );
    expect(previousFire("0 2 * * *", "America/New_York", at("2026-03-08T07:05:00Z"))).toBe(
      at("2026-03-08T07:00:00Z"),
    );
    // Havana skips midnight itself: 00:00 moves to 01:00 CDT.
    expect(previousFire("0 0 * * *", "America/Havana", at("2026-03-08T05:30:00Z"))).toBe(
      at("2026-03-08T05:00:00Z"),
    );
  });

  it("is the last forward fire before every instant of the transition days", () => {
    const cases: Array<[string, string, string]> = [
      ["30 2 * * *", "Europe/Berlin", "2026-03-28T22:00:00Z"],
      ["30 2 * * *", "Europe/Berlin", "2026-10-24T22:00:00Z"],
      ["*/30 2 * * *", "America/New_York", "2026-03-08T04:00:00Z"],
      ["0 1 * * *", "America/New_York", "2026-11-01T03:00:00Z"],
      ["0 * * * *", "Europe/London", "2026-10-24T23:00:00Z"],
      ["0 2 * * *", "Australia/Sydney", "2026-10-03T12:00:00Z"],
      ["0 0 * * *", "America/Santiago", "2026-09-05T00:00:00Z"],
    ];
    for (const [expr, zone, from] of cases) {
      const start = at(from) - 2 * 86_400_000;
      const end = at(from) + 2 * 86_400_000;
      const fires = nextFires(expr, zone, start, 200);
      // The answer changes only at a fire: check at, just after and just before each one, and every
      // 29 minutes between (about 3 ms a call: a 7-minute sweep timed out on a loaded machine).
      const instants = new Set<number>();
      for (let t = at(from); t < end; t += 29 * 60_000) instants.add(t);
      for (const fire of fires)
        if (fire >= at(from) && fire < end) for (const t of [fire - 1, fire, fire + 1]) instants.add(t);
      for (const t of instants) {
        const expected = fires.filter((fire) => fire < t).pop();
        expect(previousFire(expr, zone, t), `${expr} ${zone} before ${new Date(t).toISOString()}`).toBe(
          expected,
        );
      }
    }
  });

  it("reaches back to a yearly fire and gives undefined for none in four years", () => {
    expect(previousFire("0 0 1 1 *", "UTC", at("2026-12-02T00:00:00Z"))).toBe(at("2026-01-01T00:00:00Z"));
    expect(previousFire("0 0 29 2 *", "UTC", at("2026-12-02T00:00:00Z"))).toBe(at("2024-02-29T00:00:00Z"));
  });
});

describe("nextFires", () => {
  it("computes 5-field fires in a zone", () => {
    expect(iso(nextFires("0 3 * * *", "Europe/Berlin", at("2026-01-10T12:00:00Z"), 2))).toEqual([
      "2026-01-11T02:00:00.000Z",
      "2026-01-12T02:00:00.000Z",
    ]);
    expect(iso(nextFires("0 3 * * *", "Asia/Kolkata", at("2026-01-10T12:00:00Z"), 1))).toEqual([
      "2026-01-10T21:30:00.000Z",
    ]);
  });

  it("computes 6-field fires strictly after the given instant", () => {
    expect(iso(nextFires("*/10 * * * * *", "UTC", at("2026-01-01T00:00:10Z"), 3))).toEqual([
      "2026-01-01T00:00:20.000Z",
      "2026-01-01T00:00:30.000Z",
      "2026-01-01T00:00:40.000Z",
    ]);
  });
});

describe("DST in Europe/Berlin", () => {
  it("spring forward (2026-03-29): 02:30 does not exist, the fire moves to 03:30 CEST, once", () => {
    const fires = firesBetween(
      "30 2 * * *",
      "Europe/Berlin",
      at("2026-03-28T12:00:00Z"),
      at("2026-03-30T12:00:00Z"),
      10,
    );
    expect(iso(fires)).toEqual(["2026-03-29T01:30:00.000Z", "2026-03-30T00:30:00.000Z"]);
  });

  it("fall back (2026-10-25): 02:30 happens twice, the fire happens once (the first, CEST)", () => {
    const fires = firesBetween(
      "30 2 * * *",
      "Europe/Berlin",
      at("2026-10-24T12:00:00Z"),
      at("2026-10-26T12:00:00Z"),
      10,
    );
    expect(iso(fires)).toEqual(["2026-10-25T00:30:00.000Z", "2026-10-26T01:30:00.000Z"]);
  });

  it("fall back: asking from inside the repeated hour does not offer the second 02:30", () => {
    // 01:10Z is 02:10 CET, the second 02:10 of the day; the 02:30 fire of that day was at 00:30Z.
    expect(iso(nextFires("30 2 * * *", "Europe/Berlin", at("2026-10-25T01:10:00Z"), 1))).toEqual([
      "2026-10-26T01:30:00.000Z",
    ]);
    expect(previousFire("30 2 * * *", "Europe/Berlin", at("2026-10-25T03:00:00Z"))).toBe(
      at("2026-10-25T00:30:00Z"),
    );
  });

  it("fall back: an hourly schedule fires in both copies of the repeated hour (every real hour)", () => {
    const fires = firesBetween(
      "0 * * * *",
      "Europe/Berlin",
      at("2026-10-24T23:30:00Z"),
      at("2026-10-25T02:30:00Z"),
      10,
    );
    expect(iso(fires)).toEqual([
      "2026-10-25T00:00:00.000Z",
      "2026-10-25T01:00:00.000Z",
      "2026-10-25T02:00:00.000Z",
    ]);
    // The same answer when asking one fire at a time from each fire, as a scheduler does.
    let cursor = at("2026-10-24T23:30:00Z");
    const stepwise: number[] = [];
    for (let i = 0; i < 3; i++) {
      cursor = nextFires("0 * * * *", "Europe/Berlin", cursor, 1)[0]!;
      stepwise.push(cursor);
    }
    expect(stepwise).toEqual(fires);
  });
});

describe("DST in America/New_York", () => {
  it("spring forward (2026-03-08): 02:30 fires once, at 03:30 EDT", () => {
    const fires = firesBetween(
      "30 2 * * *",
      "America/New_York",
      at("2026-03-07T12:00:00Z"),
      at("2026-03-09T12:00:00Z"),
      10,
    );
    expect(iso(fires)).toEqual(["2026-03-08T07:30:00.000Z", "2026-03-09T06:30:00.000Z"]);
  });

  it("fall back (2026-11-01): 02:30 exists once (EST); 01:30 happens twice and fires once", () => {
    const from = at("2026-10-31T12:00:00Z");
    const to = at("2026-11-02T12:00:00Z");
    expect(iso(firesBetween("30 2 * * *", "America/New_York", from, to, 10))).toEqual([
      "2026-11-01T07:30:00.000Z",
      "2026-11-02T07:30:00.000Z",
    ]);
    expect(iso(firesBetween("30 1 * * *", "America/New_York", from, to, 10))).toEqual([
      "2026-11-01T05:30:00.000Z",
      "2026-11-02T06:30:00.000Z",
    ]);
    expect(iso(nextFires("30 1 * * *", "America/New_York", at("2026-11-01T06:10:00Z"), 1))).toEqual([
      "2026-11-02T06:30:00.000Z",
    ]);
  });
});

describe("previousFire, firesBetween, shortestGap, offsetMs", () => {
  it("previousFire is the latest fire strictly before", () => {
    expect(previousFire("0 3 * * *", "UTC", at("2026-01-10T03:00:00Z"))).toBe(at("2026-01-09T03:00:00Z"));
    expect(previousFire("0 3 * * *", "UTC", at("2026-01-10T03:00:00.001Z"))).toBe(at("2026-01-10T03:00:00Z"));
  });

  it("firesBetween is (from, to] and honours the limit", () => {
    const fires = firesBetween(
      "0 * * * *",
      "UTC",
      at("2026-01-01T00:00:00Z"),
      at("2026-01-01T03:00:00Z"),
      10,
    );
    expect(iso(fires)).toEqual([
      "2026-01-01T01:00:00.000Z",
      "2026-01-01T02:00:00.000Z",
      "2026-01-01T03:00:00.000Z",
    ]);
    expect(
      firesBetween("0 * * * *", "UTC", at("2026-01-01T00:00:00Z"), at("2026-01-02T00:00:00Z"), 2),
    ).toHaveLength(2);
  });

  it("shortestGap finds the shortest spacing among upcoming fires", () => {
    expect(shortestGap("0 9,10 * * *", "UTC", at("2026-01-01T00:00:00Z"), 6)).toBe(3_600_000);
    // The spring-forward day is 23 hours long.
    expect(shortestGap("0 3 * * *", "Europe/Berlin", at("2026-03-27T00:00:00Z"), 4)).toBe(23 * 3_600_000);
  });

  it("offsetMs gives the zone's UTC offset", () => {
    expect(offsetMs("Europe/Berlin", at("2026-01-01T00:00:00Z"))).toBe(3_600_000);
    expect(offsetMs("Europe/Berlin", at("2026-07-01T00:00:00.250Z"))).toBe(7_200_000);
    expect(offsetMs("America/New_York", at("2026-01-01T00:00:00Z"))).toBe(-5 * 3_600_000);
  });
});
