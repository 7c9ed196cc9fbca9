import { afterEach, describe, expect, it, vi } from "vitest";
import { parseConfigText, type ResolvedConfig, type ResolvedPolicy } from "../../src/config/config.js";
import type { FirePolicy, FireResult, FireTrigger } from "../../src/schedule/fire.js";
import { createLogger } from "../../src/infra/logger.js";
import type { PolicyStatePort } from "../../src/schedule/policy-state.js";
import { createScheduler, type Scheduler } from "../../src/schedule/scheduler.js";

/**
 * The scheduler's timer loop in virtual time (fake timers and Date): which fires it handles, in
 * which zone, across DST days and reloads. The Redis side (claims, enqueue) has its own tests.
 */
/** The policy state in memory (one replica): claims, completion and takeovers as in Redis. */
function memoryState(): PolicyStatePort & { last: Map<string, number>; done: Map<string, number> } {
  const last = new Map<string, number>();
  const done = new Map<string, number>();
  const claimed = new Map<string, { fireAt: number; trigger: FireTrigger; claimedAt: number }>();
  const missed = new Map<string, number>();
  const open = (policy: string) => {
    const c = claimed.get(policy);
    return c && (done.get(policy) ?? -Infinity) < c.fireAt ? c : undefined;
  };
  return {
    last,
    done,
    lastFire: (policy) => Promise.resolve(last.get(policy)),
    claim: (policy, fireAt, trigger = "schedule") => {
      const current = last.get(policy);
      if (current !== undefined && current >= fireAt) return Promise.resolve(false);
      last.set(policy, fireAt);
      claimed.set(policy, { fireAt, trigger, claimedAt: Date.now() });
      return Promise.resolve(true);
    },
    recordIfAbsent: (policy, fireAt) => {
      if (last.has(policy)) return Promise.resolve(false);
      last.set(policy, fireAt);
      done.set(policy, fireAt);
      return Promise.resolve(true);
    },
    markDone: (policy, fireAt) => {
      if ((done.get(policy) ?? -Infinity) < fireAt) done.set(policy, fireAt);
      return Promise.resolve();
    },
    unfinished: (policy) => Promise.resolve(open(policy)),
    renew: (policy, fireAt) => {
      const c = open(policy);
      if (c?.fireAt !== fireAt) return Promise.resolve(false);
      claimed.set(policy, { ...c, claimedAt: Date.now() });
      return Promise.resolve(true);
    },
    takeOver: (policy, fireAt, graceMs) => {
      const c = open(policy);
      if (c?.fireAt !== fireAt || Date.now() - c.claimedAt < graceMs) return Promise.resolve(false);
      claimed.set(policy, { ...c, claimedAt: Date.now() });
      return Promise.resolve(true);
    },
    noteMissed: (policy, fireAt) => {
      const previous = missed.get(policy);
      if (previous !== undefined && previous >= fireAt) return Promise.resolve(undefined);
      missed.set(policy, fireAt);
      return Promise.resolve({ previous });
    },
  };
}

function config(policies: string): ResolvedConfig {
  return parseConfigText(`policies:\n${policies}`, "scheduler-test.yaml", {}, { graphApiVersion: "v23.0" });
}

const policyYaml = (name: string, schedule: string, timezone = "UTC", groups = `["${name}-G"]`) =>
  `  - name: ${name}\n    schedule: "${schedule}"\n    timezone: ${timezone}\n    groups: ${groups}\n`;

interface Fired {
  policy: string;
  at: string;
  trigger: FireTrigger;
  groups: readonly string[] | "all";
}

/** What a fire of one group, enqueued in one chunk, returns. */
const oneGroupFired = (policy: ResolvedPolicy, fireAt: number, trigger: FireTrigger): FireResult => ({
  policy: policy.name,
  fireAt,
  trigger,
  groups: 1,
  enqueued: 1,
  skipped: [],
  chunks: 1,
});

