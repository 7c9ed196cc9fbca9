import type { RotationJobResult } from "../../src/rotation/worker.js";
import { Queue, QueueEvents, type Job } from "bullmq";
import type { Redis } from "ioredis";
import { expect } from "vitest";
import type { GraphSimulator } from "../../src/graph-sim/simulator.js";
import type { RotationJobData } from "../../src/core/interfaces.js";
import { createKeys, type Keys } from "../../src/core/keys.js";
import { parseMessage } from "../../src/publish/message.js";
import { enqueueRotations, manualRotationId, rotationJobOptions } from "../../src/rotation/queue.js";

/** A small seeded PRNG (mulberry32): the same seed gives the same fault plan on every run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The methods of the simulator's calls for `groupId`, in order ("DELETE", "POST", …). */
export const callsOf = (sim: GraphSimulator, groupId: string) =>
  sim.calls.filter((c) => c.groupId === groupId).map((c) => c.method);

/** A scheduled rotation's job data for `groupId` of the default account's "nightly" on "test:links". */
export function rotationJob(job: {
  rotationId: string;
  groupId: string;
  fireAt?: number;
  requestedAt?: number;
}): RotationJobData {
  return {
    rotationId: job.rotationId,
    groupId: job.groupId,
    account: "default",
    policy: "nightly",
    channel: "test:links",
    trigger: "schedule",
    ...(job.fireAt !== undefined && { fireAt: job.fireAt }),
    requestedAt: job.requestedAt ?? 0,
  };
}

/** A policy file with one policy per account, each over its groups. */
export function accountsYaml(
  accounts: { name: string; tokenEnv: string; phone: string; groups: string[]; rateLimit?: number }[],
  channel: string,
): string {
  const lines = ["accounts:"];
  for (const a of accounts) {
    lines.push(`  ${a.name}:`, `    token_env: ${a.tokenEnv}`, `    phone_number_id: "${a.phone}"`);
    if (a.rateLimit !== undefined) lines.push(`    rate_limit: ${a.rateLimit}`);
  }
  lines.push("policies:");
  for (const a of accounts) {
    lines.push(
      `  - name: p-${a.name}`,
      `    account: ${a.name}`,
      `    schedule: "0 3 * * *"`,
      `    channel: "${channel}"`,
      `    groups: [${a.groups.map((g) => JSON.stringify(g)).join(", ")}]`,
    );
  }
  return lines.join("\n");
}

/** A queue handle for the tests with a short fixed retry back-off (the real one starts at 2 s). */
export interface TestQueue {
  readonly keys: Keys;
  readonly queue: Queue<RotationJobData>;
  readonly events: QueueEvents;
  /** Enqueues one manual rotation per group; resolves with the jobs. */
  rotate(
    groups: readonly { groupId: string; account: string }[],
    channel: string,
  ): Promise<Job<RotationJobData, RotationJobResult>[]>;
  close(): Promise<void>;
}

export async function openTestQueue(redis: Redis, prefix: string, backoffMs = 100): Promise<TestQueue> {
  const keys = createKeys(prefix);
  // Own connections: BullMQ does not close connections it was given, so close() does.
  const connections = [redis.duplicate(), redis.duplicate()];
  for (const c of connections) c.on("error", () => {});
  const queue = new Queue<RotationJobData>(keys.rotationQueue, {
    connection: connections[0]!,
    prefix,
    defaultJobOptions: { ...rotationJobOptions, backoff: { type: "fixed", delay: backoffMs } },
  });
  queue.on("error", () => {});
  const events = new QueueEvents(keys.rotationQueue, { connection: connections[1]!, prefix });
  events.on("error", () => {});
  await events.waitUntilReady();
  return {
    keys,
    queue,
    events,
    async rotate(groups, channel) {
      const data = groups.map(({ groupId, account }): RotationJobData => ({
        rotationId: manualRotationId(),
        groupId,
        account,
        policy: null,
        channel,
        trigger: "manual",
        requestedAt: Date.now(),
      }));
      await enqueueRotations(queue, data);
      const jobs = await Promise.all(data.map((d) => queue.getJob(d.rotationId)));
      return jobs as Job<RotationJobData, RotationJobResult>[];
    },
    async close() {
      await events.close();
      await queue.close();
      for (const c of connections) c.disconnect();
    },
  };
}

