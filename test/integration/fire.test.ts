import { describe, expect, vi } from "vitest";
import {
  parseConfigText,
  resolveAccount,
  type ResolvedConfig,
  type ResolvedPolicy,
} from "../../src/config/config.js";
import { createFirer, type FireDeps } from "../../src/schedule/fire.js";
import { createGraphClient } from "../../src/graph/client.js";
import { jitterOffset } from "../../src/config/jitter.js";
import { createKeys } from "../../src/core/keys.js";
import { createLogger } from "../../src/infra/logger.js";
import { createMetrics } from "../../src/infra/metrics.js";
import { createPolicyState } from "../../src/schedule/policy-state.js";
import { createRotationQueue, scheduledRotationId } from "../../src/rotation/queue.js";
import { createRotationStateStore } from "../../src/rotation/state.js";
import { simTest, type Rig } from "../helpers/fixture.js";
import { TEST_TOKEN } from "../helpers/rotator.js";

/** One fire → rotation jobs, on a real Redis and BullMQ queue (no worker: the jobs stay queued). */
const it = simTest({ tokens: { [TEST_TOKEN]: { phoneNumberId: "15550001" } } });
const env = { WHATSAPP_ACCESS_TOKEN: TEST_TOKEN };

const YAML = `accounts:
  default: { token_env: WHATSAPP_ACCESS_TOKEN, phone_number_id: "15550001" }
policies:
  - name: nightly
    schedule: "0 3 * * *"
    timezone: Europe/Berlin
    jitter: 15m
    groups: ["A", "B", "C"]
  - name: everything
    schedule: "0 4 * * *"
    groups: all
  - name: fast
    schedule: "*/10 * * * * *"
    jitter: 5s
    groups: ["F1", "F2", "F3", "F4"]
`;

function load(yaml = YAML): ResolvedConfig {
  return parseConfigText(yaml, "fire-test.yaml", env, { graphApiVersion: "v23.0" });
}
const policy = (config: ResolvedConfig, name: string): ResolvedPolicy =>
  config.policies.find((p) => p.name === name)!;

/** A test's keys, its rotation queue and Graph client on the file's simulator, and `firer` over them. */
function setup(rig: Rig) {
  const { sim, redis } = rig;
  const keys = createKeys(rig.prefix("fire").prefix);
  const connection = redis.duplicate();
  const queue = createRotationQueue(keys, connection);
  const graph = createGraphClient({ baseUrl: sim.url });
  rig.defer(async () => {
    await graph.close();
    await queue.close();
    await connection.quit();
  });
  function firer(config: ResolvedConfig, now: number, extra: Partial<FireDeps> = {}) {
    const metrics = createMetrics({ collectDefault: false });
    const fire = createFirer({
      redis,
      keys,
      queue,
      graph,
      config: () => config,
      resolveAccount: (name) => resolveAccount(config, name),
      logger: createLogger("silent"),
      clock: { now: () => now },
      metrics,
      ...extra,
    });
    return { fire, metrics };
  }
  return { sim, redis, keys, queue, firer };
}

const FIRE = Date.parse("2026-05-04T01:00:00Z"); // 03:00 in Berlin

