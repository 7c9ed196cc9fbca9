import { DelayedError, UnrecoverableError, Worker, type ConnectionOptions, type Job } from "bullmq";
import { randomUUID } from "node:crypto";
import { rotateGroup, type RotateGroupDeps, type RotationOutcome } from "./saga.js";
import { createAbortFanout } from "../core/abort.js";
import { AccountFailingError, LockLostError, toError } from "../core/errors.js";
import { isGraphError, isTokenFailure } from "../graph/errors.js";
import { boundWait, DEFAULT_THROTTLE_MAX_MS } from "../graph/wait.js";
import { maskLink } from "../core/invite-link.js";
import type { RotationJobData, RotationMessage } from "../core/interfaces.js";
import type { ResolvedConfig } from "../config/config.js";
import type { Keys } from "../core/keys.js";
import { onceEvery } from "../infra/redis.js";
import type { Logger } from "../infra/logger.js";
import type { RotationGate } from "./ports.js";
import { graphFields, recordFailure, withGroup } from "./failure.js";
import type { RotationStateStore } from "./state.js";

/**
 * Runs rotation jobs from the queue: the BullMQ side of the rotation saga (`saga.ts`).
 *
 * Maps the saga's outcomes onto the queue: a busy group, a lost group lock, a paused account or a
 * failing one (the rotation is held, before DELETE or after) moves the job back to delayed without
 * using up an attempt; a `stop` error fails it at once with the reason; a `retry` error lets
 * BullMQ retry with exponential backoff and jitter until attempts run out.
 */
export interface RotationWorkerOptions {
  readonly keys: Keys;
  readonly connection: ConnectionOptions;
  readonly concurrency: number;
  readonly deps: RotateGroupDeps & { readonly state: RotationStateStore };
  readonly logger: Logger;
  /**
   * BullMQ job lock. A killed worker's job is taken over after at most lockDuration + stalledInterval,
   * so together they bound the recovery time after a crash (~30 s).
   */
  readonly lockDurationMs?: number;
  readonly stalledIntervalMs?: number;
  /** Wait after a Redis error before the worker fetches again. Default 1 s (BullMQ's is 15 s). */
  readonly runRetryDelayMs?: number;
  /**
   * Throttle pauses and failing tokens, per account across processes. Without it a throttle waits
   * what Graph asked (or 1 s) for this rotation only.
   */
  readonly gate?: RotationGate;
  /**
   * The live config (a reload swaps it). With it, a schedule or catch-up rotation whose group its
   * policy no longer lists is skipped; without it every rotation runs.
   */
  readonly config?: () => ResolvedConfig;
  /** Called once per finished job attempt, for metrics. */
  readonly onAttempt?: (event: AttemptEvent) => void;
}

/** What a rotation job returns when it ends without rotating. */
export interface SkippedRotation {
  readonly skipped: "removed from policy" | "group suspended" | "group deleted";
  /** The whole reason, for `rotate --wait` and logs. */
  readonly reason?: string;
  readonly rotation_id: string;
  readonly group_id: string;
}

/**
 * What a rotation job returns when its group's link is published (by it, or by a newer rotation that
 * superseded it). BullMQ keeps it with the finished job for a day, where any dashboard shows it: so
 * the link is masked and there is no signature. `rotate --wait` reads the whole message from the
 * channel (`C:latest`, else `C:stream`) by `published_rotation_id`.
 */
export interface RotatedResult {
  readonly outcome: "published" | "superseded";
  readonly rotation_id: string;
  readonly group_id: string;
  readonly channel: string;
  /** The rotation whose message is the group's newest: this one, or the one that superseded it. */
  readonly published_rotation_id: string;
  readonly sequence: number;
  readonly rotated_at: string;
  /** Masked, as `status` shows it. */
  readonly link: string;
}

/** A rotation job's return value: what was published (masked), or why it was skipped. */
export type RotationJobResult = RotatedResult | SkippedRotation;

/** The return value of a job whose group's link is `message` (never the link or signature itself). */
export function rotatedResult(
  data: RotationJobData,
  outcome: RotatedResult["outcome"],
  message: RotationMessage,
): RotatedResult {
  return {
    outcome,
    rotation_id: data.rotationId,
    group_id: data.groupId,
    channel: data.channel,
    published_rotation_id: message.rotation_id,
    sequence: message.sequence,
    rotated_at: message.rotated_at,
    link: maskLink(message.invite_link),
  };
}

export interface AttemptEvent {
  readonly data: RotationJobData;
  readonly result:
    "published" | "superseded" | "skipped" | "busy" | "paused" | "throttled" | "retry" | "failed";
  readonly code?: string;
  readonly durationMs: number;
  readonly message?: RotationMessage;
  /** DELETE success to POST success: how long the group had no link (when this attempt saw both). */
  readonly linkGapMs?: number;
}

