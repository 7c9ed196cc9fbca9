import { Worker, type Job } from "bullmq";
import { expect } from "vitest";
import type { RotationJobData } from "../../src/core/interfaces.js";
import { createKeys } from "../../src/core/keys.js";
import { createRotationQueue, enqueueRotations } from "../../src/rotation/queue.js";
import { fireChunk } from "../../src/schedule/fire-chunk.js";
import { simTest, type Rig } from "../helpers/fixture.js";
import { rotationJob } from "../helpers/faults.js";

/**
 * The fire's own enqueue (fire-chunk.ts) stores a delayed job as BullMQ's addBulk does: this pins
 * it to the BullMQ version installed, so an upgrade that changes the job's layout fails here.
 */
const it = simTest();

const rotation = (rotationId: string, groupId = "120363000000000001"): RotationJobData =>
  rotationJob({ rotationId, groupId, fireAt: 1_800_000_000_000, requestedAt: 1_799_999_999_000 });

function setup(rig: Rig, name: string) {
  const { prefix } = rig.prefix(name);
  const keys = createKeys(prefix);
  const queue = createRotationQueue(keys, rig.redis);
  rig.defer(() => queue.close());
  const chunk = (rotations: RotationJobData[], delays: number[]) =>
    fireChunk(rig.redis, queue, {
      rotations,
      delays,
      now: Date.now(),
      orphanGraceMs: 60_000,
      groupKey: (groupId) => keys.group(groupId),
    });
  return { keys, queue, chunk };
}

it("stores a delayed job as BullMQ's addBulk does", async ({ rig }) => {
  const ours = setup(rig, "chunk-ours");
  const bullmq = setup(rig, "chunk-bullmq");
  const delay = 600_000;
  expect(await ours.chunk([rotation("s-1")], [delay])).toEqual([0]);
  await enqueueRotations(bullmq.queue, [rotation("s-1")], { delays: [delay] });

  const [a, b] = [
    await rig.redis.hgetall(ours.queue.toKey("s-1")),
    await rig.redis.hgetall(bullmq.queue.toKey("s-1")),
  ];
  const decoded = (job: Record<string, string>) => ({
    ...job,
    data: JSON.parse(job.data!),
    opts: JSON.parse(job.opts!),
    timestamp: "(now)",
  });
  expect(decoded(a)).toEqual(decoded(b));
  expect(Math.abs(Number(a.timestamp) - Number(b.timestamp))).toBeLessThan(5_000);

  // The delayed set's score: due time x 0x1000 (plus an order counter); the marker: the next due time.
  for (const [side, job] of [
    [ours, a],
    [bullmq, b],
  ] as const) {
    const score = Number(await rig.redis.zscore(side.queue.toKey("delayed"), "s-1"));
    expect(Math.floor(score / 0x1000)).toBe(Number(job.timestamp) + delay);
    const marker = await rig.redis.zrange(side.queue.toKey("marker"), 0, -1, "WITHSCORES");
    expect(marker).toEqual(["1", String(score / 0x1000)]);
  }
  const job = await ours.queue.getJob("s-1");
  expect(await job!.getState()).toBe("delayed");
  expect(job!.opts).toMatchObject({ attempts: 8, delay, jobId: "s-1" });
  expect(job!.data).toEqual(rotation("s-1"));
});

it("adds a rotation id once, orders jobs due in the same millisecond, and leaves jobs due now to BullMQ", async ({
  rig,
}) => {
  const { queue, chunk } = setup(rig, "chunk-dup");
  const now = [rotation("s-now", "G0")];
  const same = [rotation("s-a", "G1"), rotation("s-b", "G2")];
  expect(await chunk([...now, ...same], [0, 60_000, 60_000])).toEqual([3, 0, 0]);
  expect(await chunk(same, [60_000, 60_000])).toEqual([0, 0]);
  expect(await rig.redis.zcard(queue.toKey("delayed"))).toBe(2);
  expect(await rig.redis.exists(queue.toKey("s-now"))).toBe(0);
  const [scoreA, scoreB] = await Promise.all(
    same.map((r) => rig.redis.zscore(queue.toKey("delayed"), r.rotationId)),
  );
  expect(Math.abs(Number(scoreB) - Number(scoreA))).toBe(1);
});

it("a worker runs a job the fire added, when it is due", async ({ rig }) => {
  const { keys, queue, chunk } = setup(rig, "chunk-run");
  const seen: Job<RotationJobData>[] = [];
  const worker = new Worker<RotationJobData>(keys.rotationQueue, async (job) => void seen.push(job), {
    connection: rig.redis.duplicate(),
    prefix: keys.prefix,
  });
  rig.defer(() => worker.close());
  await worker.waitUntilReady();
  expect(await chunk([rotation("s-run")], [300])).toEqual([0]);
  await expect.poll(() => seen.length, { timeout: 10_000 }).toBe(1);
  expect(seen[0]!.data).toEqual(rotation("s-run"));
  expect(seen[0]!.opts.attempts).toBe(8);
  await expect.poll(() => queue.getCompletedCount()).toBe(1);
});
