import { DelayedError, UnrecoverableError, type Job } from "bullmq";
import { randomUUID } from "node:crypto";
import type { AccountFailingError } from "../core/errors.js";
import { maskLink } from "../core/invite-link.js";
import type { RotationJobData, RotationMessage } from "../core/interfaces.js";
import { isGraphError, type GraphError } from "../graph/errors.js";
import { boundWait, DEFAULT_THROTTLE_MAX_MS } from "../graph/wait.js";
import type { Logger } from "../infra/logger.js";
import type { Disposition } from "./disposition.js";
import { graphFields, recordFailure, withGroup } from "./failure.js";
import type { RotationGate } from "./ports.js";
import type { RotateGroupDeps, RotationOutcome } from "./saga.js";
import type { RotationStateStore } from "./state.js";

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
 * superseded it). BullMQ keeps it with the finished job, where any dashboard shows it: so the link
 * is masked and there is no signature. `rotate --wait` reads the whole message from the channel
 * (`C:latest`, else `C:stream`) by `published_rotation_id`.
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

/** What one delivery of a rotation job needs besides the job. */
export interface AttemptOptions {
  readonly deps: RotateGroupDeps & { readonly state: RotationStateStore };
  readonly logger: Logger;
  /**
   * Throttle pauses and failing tokens, per account across processes. Without it a throttle waits
   * what Graph asked (or 1 s) for this rotation only.
   */
  readonly gate?: RotationGate;
  /** Called once per finished job attempt, for metrics. */
  readonly onAttempt?: (event: AttemptEvent) => void;
}

export type RotationJob = Job<RotationJobData, RotationJobResult>;

/** Delay before a busy group is tried again (the holder usually finishes within a second). */
const BUSY_DELAY_MS = 500;

/** One delivery of a rotation job: maps the saga's outcome or failure onto the queue. */
export class Attempt {
  readonly owner: string;
  private readonly started = Date.now();
  private readonly data: RotationJobData;
  private readonly ids: { rotation: string; group: string; account: string };

  constructor(
    private readonly options: AttemptOptions,
    private readonly job: RotationJob,
    private readonly token: string | undefined,
  ) {
    this.data = job.data;
    this.owner = `${job.id ?? this.data.rotationId}:${token ?? randomUUID()}`;
    this.ids = { rotation: this.data.rotationId, group: this.data.groupId, account: this.data.account };
  }

  private report(result: AttemptEvent["result"], extra: Partial<AttemptEvent> = {}): void {
    this.options.onAttempt?.({ data: this.data, result, durationMs: Date.now() - this.started, ...extra });
  }

  /** Back to delayed without using an attempt. */
  private async delay(ms: number, result: AttemptEvent["result"], code?: string): Promise<never> {
    await this.job.moveToDelayed(Date.now() + Math.max(0, Math.round(ms)), this.token);
    this.report(result, code ? { code } : {});
    throw new DelayedError();
  }

  private busyDelay(code?: string): Promise<never> {
    return this.delay(BUSY_DELAY_MS + Math.random() * BUSY_DELAY_MS, "busy", code);
  }

  /** The saga ended with an outcome: the one exhaustive switch. */
  async finished(outcome: RotationOutcome): Promise<RotationJobResult> {
    const { data, options } = this;
    const { state } = options.deps;
    switch (outcome.kind) {
      case "published":
        // A publish that finished the rotation (the saga's own) cleared and settled already.
        if (!outcome.finished) {
          await state.clearFailure(data.groupId);
          await state.settle(data.groupId, data.rotationId);
        }
        this.report("published", {
          message: outcome.message,
          ...(outcome.linkGapMs === undefined ? {} : { linkGapMs: outcome.linkGapMs }),
        });
        return rotatedResult(data, "published", outcome.message);
      case "superseded":
        // A newer rotation of the group published after this one's DELETE: it is done.
        await state.settle(data.groupId, data.rotationId);
        this.report("superseded");
        if (!outcome.message) throw new Error(`group ${data.groupId}: superseded, but no message is stored`);
        return rotatedResult(data, "superseded", outcome.message);
      case "busy":
        return this.busyDelay();
      case "paused":
        return this.delay(outcome.waitMs, "paused", outcome.code);
      case "skipped":
        await state.settle(data.groupId, data.rotationId);
        // A rotation held while its account failed leaves that reason on the group: it is gone now.
        await state.clearFailureOf(data.groupId, data.rotationId);
        return this.skipped(outcome);
    }
  }

