import { linkSignals } from "../core/abort.js";
import type { RotationJobData } from "../core/interfaces.js";
import { holdLock } from "./group-lock.js";
import type { GateCheckCall } from "./ports.js";
import type { RotateGroupDeps, RotationContext, RotationOutcome, SagaRun, SagaStep } from "./saga-run.js";
import {
  createStep,
  deleteStep,
  noteResume,
  publishStep,
  settleUnsureCall,
  skipIfUnwanted,
  startOverIfChanged,
} from "./saga-steps.js";

export type { RotateGroupDeps, RotationContext, RotationOutcome } from "./saga-run.js";

/**
 * The rotation saga of one group: DELETE the old invite link, POST a new one, publish it, as named
 * steps (saga-steps.ts) run in order under the group's lock. Each step's outcome is persisted
 * before the next begins, so a retry resumes where the last attempt stopped (a created link is
 * published, not created again), and every write is fenced by the lock, so an attempt that lost it
 * writes nothing. A Graph call without a clear answer marks the group unsure: the next publish
 * waits until it cannot land and reads the link back. The saga knows nothing of BullMQ: worker.ts
 * maps its outcome onto the queue.
 */
export async function rotateGroup(
  data: RotationJobData,
  deps: RotateGroupDeps,
  context: RotationContext,
): Promise<RotationOutcome> {
  const log = deps.logger.child({
    rotation: data.rotationId,
    group: data.groupId,
    account: data.account,
    policy: data.policy,
    trigger: data.trigger,
  });

  // One call: already published on an earlier attempt (its saga state says so, or past the hour it
  // is kept, the group names it last; nothing to do, and nothing to do twice),
  // the group busy, or the lock taken and the saga and the group read under it (a previous owner
  // may have advanced the saga); a fresh start checks its DELETE with the gate in the same call.
  const acquiredAt = Date.now(); // wall time, as the lock's ttl runs in Redis (not deps.clock)
  const deleteCheck = deleteCheckOf(data, deps);
  const start = await deps.state.begin(
    data.rotationId,
    data.groupId,
    data.channel,
    context.owner,
    deps.lock.ttlMs,
    deleteCheck,
  );
  if (start.kind === "published") return { kind: "published", message: start.message, resumedAt: "publish" };
  if (start.kind === "busy") return { kind: "busy" };
  if (start.kind === "wait") {
    // The gate delays the DELETE: the lock was let go in the same call.
    const waitMs = (await deleteCheck?.done(start.deleteCheck.reply)) ?? 0;
    return { kind: "paused", waitMs, step: "delete" };
  }
  const held = holdLock(deps.lock, data.groupId, context.owner, acquiredAt);
  const attempt = linkSignals(context.signal ? [held.signal, context.signal] : [held.signal]);
  let released = false;
  try {
    await deps.publisher.claim?.(data.groupId, data.channel, context.owner);
    const { state } = start;
    const run: SagaRun = {
      data,
      deps,
      context,
      log,
      signal: attempt.signal,
      group: start.group,
      resumedAt: "delete",
      deletedAt: state.deletedAt,
      sequenceAtDelete: state.sequenceAtDelete,
      inviteLink: state.inviteLink,
      createdAt: state.createdAt,
      channelSequence: start.channelSequence,
      ...(start.deleteCheck && deleteCheck
        ? { deleteChecked: { call: deleteCheck, reply: start.deleteCheck.reply } }
        : {}),
    };
    for (const step of STEPS) {
      const outcome = await step(run);
      if (outcome) return outcome;
    }
    const published = await publishStep(run);
    // The publish released the lock (the heartbeat is stopped below).
    released = published.kind === "published" && published.finished === true;
    return published;
  } finally {
    attempt.dispose();
    held.stop();
    if (!released) {
      await deps.lock.release(data.groupId, context.owner).catch((error: unknown) => {
        log.warn({ err: error }, "could not release the group lock; it expires by itself");
      });
    }
  }
}

/**
 * The gate's check of the DELETE, for `begin` to run in its own call (undefined without a gate, or
 * when the account cannot be resolved: the DELETE step reports that).
 */
function deleteCheckOf(data: RotationJobData, deps: RotateGroupDeps): GateCheckCall | undefined {
  if (!deps.beforeGraphCall || !deps.gateCheck) return undefined;
  try {
    return deps.gateCheck(deps.resolveAccount(data.account), "delete", data.groupId);
  } catch {
    return undefined;
  }
}

/** The steps after the lock is taken, in order; the publish step ends the list. */
const STEPS: readonly SagaStep[] = [
  skipIfUnwanted,
  startOverIfChanged,
  noteResume,
  deleteStep,
  createStep,
  settleUnsureCall,
];