/** Delay before a busy group is tried again (the holder usually finishes within a second). */
const BUSY_DELAY_MS = 500;

/** The rotation worker: a BullMQ worker that also says how many rotations it has in flight. */
export type RotationWorker = Worker<RotationJobData, RotationJobResult> & { inFlight(): number };

export function createRotationWorker(options: RotationWorkerOptions): RotationWorker {
  const { deps, logger } = options;
  // Not one AbortController whose signal every rotation in flight listens to: past 10 at once Node
  // prints MaxListenersExceededWarning (a stray non-JSON line on a service's output).
  const shutdown = createAbortFanout();
  let running = 0;
  const gate = options.gate;

  const process = async (
    job: Job<RotationJobData, RotationJobResult>,
    token?: string,
  ): Promise<RotationJobResult> => {
    const started = Date.now();
    const data = job.data;
    const owner = `${job.id ?? data.rotationId}:${token ?? randomUUID()}`;
    const ids = { rotation: data.rotationId, group: data.groupId, account: data.account };
    const report = (result: AttemptEvent["result"], extra: Partial<AttemptEvent> = {}) =>
      options.onAttempt?.({ data, result, durationMs: Date.now() - started, ...extra });
    const delay = async (ms: number, result: AttemptEvent["result"], code?: string): Promise<never> => {
      await job.moveToDelayed(Date.now() + Math.max(0, Math.round(ms)), token);
      report(result, code ? { code } : {});
      throw new DelayedError();
    };

    let outcome: RotationOutcome;
    try {
      // A scheduled rotation of a group its policy no longer lists (a reload removed it) ends
      // without a Graph call, unless it has already touched the group's link (then it finishes).
      // The saga asks under the group's lock, so a second delivery of a stalled job cannot skip
      // while the first is in the middle of a DELETE.
      const stop = shutdown.child();
      running++;
      try {
        outcome = await rotateGroup(data, deps, {
          owner,
          signal: stop.signal,
          notWanted: () => removedFromPolicy(data),
        });
      } finally {
        running--;
        stop.dispose();
      }
    } catch (thrown) {
      const error = toError(thrown);
      // Throttle waits pause the whole account and never use up an attempt.
      if (isGraphError(error) && error.action === "throttle") {
        const account = accountOf(data);
        const wait =
          gate && account
            ? await gate.throttled(account, error)
            : boundWait(error.retryAfterMs ?? 1_000, DEFAULT_THROTTLE_MAX_MS).ms;
        logger.warn(
          { ...ids, code: error.code, ...graphFields(error), waitMs: wait },
          "graph throttled the rotation; waiting",
        );
        return delay(wait, "throttled", error.code);
      }
      // The attempt lost its group's lock (a stall, a Redis outage) and wrote nothing: another
      // rotation of the group may be running. Like a busy group, try again soon, no attempt used.
      if (isLockLost(error)) {
        logger.warn(
          { ...ids, code: "E_LOCK_LOST" },
          `rotation lost its group lock; trying again: ${error.message}`,
        );
        return delay(BUSY_DELAY_MS + Math.random() * BUSY_DELAY_MS, "busy", "E_LOCK_LOST");
      }
      // A failing account stopped the rotation before DELETE: hold it (no attempt used; the group
      // keeps its link) until the account recovers, with the reason on the group for `status`.
      if (error instanceof AccountFailingError && gate) {
        const reason = withGroup(data.groupId, error.message);
        // Recorded when the hold begins, not at each re-check: `status` shows since when.
        const first = await gate.hold(data.account, data.rotationId).catch(() => true);
        if (first) {
          await deps.state
            .markFailed(data.groupId, {
              rotationId: data.rotationId,
              code: error.code,
              message: reason,
              at: Date.now(),
            })
            .catch((e: unknown) =>
              logger.warn({ err: e, group: data.groupId }, "could not record why a rotation is held"),
            );
        }
        const fields = { ...ids, code: error.code };
        if (first) logger.warn(fields, `rotation held until the account recovers: ${reason}`);
        else logger.debug(fields, "rotation still held: the account is failing");
        return delay(gate.recheckMs, "paused", error.code);
      }
      if (isGraphError(error) && isTokenFailure(error) && gate) {
        const account = accountOf(data);
        if (account) await gate.failed(account, error, data.groupId);
        // After DELETE the group has no link: hold the rotation (no attempt used) until the account
        // recovers, rather than fail it for good.
        const state = await deps.state.read(data.rotationId);
        if (state.deletedAt !== undefined && state.inviteLink === undefined) {
          const reason = withGroup(data.groupId, error.message);
          await deps.state.markFailed(data.groupId, {
            rotationId: data.rotationId,
            code: error.code,
            message: reason,
            at: Date.now(),
          });
          logger.error(
            { ...ids, code: error.code, ...graphFields(error), withoutLink: true },
            `GROUP WITHOUT INVITE LINK: the account's token failed after DELETE; the rotation waits for the account to recover; ${reason}`,
          );
          return delay(gate.recheckMs, "paused", error.code);
        }
      }
      const code = isGraphError(error)
        ? error.code
        : ((error as { code?: unknown }).code?.toString() ?? "E_ROTATION");
      const stop = isGraphError(error)
        ? error.action === "stop"
        : (error as { retry?: boolean }).retry === false;
      const final = stop || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      const reason = withGroup(data.groupId, error.message);
      if (final) {
        await recordFailure({ state: deps.state, logger }, data, code, reason, error);
        report("failed", { code });
        if (stop) throw new UnrecoverableError(reason);
      } else {
        logger.warn(
          { ...ids, code, ...graphFields(error), attempt: job.attemptsMade + 1 },
          `rotation attempt failed, will retry: ${error.message}`,
        );
        report("retry", { code });
      }
      throw error;
    }

    switch (outcome.kind) {
      case "published":
        await deps.state.clearFailure(data.groupId);
        await deps.state.settle(data.groupId, data.rotationId);
        report("published", {
          message: outcome.message,
          ...(outcome.linkGapMs === undefined ? {} : { linkGapMs: outcome.linkGapMs }),
        });
        return rotatedResult(data, "published", outcome.message);
      case "superseded":
        // A newer rotation of the group published after this one's DELETE: it is done.
        await deps.state.settle(data.groupId, data.rotationId);
        report("superseded");
        if (!outcome.message) throw new Error(`group ${data.groupId}: superseded, but no message is stored`);
        return rotatedResult(data, "superseded", outcome.message);
      case "busy":
        return delay(BUSY_DELAY_MS + Math.random() * BUSY_DELAY_MS, "busy");
      case "paused":
        return delay(outcome.waitMs, "paused", outcome.code);
      case "skipped":
        await deps.state.settle(data.groupId, data.rotationId);
        // A rotation held while its account failed leaves that reason on the group: it is gone now.
        await deps.state.clearFailureOf(data.groupId, data.rotationId);
        {
          // Suspended or deleted (WhatsApp's webhooks), or no longer in its policy: no Graph call.
          const skipped =
            outcome.code === "E_GROUP_SUSPENDED"
              ? "group suspended"
              : outcome.code === "E_GROUP_DELETED"
                ? "group deleted"
                : "removed from policy";
          logger.info({ ...ids, policy: data.policy }, `rotation skipped: ${skipped} (${outcome.reason})`);
          report("skipped", { code: outcome.code ?? "E_REMOVED_FROM_POLICY" });
          const { rotationId: rotation_id, groupId: group_id } = data;
          return { skipped, reason: outcome.reason, rotation_id, group_id };
        }
    }
  };

  /** Why a schedule or catch-up rotation's group is no longer in its policy; undefined if it is. */
  const removedFromPolicy = (data: RotationJobData): string | undefined => {
    if (!options.config || data.trigger === "manual" || data.policy === null) return undefined;
    const config = options.config();
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
  };

  const accountOf = (data: RotationJobData) => {
    try {
      return deps.resolveAccount(data.account);
    } catch {
      return undefined;
    }
  };

  const worker = new Worker<RotationJobData, RotationJobResult>(options.keys.rotationQueue, process, {
    connection: options.connection,
    prefix: options.keys.prefix,
    concurrency: options.concurrency,
    autorun: false,
    lockDuration: options.lockDurationMs ?? 20_000,
    stalledInterval: options.stalledIntervalMs ?? 10_000,
    maxStalledCount: 10,
    // After a Redis error (a fetch, or recording a finished job) BullMQ waits this long before it
    // tries again; its 15 s default would idle the worker that long after every outage.
    runRetryDelay: options.runRetryDelayMs ?? 1_000,
  });
  worker.on("error", onceEvery(logger, "rotation worker error"));
  // A forced close aborts rotations in flight between steps; a graceful close lets them finish.
  const close = worker.close.bind(worker);
  worker.close = async (force?: boolean) => {
    if (force) shutdown.abort(new Error("worker closed by force"));
    return close(force);
  };
  return Object.assign(worker, { inFlight: () => running });
}

function isLockLost(error: Error): boolean {
  return error instanceof LockLostError || (error as { code?: unknown }).code === "E_LOCK_LOST";
}
