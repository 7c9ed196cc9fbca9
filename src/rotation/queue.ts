import { createHash, randomUUID } from "node:crypto";
import { Queue, type ConnectionOptions, type JobsOptions } from "bullmq";
import type { Keys } from "../core/keys.js";
import type { RotationJobData } from "../core/interfaces.js";

/** BullMQ job name of a rotation. */
export const ROTATION_JOB = "rotate";

/** Attempts for transient failures (throttle and lock waits do not use attempts up). */
export const ROTATION_ATTEMPTS = 8;

/**
 * Default options of every rotation job: bounded exponential backoff with jitter for transient
 * failures. They are stored in each job, so how long finished jobs stay is the worker's option
 * (`finishedJobsKept`), not repeated 100,000 times per fire.
 */
export const rotationJobOptions: JobsOptions = {
  attempts: ROTATION_ATTEMPTS,
  backoff: { type: "exponential", delay: 2_000, jitter: 0.5 },
};

/**
 * How long the worker keeps finished jobs (ages in seconds). A completed job is read only by
 * `rotate --wait` (within its timeout) and by the scheduler's check of a pending mark (a missing job
 * counts as finished); a re-run of a fire recognises a published rotation by the group's
 * `last_rotation_id`, not by its job. A failed job stays a week: the account probe retries it, and
 * it resumes from its saga state. Counts cap memory whatever the rate.
 */
export const finishedJobsKept = {
  removeOnComplete: { age: 3600, count: 200_000 },
  removeOnFail: { age: 7 * 24 * 3600, count: 200_000 },
} as const;

export function createRotationQueue(keys: Keys, connection: ConnectionOptions): Queue<RotationJobData> {
  return new Queue<RotationJobData>(keys.rotationQueue, {
    connection,
    prefix: keys.prefix,
    defaultJobOptions: rotationJobOptions,
  });
}

/**
 * The rotation id of a scheduled (or catch-up) rotation: derived from its identity (policy, fire,
 * group), so every scheduler replica computes the same id and BullMQ keeps one job for it.
 */
export function scheduledRotationId(policy: string, fireAt: number, groupId: string): string {
  const digest = createHash("sha256").update(`${policy}\u0000${fireAt}\u0000${groupId}`).digest("base64url");
  return `s-${digest.slice(0, 24)}`;
}

/** A manual rotation gets a fresh id: every `rotate` asks for a new link. */
export function manualRotationId(): string {
  return `m-${randomUUID()}`;
}

/** Adds rotation jobs in bulk; the job id is the rotation id. */
export async function enqueueRotations(
  queue: Queue<RotationJobData>,
  rotations: readonly RotationJobData[],
  options: { delays?: readonly number[] } = {},
): Promise<void> {
  if (rotations.length === 0) return;
  await queue.addBulk(
    rotations.map((data, i) => ({
      name: ROTATION_JOB,
      data,
      opts: { jobId: data.rotationId, delay: options.delays?.[i] ?? 0 },
    })),
  );
}