function harness(initial: ResolvedConfig, state = memoryState(), onFire?: (fireAt: number) => void) {
  const holder = { current: initial };
  const fired: Fired[] = [];
  const fire: FirePolicy = (policy, fireAt, trigger) => {
    fired.push({ policy: policy.name, at: new Date(fireAt).toISOString(), trigger, groups: policy.groups });
    onFire?.(fireAt);
    return Promise.resolve(oneGroupFired(policy, fireAt, trigger));
  };
  const scheduler = createScheduler({
    config: () => holder.current,
    state,
    fire,
    logger: createLogger("silent"),
  });
  return { holder, fired, scheduler, state };
}

let running: Scheduler | undefined;
afterEach(async () => {
  await running?.stop();
  running = undefined;
  vi.useRealTimers();
});

async function runBetween(h: ReturnType<typeof harness>, from: string, to: string): Promise<string[]> {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
  vi.setSystemTime(new Date(from));
  running = h.scheduler;
  await h.scheduler.start();
  await vi.advanceTimersByTimeAsync(Date.parse(to) - Date.parse(from));
  return h.fired.map((f) => f.at);
}

describe("scheduler in Europe/Berlin across DST", () => {
  it("spring forward (2026-03-29): a 02:30 fire happens once, at 03:30 CEST", async () => {
    const h = harness(config(policyYaml("berlin", "30 2 * * *", "Europe/Berlin")));
    expect(await runBetween(h, "2026-03-28T12:00:00Z", "2026-03-30T12:00:00Z")).toEqual([
      "2026-03-29T01:30:00.000Z", // 03:30 CEST: 02:30 does not exist that night
      "2026-03-30T00:30:00.000Z", // 02:30 CEST
    ]);
  });

  it("fall back (2026-10-25): the repeated 02:30 fires once", async () => {
    const h = harness(config(policyYaml("berlin", "30 2 * * *", "Europe/Berlin")));
    expect(await runBetween(h, "2026-10-24T12:00:00Z", "2026-10-26T12:00:00Z")).toEqual([
      "2026-10-25T00:30:00.000Z", // 02:30 CEST, the first copy; not again at 01:30Z (02:30 CET)
      "2026-10-26T01:30:00.000Z", // 02:30 CET
    ]);
  });
});

describe("scheduler just after the fire spring-forward moved (Berlin, 2026-03-29 03:30 CEST)", () => {
  const moved = "2026-03-29T01:30:00.000Z"; // 02:30 does not exist that night: 03:30 CEST
  const before = Date.parse("2026-03-28T01:30:00Z"); // the night before, 02:30 CET

  /** A memory state whose previous fire is done and whose claims are counted (a spin stops the scheduler). */
  function counted(last: number, stop: () => Scheduler) {
    const state = memoryState();
    state.last.set("berlin", last);
    state.done.set("berlin", last);
    const claims: string[] = [];
    const claim = state.claim;
    state.claim = (policy, fireAt, trigger) => {
      claims.push(new Date(fireAt).toISOString());
      if (claims.length > 20) void stop().stop(); // a spinning loop: end it so the test can fail
      return claim(policy, fireAt, trigger);
    };
    return { state, claims };
  }

  it("a start a minute after it catches it up once, then fires the next night", async () => {
    const { state, claims } = counted(before, () => h.scheduler);
    const h = harness(config(policyYaml("berlin", "30 2 * * *", "Europe/Berlin")), state);
    await runBetween(h, "2026-03-29T01:31:00Z", "2026-03-30T12:00:00Z");
    expect(h.fired.map((f) => `${f.at} ${f.trigger}`)).toEqual([
      `${moved} catch-up`,
      "2026-03-30T00:30:00.000Z schedule",
    ]);
    expect(claims).toEqual([moved, "2026-03-30T00:30:00.000Z"]);
  });

  it("falling behind past it (suspended during the previous fire) takes it once, without spinning", async () => {
    const { state, claims } = counted(before - 86_400_000, () => h.scheduler);
    // The process sleeps during the 2026-03-28 fire and wakes a minute after the moved fire.
    const suspend = (fireAt: number) => {
      if (fireAt === before) vi.setSystemTime(new Date("2026-03-29T01:31:00Z"));
    };
    const h = harness(config(policyYaml("berlin", "30 2 * * *", "Europe/Berlin")), state, suspend);
    await runBetween(h, "2026-03-28T01:29:50Z", "2026-03-29T12:00:00Z");
    expect(h.fired.map((f) => `${f.at} ${f.trigger}`)).toEqual([
      "2026-03-28T01:30:00.000Z schedule",
      `${moved} schedule`, // the fall-behind path takes the newest due fire: the moved one
      "2026-03-30T00:30:00.000Z schedule",
    ]);
    expect(claims).toHaveLength(3);
  });
});