/**
 * Waits for every job; resolves with the outcome of each (its return value or error). One pair of
 * listeners on the queue's events serves all the jobs: `Job.waitUntilFinished` adds a `closing`
 * listener to the queue per job waited on, more than Node's 10 when many are waited on at once.
 */
export async function settleAll(
  jobs: readonly Job<RotationJobData, RotationJobResult>[],
  tq: Pick<TestQueue, "queue" | "events">,
  timeoutMs: number,
): Promise<(RotationJobResult | Error)[]> {
  const { queue, events } = tq;
  const outcomes = new Map<string, RotationJobResult | Error>();
  const wanted = new Set(jobs.map((job) => job.id!));
  let finish = () => {};
  const allSettled = new Promise<void>((resolve) => (finish = resolve));
  const settle = (jobId: string, outcome: RotationJobResult | Error) => {
    if (!wanted.has(jobId) || outcomes.has(jobId)) return;
    outcomes.set(jobId, outcome);
    if (outcomes.size === wanted.size) finish();
  };
  const onCompleted = (args: { jobId: string; returnvalue: unknown }) =>
    settle(args.jobId, args.returnvalue as RotationJobResult);
  const onFailed = (args: { jobId: string; failedReason: string }) =>
    settle(args.jobId, new Error(args.failedReason));
  events.on("completed", onCompleted);
  events.on("failed", onFailed);
  const timer = setTimeout(finish, timeoutMs);
  try {
    // Jobs that finished before the listeners were on: read once, now that events are heard.
    await events.waitUntilReady();
    for (const id of wanted) {
      const job = await queue.getJob(id);
      if (job?.finishedOn === undefined) continue;
      settle(id, job.failedReason ? new Error(job.failedReason) : (job.returnvalue as RotationJobResult));
    }
    if (wanted.size === 0) finish();
    await allSettled;
  } finally {
    clearTimeout(timer);
    events.off("completed", onCompleted);
    events.off("failed", onFailed);
  }
  return jobs.map(
    (job) =>
      outcomes.get(job.id!) ??
      new Error(`job ${job.id} did not finish within ${timeoutMs} ms (settleAll's timeout)`),
  );
}

/**
 * The worker's promise at quiescence, for each group: it has a working link; the newest published
 * link is the one Graph holds; sequences 1..n without gaps; nothing published twice (rotation id
 * or link); the group is not in the without-link index; no token in any message.
 */
export async function assertPromise(options: {
  redis: Redis;
  sim: GraphSimulator;
  keys: Keys;
  channel: string;
  groups: readonly string[];
  secrets: readonly string[];
  /** Groups expected to have published at least this many rotations. */
  minPublished?: number;
}): Promise<{ published: number }> {
  const { redis, sim, channel } = options;
  const entries = await redis.xrange(`${channel}:stream`, "-", "+");
  const messages = entries.map(([, fields]) => parseMessage(fields[1]!));
  const raw = entries.map(([, fields]) => fields[1]!).join("\n");
  for (const secret of options.secrets) expect(raw).not.toContain(secret);
  expect(await redis.smembers(options.keys.withoutLinkIndex)).toEqual([]);
  for (const groupId of options.groups) {
    const group = sim.group(groupId);
    expect(group?.link, `group ${groupId} has a working link`).toMatch(/^https:\/\/chat\.whatsapp\.com\//);
    const mine = messages.filter((m) => m.group_id === groupId);
    expect(mine.map((m) => m.sequence)).toEqual(mine.map((_, i) => i + 1));
    expect(new Set(mine.map((m) => m.rotation_id)).size).toBe(mine.length);
    expect(new Set(mine.map((m) => m.invite_link)).size).toBe(mine.length);
    if (options.minPublished !== undefined) expect(mine.length).toBeGreaterThanOrEqual(options.minPublished);
    const latest = await redis.hget(`${channel}:latest`, groupId);
    if (mine.length > 0) {
      expect(parseMessage(latest!)).toEqual(mine.at(-1));
      expect(mine.at(-1)!.invite_link, `group ${groupId}: Graph holds the newest published link`).toBe(
        group!.link,
      );
    }
  }
  return { published: messages.length };
}