  /** Suspended or deleted (WhatsApp's webhooks), or no longer in its policy: no Graph call. */
  private skipped(outcome: Extract<RotationOutcome, { kind: "skipped" }>): SkippedRotation {
    const { data } = this;
    const skipped =
      outcome.code === "E_GROUP_SUSPENDED"
        ? "group suspended"
        : outcome.code === "E_GROUP_DELETED"
          ? "group deleted"
          : "removed from policy";
    this.options.logger.info(
      { ...this.ids, policy: data.policy },
      `rotation skipped: ${skipped} (${outcome.reason})`,
    );
    this.report("skipped", { code: outcome.code ?? "E_REMOVED_FROM_POLICY" });
    const { rotationId: rotation_id, groupId: group_id } = data;
    return { skipped, reason: outcome.reason, rotation_id, group_id };
  }

  /** The saga threw: what `disposition` decided, carried out. */
  async failed(d: Disposition): Promise<never> {
    switch (d.action) {
      case "throttled":
        return this.throttled(d.error);
      case "lock-lost":
        this.options.logger.warn(
          { ...this.ids, code: "E_LOCK_LOST" },
          `rotation lost its group lock; trying again: ${d.error.message}`,
        );
        return this.busyDelay("E_LOCK_LOST");
      case "held":
        return this.held(d.error);
      case "retry":
      case "fail":
        if (d.tokenFailed && isGraphError(d.error)) await this.tokenFailed(d.error);
        return this.attemptUsed(d);
    }
  }

  /** Throttle waits pause the whole account and never use up an attempt. */
  private async throttled(error: GraphError): Promise<never> {
    const { gate, logger } = this.options;
    const account = this.account();
    const wait =
      gate && account
        ? await gate.throttled(account, error, this.data.groupId)
        : boundWait(error.retryAfterMs ?? 1_000, DEFAULT_THROTTLE_MAX_MS).ms;
    logger.warn(
      { ...this.ids, code: error.code, ...graphFields(error), waitMs: wait },
      "graph throttled the rotation; waiting",
    );
    return this.delay(wait, "throttled", error.code);
  }

  /**
   * A failing account stopped the rotation before DELETE: hold it (no attempt used; the group keeps
   * its link) until the account recovers, with the reason on the group for `status`.
   */
  private async held(error: AccountFailingError): Promise<never> {
    const { gate, logger, deps } = this.options;
    const { data } = this;
    const reason = withGroup(data.groupId, error.message);
    // Recorded when the hold begins, not at each re-check: `status` shows since when.
    const first = await gate!.hold(data.account, data.rotationId).catch(() => true);
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
    const fields = { ...this.ids, code: error.code };
    if (first) logger.warn(fields, `rotation held until the account recovers: ${reason}`);
    else logger.debug(fields, "rotation still held: the account is failing");
    return this.delay(gate!.recheckMs, "paused", error.code);
  }

  /**
   * Graph rejected the account's token: the account is marked failing. After DELETE the group has
   * no link: the rotation is held (no attempt used) until the account recovers, rather than fail
   * for good. Returns when the rotation was not linkless (the failure goes on as usual).
   */
  private async tokenFailed(error: GraphError): Promise<void> {
    const { gate, logger, deps } = this.options;
    const { data } = this;
    const account = this.account();
    if (account) await gate!.failed(account, error, data.groupId);
    const state = await deps.state.read(data.rotationId);
    if (state.deletedAt === undefined || state.inviteLink !== undefined) return;
    const reason = withGroup(data.groupId, error.message);
    await deps.state.markFailed(data.groupId, {
      rotationId: data.rotationId,
      code: error.code,
      message: reason,
      at: Date.now(),
    });
    logger.error(
      { ...this.ids, code: error.code, ...graphFields(error), withoutLink: true },
      `GROUP WITHOUT INVITE LINK: the account's token failed after DELETE; the rotation waits for the account to recover; ${reason}`,
    );
    await this.delay(gate!.recheckMs, "paused", error.code);
  }

  /** An attempt is used: BullMQ retries with backoff, or the job fails (for good on `stop`). */
  private async attemptUsed(d: Extract<Disposition, { action: "retry" | "fail" }>): Promise<never> {
    const { data, options } = this;
    const reason = withGroup(data.groupId, d.error.message);
    if (d.action === "fail") {
      await recordFailure(
        { state: options.deps.state, logger: options.logger },
        data,
        d.code,
        reason,
        d.error,
      );
      this.report("failed", { code: d.code });
      if (d.stop) throw new UnrecoverableError(reason);
    } else {
      options.logger.warn(
        { ...this.ids, code: d.code, ...graphFields(d.error), attempt: this.job.attemptsMade + 1 },
        `rotation attempt failed, will retry: ${d.error.message}`,
      );
      this.report("retry", { code: d.code });
    }
    throw d.error;
  }

  private account() {
    try {
      return this.options.deps.resolveAccount(this.data.account);
    } catch {
      return undefined;
    }
  }
}
