import { Worker, type ConnectionOptions } from "bullmq";
import type { ResolvedConfig } from "../config/config.js";
import type { RotationJobData } from "../core/interfaces.js";
import type { Keys } from "../core/keys.js";
import { createAbortFanout } from "../core/abort.js";
import { onceEvery } from "../infra/redis.js";
import { Attempt, type AttemptOptions, type RotationJob, type RotationJobResult } from "./attempt.js";
import { disposition } from "./disposition.js";
import { finishedJobsKept } from "./queue.js";
import { rotateGroup, type RotationOutcome } from "./saga.js";

export type { AttemptEvent, RotatedResult, RotationJobResult, SkippedRotation } from "./attempt.js";
export { rotatedResult } from "./attempt.js";
export { disposition, type Disposition } from "./disposition.js";

/**
 * Runs rotation jobs from the queue: the BullMQ side of the rotation saga (saga.ts). One delivery
 * of a job is an `Attempt` (attempt.ts); what a failure means is decided by `disposition`.
 *
 * Maps the saga's outcomes onto the queue: a busy group, a lost group lock, a paused account or a
 * failing one (the rotation is held, before DELETE or after) moves the job back to delayed without
 * using up an attempt; a `stop` error fails it at once with the reason; a `retry` error lets
 * BullMQ retry with exponential backoff and jitter until attempts run out.
 */
export interface RotationWorkerOptions extends AttemptOptions {
  readonly keys: Keys;
  readonly connection: ConnectionOptions;
  readonly concurrency: number;
  /**
   * BullMQ job lock. A killed worker's job is taken over after at most lockDuration + stalledInterval,
   * so together they bound the recovery time after a crash (~30 s).
   */
  readonly lockDurationMs?: number;
  readonly stalledIntervalMs?: number;
  /** Wait after a Redis error before the worker fetches again. Default 1 s (BullMQ's is 15 s). */
  readonly runRetryDelayMs?: number;
  /**
   * The live config (a reload swaps it). With it, a schedule or catch-up rotation whose group its
   * policy no longer lists is skipped; without it every rotation runs.
   */
  readonly config?: () => ResolvedConfig;
}

/**
 * The rotation worker: a BullMQ worker running the saga, and the abort controller a forced close
 * uses to stop the rotations in flight between steps (a graceful close lets them finish).
 */
export class RotationWorker {
  /** The BullMQ worker (for its options and events). */
  readonly bull: Worker<RotationJobData, RotationJobResult>;
  // Not one AbortController whose signal every rotation in flight listens to: past 10 at once Node
  // prints MaxListenersExceededWarning. Each rotation gets its own signal from one fan-out.
  private readonly shutdown = createAbortFanout();
  private running = 0;

  constructor(private readonly options: RotationWorkerOptions) {
    this.bull = new Worker<RotationJobData, RotationJobResult>(
      options.keys.rotationQueue,
      (job, token) => this.process(job, token),
      {
        connection: options.connection,
        prefix: options.keys.prefix,
        concurrency: options.concurrency,
        autorun: false,
        lockDuration: options.lockDurationMs ?? 20_000,
        stalledInterval: options.stalledIntervalMs ?? 10_000,
        maxStalledCount: 10,
        // After a Redis error (a fetch, or recording a finished job) BullMQ waits this long before
        // it tries again; its 15 s default would idle the worker that long after every outage.
        runRetryDelay: options.runRetryDelayMs ?? 1_000,
        ...finishedJobsKept,
      },
    );
    this.bull.on("error", onceEvery(options.logger, "rotation worker error"));
  }

  run(): Promise<void> {
    return this.bull.run();
  }

  waitUntilReady(): Promise<unknown> {
    return this.bull.waitUntilReady();
  }

  /** Rotations in flight (a stop with Redis gone and none in flight closes at once). */
  inFlight(): number {
    return this.running;
  }

  /** A forced close aborts rotations in flight between steps; a graceful one lets them finish. */
  async close(force = false): Promise<void> {
    if (force) this.shutdown.abort(new Error("worker closed by force"));
    await this.bull.close(force);
  }

  /** One attempt of a rotation job: the saga, then what its outcome or its error means for the job. */
  private async process(job: RotationJob, token?: string): Promise<RotationJobResult> {
    const attempt = new Attempt(this.options, job, token);
    let outcome: RotationOutcome;
    try {
      // A scheduled rotation of a group its policy no longer lists (a reload removed it) ends
      // without a Graph call, unless it has already touched the group's link (then it finishes).
      // The saga asks under the group's lock, so a second delivery of a stalled job cannot skip
      // while the first is in the middle of a DELETE.
      const stop = this.shutdown.child();
      this.running++;
      try {
        outcome = await rotateGroup(job.data, this.options.deps, {
          owner: attempt.owner,
          signal: stop.signal,
          notWanted: () => removedFromPolicy(this.options.config, job.data),
        });
      } finally {
        this.running--;
        stop.dispose();
      }
    } catch (thrown) {
      const finalAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      return attempt.failed(disposition(thrown, { gate: this.options.gate !== undefined, finalAttempt }));
    }
    return attempt.finished(outcome);
  }
}

export function createRotationWorker(options: RotationWorkerOptions): RotationWorker {
  return new RotationWorker(options);
}

/** Why a schedule or catch-up rotation's group is no longer in its policy; undefined if it is. */
function removedFromPolicy(
  current: (() => ResolvedConfig) | undefined,
  data: RotationJobData,
): string | undefined {
  if (!current || data.trigger === "manual" || data.policy === null) return undefined;
  const config = current();
  const policy = config.policies.find((p) => p.name === data.policy);
  if (!policy) return `policy ${data.policy} is no longer in the policy file`;
  const owner = config.policyByGroup.get(data.groupId);
  // `groups: all` covers every group of the number except those another policy lists.
  const listed = owner?.name === policy.name || (policy.groups === "all" && owner === undefined);
  // A policy now on another account: its next fire rotates the group with that account.
  if (listed && policy.account !== data.account) {
    return `policy ${policy.name} now rotates with account ${policy.account}`;
  }
  if (listed) return undefined;
  return owner
    ? `group ${data.groupId} moved to policy ${owner.name}`
    : `policy ${policy.name} no longer lists group ${data.groupId}`;
}