describe("fire", () => {
  it("enqueues one rotation per group, identified by (policy, fire, group), spread by stable jitter", async ({
    rig,
  }) => {
    const { redis, keys, queue, firer } = setup(rig);
    const config = load();
    const { fire, metrics } = firer(config, FIRE + 250);
    const result = await fire(policy(config, "nightly"), FIRE, "schedule");
    expect(result).toMatchObject({ groups: 3, enqueued: 3, skipped: [], chunks: 1 });
    for (const group of ["A", "B", "C"]) {
      const id = scheduledRotationId("nightly", FIRE, group);
      const job = await queue.getJob(id);
      expect(job?.data).toMatchObject({
        rotationId: id,
        groupId: group,
        policy: "nightly",
        account: "default",
        channel: "whatsapp:invite-links",
        trigger: "schedule",
        fireAt: FIRE,
        requestedAt: FIRE + 250,
      });
      // The delay counts from the fire: the group starts at fire + its stable offset.
      expect(job!.opts.delay).toBe(jitterOffset("nightly", group, 15 * 60_000) - 250);
      expect(await redis.hget(keys.group(group), "pending_rotation")).toBe(id);
    }
    expect((await metrics.fires.get()).values).toEqual([
      expect.objectContaining({ labels: { policy: "nightly", trigger: "schedule" }, value: 1 }),
    ]);
    expect((await metrics.firedRotations.get()).values[0]?.value).toBe(3);
  });

  it("clamps jitter to 90% of the gap to the next fire, so no group starts just before it", async ({
    rig,
  }) => {
    const { queue, firer } = setup(rig);
    const config = load();
    const at = Date.parse("2026-05-04T10:00:00Z");
    const { fire } = firer(config, at);
    // The file's check keeps jitter below the gap; the clamp also holds for a longer window.
    const groups = Array.from({ length: 100 }, (_, i) => `J${i}`);
    await fire({ ...policy(config, "fast"), groups, jitterMs: 3_600_000 }, at, "schedule");
    const jobs = await queue.getJobs(["delayed", "waiting"]);
    expect(jobs).toHaveLength(100);
    const delays = jobs.map((job) => job.opts.delay ?? 0);
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThan(9_000); // the next fire is at +10 s
    }
    expect(Math.max(...delays)).toBeGreaterThan(8_000);
  });

  it("skips a group whose previous rotation is still pending, counts it, and takes it again once settled", async ({
    rig,
  }) => {
    const { redis, keys, queue, firer } = setup(rig);
    const config = load();
    const nightly = policy(config, "nightly");
    const first = firer(config, FIRE);
    await first.fire(nightly, FIRE, "schedule");
    // A's and B's rotations finish; C's is still waiting or retrying when the next fire comes.
    const state = createRotationStateStore(redis, keys);
    await state.settle("A", scheduledRotationId("nightly", FIRE, "A"));
    await state.settle("B", scheduledRotationId("nightly", FIRE, "B"));

    const next = FIRE + 86_400_000;
    const second = firer(config, next);
    const result = await second.fire(nightly, next, "schedule");
    expect(result).toMatchObject({ enqueued: 2, skipped: ["C"] });
    expect(await queue.getJob(scheduledRotationId("nightly", next, "C"))).toBeUndefined();
    expect(await queue.getJob(scheduledRotationId("nightly", next, "A"))).toBeDefined();
    expect((await second.metrics.skippedFires.get()).values).toEqual([
      expect.objectContaining({ labels: { policy: "nightly", reason: "busy" }, value: 1 }),
    ]);
    // C's old mark still names the old rotation.
    expect(await redis.hget(keys.group("C"), "pending_rotation")).toBe(
      scheduledRotationId("nightly", FIRE, "C"),
    );

    await state.settle("C", scheduledRotationId("nightly", FIRE, "C"));
    for (const group of ["A", "B"]) await state.settle(group, scheduledRotationId("nightly", next, group));
    const third = await firer(config, next + 86_400_000).fire(nightly, next + 86_400_000, "schedule");
    expect(third).toMatchObject({ enqueued: 3, skipped: [] });
  });

  it("leaves out groups WhatsApp suspended or deleted (their webhooks' marks), counts them, and takes a group again once its suspension is lifted", async ({
    rig,
  }) => {
    const { redis, keys, queue, firer } = setup(rig);
    const config = load();
    const nightly = policy(config, "nightly");
    await redis.hset(keys.group("A"), "suspended_at", String(FIRE - 60_000));
    await redis.hset(keys.group("B"), "deleted_at", String(FIRE - 60_000));
    const { fire, metrics } = firer(config, FIRE);
    const result = await fire(nightly, FIRE, "schedule");
    expect(result).toMatchObject({ enqueued: 1, skipped: [], suspended: 1, deleted: 1 });
    expect(await queue.getJob(scheduledRotationId("nightly", FIRE, "A"))).toBeUndefined();
    expect(await queue.getJob(scheduledRotationId("nightly", FIRE, "B"))).toBeUndefined();
    expect(await queue.getJob(scheduledRotationId("nightly", FIRE, "C"))).toBeDefined();
    expect(await redis.hget(keys.group("A"), "pending_rotation")).toBeNull();
    expect((await metrics.skippedFires.get()).values).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ labels: { policy: "nightly", reason: "suspended" }, value: 1 }),
        expect.objectContaining({ labels: { policy: "nightly", reason: "deleted" }, value: 1 }),
      ]),
    );

    await redis.hdel(keys.group("A"), "suspended_at"); // WhatsApp lifted the suspension
    const next = FIRE + 86_400_000;
    const again = await firer(config, next).fire(nightly, next, "schedule");
    expect(again).toMatchObject({ suspended: 0, deleted: 1 });
    expect(await queue.getJob(scheduledRotationId("nightly", next, "A"))).toBeDefined();
  });

  it("treats a stale mark, or one whose job is gone, as not busy", async ({ rig }) => {
    const { redis, keys, firer } = setup(rig);
    const config = load();
    const nightly = policy(config, "nightly");
    const old = FIRE - 3 * 86_400_000;
    // A: marked 3 days ago (older than 24 h + jitter). B: its job vanished 2 minutes ago. C: fresh, job queued.
    await redis.hset(keys.group("A"), "pending_rotation", "s-old", "pending_since", String(old));
    await redis.hset(keys.group("B"), "pending_rotation", "s-gone", "pending_since", String(FIRE - 120_000));
    await firer(config, FIRE - 1000).fire({ ...nightly, groups: ["C"] }, FIRE - 1000, "schedule");
    const result = await firer(config, FIRE).fire(nightly, FIRE, "schedule");
    expect(result).toMatchObject({ enqueued: 2, skipped: ["C"] });
  });

  it("a mark whose job is still queued is busy however old (a rotation held for days is not doubled)", async ({
    rig,
  }) => {
    const { redis, keys, firer } = setup(rig);
    const config = load();
    const nightly = policy(config, "nightly");
    const daysAgo = FIRE - 3 * 86_400_000;
    // A's rotation of three days ago is still queued (held while its account failed, say).
    await firer(config, daysAgo).fire({ ...nightly, groups: ["A"] }, daysAgo, "schedule");
    const result = await firer(config, FIRE).fire(nightly, FIRE, "schedule");
    expect(result).toMatchObject({ enqueued: 2, skipped: ["A"] });
    expect(await redis.hget(keys.group("A"), "pending_rotation")).toBe(
      scheduledRotationId("nightly", daysAgo, "A"),
    );
  });

  it("enqueues a repeated fire once: the job id deduplicates, and its own mark does not count as busy", async ({
    rig,
  }) => {
    const { queue, firer } = setup(rig);
    const config = load();
    const nightly = policy(config, "nightly");
    const { fire } = firer(config, FIRE);
    await fire(nightly, FIRE, "schedule");
    const again = await fire(nightly, FIRE, "schedule");
    expect(again).toMatchObject({ enqueued: 3, skipped: [] });
    expect(await queue.count()).toBe(3);
  });

  it("a fire run again leaves out groups whose rotation of this fire already published (its job may be gone)", async ({
    rig,
  }) => {
    const { redis, keys, queue, firer } = setup(rig);
    const config = load();
    const nightly = policy(config, "nightly");
    const { fire } = firer(config, FIRE);
    await fire({ ...nightly, groups: ["A"] }, FIRE, "schedule"); // enqueued before a crash
    const idA = scheduledRotationId("nightly", FIRE, "A");
    // A's rotation published, settled and its job was removed.
    await redis.hset(keys.group("A"), "last_rotation_id", idA);
    await redis.hdel(keys.group("A"), "pending_rotation", "pending_since");
    await (await queue.getJob(idA))!.remove();
    const again = await fire(nightly, FIRE, "schedule");
    expect(again).toMatchObject({ groups: 3, enqueued: 2, skipped: [], alreadyRotated: 1 });
    expect(await queue.getJob(idA)).toBeUndefined();
    expect(await redis.hget(keys.group("A"), "pending_rotation")).toBeNull();
    expect(await queue.count()).toBe(2);
  });

  it("counts a failed fire in wa_rotator_fire_failures_total and rethrows", async ({ rig }) => {
    const { firer } = setup(rig);
    const config = load();
    const failing = { listGroups: () => Promise.reject(new Error("list-groups down")) };
    const { fire, metrics } = firer(config, FIRE, { graph: failing });
    await expect(fire(policy(config, "everything"), FIRE, "schedule")).rejects.toThrow("list-groups down");
    expect((await metrics.fireFailures.get()).values).toEqual([
      expect.objectContaining({ labels: { policy: "everything" }, value: 1 }),
    ]);
    expect(await metrics.text()).toContain('wa_rotator_fire_failures_total{policy="everything"} 1');
  });

  it("discovers groups: all across every page of the phone number's list, leaving out other policies' groups", async ({
    rig,
  }) => {
    const { sim, queue, firer } = setup(rig);
    for (let i = 0; i < 2500; i++) sim.addGroup({ id: `ALL-${i}`, phoneNumberId: "15550001" });
    sim.addGroup({ id: "A", phoneNumberId: "15550001" }); // listed by policy nightly
    const config = load();
    const result = await firer(config, FIRE).fire(policy(config, "everything"), FIRE, "schedule");
    const lists = sim.calls.filter((c) => c.method === "GET" && c.phoneNumberId === "15550001");
    expect(lists).toHaveLength(3); // 1024 + 1024 + 453
    expect(result).toMatchObject({ groups: 2500, enqueued: 2500, chunks: 3 });
    expect(await queue.getJob(scheduledRotationId("everything", FIRE, "ALL-2499"))).toBeDefined();
    expect(await queue.getJob(scheduledRotationId("everything", FIRE, "A"))).toBeUndefined();
  });

  it("enqueues a 10,000-group fire with one Lua call per 1,000 groups (delayed jobs need no addBulk)", async ({
    rig,
  }) => {
    const { redis, queue, firer } = setup(rig);
    const groups = Array.from({ length: 10_000 }, (_, i) => `BIG-${i}`);
    const yaml = `policies:\n  - name: big\n    schedule: "0 3 * * *"\n    jitter: 30m\n    groups: [${groups
      .map((g) => `"${g}"`)
      .join(", ")}]\n`;
    const config = load(yaml);
    const evals = vi.spyOn(redis, "eval");
    const bulks = vi.spyOn(queue, "addBulk");
    try {
      const result = await firer(config, FIRE).fire(policy(config, "big"), FIRE, "schedule");
      expect(result).toMatchObject({ groups: 10_000, enqueued: 10_000, chunks: 10 });
      expect(evals).toHaveBeenCalledTimes(10);
      expect(bulks).not.toHaveBeenCalled();
      expect(await queue.count()).toBe(10_000);
    } finally {
      evals.mockRestore();
      bulks.mockRestore();
    }
  });
});