describe("scheduler in America/New_York across DST", () => {
  it("spring forward (2026-03-08): a 02:30 fire happens once, at 03:30 EDT", async () => {
    const h = harness(config(policyYaml("ny", "30 2 * * *", "America/New_York")));
    expect(await runBetween(h, "2026-03-07T12:00:00Z", "2026-03-09T12:00:00Z")).toEqual([
      "2026-03-08T07:30:00.000Z",
      "2026-03-09T06:30:00.000Z",
    ]);
  });

  it("fall back (2026-11-01): the repeated 01:30 fires once", async () => {
    const h = harness(config(policyYaml("ny", "30 1 * * *", "America/New_York")));
    expect(await runBetween(h, "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z")).toEqual([
      "2026-11-01T05:30:00.000Z", // 01:30 EDT; not again at 06:30Z (01:30 EST)
      "2026-11-02T06:30:00.000Z",
    ]);
  });
});

describe("scheduler loop", () => {
  it("fires each due instant once with trigger schedule, and never before it is due", async () => {
    const h = harness(config(policyYaml("fast", "*/10 * * * * *")));
    const at = await runBetween(h, "2026-05-04T10:00:01Z", "2026-05-04T10:00:35Z");
    expect(at).toEqual(["2026-05-04T10:00:10.000Z", "2026-05-04T10:00:20.000Z", "2026-05-04T10:00:30.000Z"]);
    expect(h.fired.every((f) => f.trigger === "schedule")).toBe(true);
    expect(h.scheduler.upcoming().get("fast")).toBe(Date.parse("2026-05-04T10:00:40Z"));
  });

  it("hands a fire another replica claimed to nobody", async () => {
    const state = memoryState();
    state.last.set("fast", Date.parse("2026-05-04T10:00:20Z")); // a replica already claimed up to :20
    const h = harness(config(policyYaml("fast", "*/10 * * * * *")), state);
    expect(await runBetween(h, "2026-05-04T10:00:01Z", "2026-05-04T10:00:35Z")).toEqual([
      "2026-05-04T10:00:30.000Z",
    ]);
  });

  it("reload: removed policies stop, added ones join at their next fire, changed schedules re-arm", async () => {
    const h = harness(
      config(
        policyYaml("gone", "*/10 * * * * *") +
          policyYaml("kept", "*/10 * * * * *") +
          policyYaml("moved", "0 * * * * *"),
      ),
    );
    await runBetween(h, "2026-05-04T10:00:01Z", "2026-05-04T10:00:25Z");
    expect(h.fired.map((f) => `${f.policy}@${f.at.slice(14, 19)}`)).toEqual([
      "gone@00:10",
      "kept@00:10",
      "gone@00:20",
      "kept@00:20",
    ]);
    h.fired.length = 0;
    h.holder.current = config(
      policyYaml("kept", "*/10 * * * * *", "UTC", '["kept-G", "H"]') +
        policyYaml("moved", "*/15 * * * * *") +
        policyYaml("added", "*/20 * * * * *", "UTC", '["N"]'),
    );
    h.scheduler.reload();
    await vi.advanceTimersByTimeAsync(36_000); // until 10:01:01
    const byTime = h.fired.map((f) => `${f.at.slice(14, 19)} ${f.policy}`).sort();
    expect(byTime.map((entry) => `${entry.split(" ")[1]}@${entry.split(" ")[0]}`)).toEqual([
      "kept@00:30",
      "moved@00:30",
      "added@00:40",
      "kept@00:40",
      "moved@00:45",
      "kept@00:50",
      "added@01:00",
      "kept@01:00",
      "moved@01:00",
    ]);
    // The kept policy's next fire uses its new group list: groups are read at fire time.
    expect(h.fired.find((f) => f.policy === "kept")?.groups).toEqual(["kept-G", "H"]);
    expect([...h.scheduler.upcoming().keys()].sort()).toEqual(["added", "kept", "moved"]);
  });

  it("stop clears every timer and waits for a fire in progress", async () => {
    let release: () => void = () => undefined;
    let finished = false;
    const holder = { current: config(policyYaml("slow", "* * * * * *")) };
    const scheduler = createScheduler({
      config: () => holder.current,
      state: memoryState(),
      fire: (policy, fireAt, trigger) =>
        new Promise((resolve) => {
          release = () => {
            finished = true;
            resolve({ policy: policy.name, fireAt, trigger, groups: 0, enqueued: 0, skipped: [], chunks: 0 });
          };
        }),
      logger: createLogger("silent"),
    });
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    vi.setSystemTime(new Date("2026-05-04T10:00:00.500Z"));
    await scheduler.start();
    await vi.advanceTimersByTimeAsync(600);
    const stopped = scheduler.stop();
    let done = false;
    void stopped.then(() => (done = true));
    await vi.advanceTimersByTimeAsync(10);
    expect(done).toBe(false);
    release();
    await stopped;
    expect(finished).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("a failed fire", () => {
  /** A scheduler whose fire fails while `fails(fireAt, attempt)` says so; records each attempt. */
  function flaky(schedule: string, fails: (fireAt: number, attempt: number) => boolean) {
    const state = memoryState();
    const attempts: string[] = [];
    const count = new Map<number, number>();
    const scheduler = createScheduler({
      config: () => config(policyYaml("p", schedule)),
      state,
      fire: (policy, fireAt, trigger) => {
        const attempt = (count.get(fireAt) ?? 0) + 1;
        count.set(fireAt, attempt);
        attempts.push(
          `${new Date(fireAt).toISOString().slice(14, 19)}@${new Date().toISOString().slice(14, 23)}`,
        );
        if (fails(fireAt, attempt)) return Promise.reject(new Error("list-groups throttled"));
        return Promise.resolve(oneGroupFired(policy, fireAt, trigger));
      },
      logger: createLogger("silent"),
    });
    running = scheduler;
    return { scheduler, state, attempts };
  }

  async function startAt(scheduler: Scheduler, from: string) {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    vi.setSystemTime(new Date(from));
    await scheduler.start();
  }

  it("is retried after 1 s, then 2 s, until it succeeds; then it is done", async () => {
    const at = Date.parse("2026-05-04T10:01:00Z");
    const f = flaky("0 * * * * *", (fireAt, attempt) => fireAt === at && attempt <= 2);
    await startAt(f.scheduler, "2026-05-04T10:00:30Z");
    await vi.advanceTimersByTimeAsync(40_000); // until 10:01:10
    expect(f.attempts).toEqual(["01:00@01:00.000", "01:00@01:01.000", "01:00@01:03.000"]);
    expect(f.state.done.get("p")).toBe(at);
    expect(await f.state.unfinished("p")).toBeUndefined();
  });

  it("is retried with doubling delays until the next fire is due, then given up; the next fire runs", async () => {
    const at = Date.parse("2026-05-04T10:00:10Z");
    const f = flaky("*/10 * * * * *", (fireAt) => fireAt === at);
    await startAt(f.scheduler, "2026-05-04T10:00:05Z");
    await vi.advanceTimersByTimeAsync(20_000); // until 10:00:25
    // 1 s, 2 s, 4 s; the next delay (8 s) would end after the 10:00:20 fire.
    expect(f.attempts).toEqual([
      "00:10@00:10.000",
      "00:10@00:11.000",
      "00:10@00:13.000",
      "00:10@00:17.000",
      "00:20@00:20.000",
    ]);
    expect(f.state.done.get("p")).toBe(Date.parse("2026-05-04T10:00:20Z"));
  });

  it("stop ends its retries at once", async () => {
    const f = flaky("*/10 * * * * *", () => true);
    await startAt(f.scheduler, "2026-05-04T10:00:05Z");
    await vi.advanceTimersByTimeAsync(5_500); // failed at 10:00:10, retries at 10:00:11
    expect(f.attempts).toEqual(["00:10@00:10.000"]);
    await f.scheduler.stop();
    expect(vi.getTimerCount()).toBe(0);
    expect(f.attempts).toHaveLength(1);
  });
});