describe("fire claims", () => {
  it("an unfinished fire: its holder renews it; another replica takes it over only once it is stale", async ({
    rig,
  }) => {
    const { redis, keys } = setup(rig);
    let now = FIRE;
    const holder = createPolicyState(redis, keys, () => now, "holder");
    const other = createPolicyState(redis, keys, () => now, "other");
    expect(await holder.claim("nightly", FIRE, "catch-up")).toBe(true);
    expect(await other.renew("nightly", FIRE)).toBe(false); // not its fire
    now += 30_000;
    expect(await other.takeOver("nightly", FIRE, 60_000)).toBe(false); // still in grace
    expect(await holder.renew("nightly", FIRE)).toBe(true);
    now += 59_000;
    expect(await other.takeOver("nightly", FIRE, 60_000)).toBe(false); // renewed 59 s ago
    now += 1_000;
    expect(
      await Promise.all([other.takeOver("nightly", FIRE, 60_000), holder.takeOver("nightly", FIRE, 60_000)]),
    ).toEqual([true, false]);
    expect(await other.unfinished("nightly")).toEqual({ fireAt: FIRE, trigger: "catch-up", claimedAt: now });
    expect(await holder.renew("nightly", FIRE)).toBe(false); // taken over
    await other.markDone("nightly", FIRE);
    expect(await other.renew("nightly", FIRE)).toBe(false); // done
    expect(await other.takeOver("nightly", FIRE, 0)).toBe(false);
  });

  it("a first start records a done fire; a hash without claimed_fire (older versions) has nothing unfinished", async ({
    rig,
  }) => {
    const { redis, keys } = setup(rig);
    const state = createPolicyState(redis, keys);
    expect(await state.recordIfAbsent("nightly", FIRE)).toBe(true);
    expect(await state.unfinished("nightly")).toBeUndefined();
    await redis.hset(keys.policy("legacy"), "last_fire", String(FIRE), "claimed_at", String(FIRE));
    expect(await state.unfinished("legacy")).toBeUndefined();
  });

  it("exactly one of many concurrent claimers wins a fire; an older fire cannot be claimed after a newer one", async ({
    rig,
  }) => {
    const { redis, keys } = setup(rig);
    const connections = Array.from({ length: 5 }, () => redis.duplicate());
    try {
      const claims = await Promise.all(
        connections.map((c) => createPolicyState(c, keys).claim("nightly", FIRE)),
      );
      expect(claims.filter(Boolean)).toHaveLength(1);
      const state = createPolicyState(redis, keys);
      expect(await state.lastFire("nightly")).toBe(FIRE);
      expect(await state.claim("nightly", FIRE - 1000)).toBe(false);
      expect(await state.claim("nightly", FIRE + 1000)).toBe(true);
      expect(await state.recordIfAbsent("nightly", FIRE + 5000)).toBe(false);
      expect(await state.lastFire("nightly")).toBe(FIRE + 1000);
      // Completion is recorded apart from the claim: the claimed fire is unfinished until done.
      expect(await state.unfinished("nightly")).toMatchObject({ fireAt: FIRE + 1000, trigger: "schedule" });
      await state.markDone("nightly", FIRE + 1000);
      expect(await state.unfinished("nightly")).toBeUndefined();
      await state.markDone("nightly", FIRE); // an older fire never moves done back
      expect(await state.unfinished("nightly")).toBeUndefined();
    } finally {
      await Promise.all(connections.map((c) => c.quit()));
    }
  });
});
