import { linkSignals } from "../core/abort.js";
import type { RotationJobData } from "../core/interfaces.js";
import type { Logger } from "../infra/logger.js";
import { holdLock } from "./group-lock.js";
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

  // Already published on an earlier attempt: nothing left to do, and nothing to do twice.
  const before = await deps.state.read(data.rotationId);
  if (before.message) return { kind: "published", message: before.message, resumedAt: "publish" };

  const acquiredAt = Date.now(); // wall time, as the lock's ttl runs in Redis (not deps.clock)
  if (!(await deps.lock.acquire(data.groupId, context.owner))) return { kind: "busy" };
  const held = holdLock(deps.lock, data.groupId, context.owner, acquiredAt);
  const attempt = linkSignals(context.signal ? [held.signal, context.signal] : [held.signal]);
  try {
    await deps.publisher.claim?.(data.groupId, data.channel, context.owner);
    const run = await readUnderLock(data, deps, context, log, attempt.signal);
    if ("kind" in run) return run;
    for (const step of STEPS) {
      const outcome = await step(run);
      if (outcome) return outcome;
    }
    return await publishStep(run);
  } finally {
    attempt.dispose();
    held.stop();
    await deps.lock.release(data.groupId, context.owner).catch((error: unknown) => {
      log.warn({ err: error }, "could not release the group lock; it expires by itself");
    });
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

/** Re-reads the saga and the group under the lock: a previous owner may have advanced the saga. */
async function readUnderLock(
  data: RotationJobData,
  deps: RotateGroupDeps,
  context: RotationContext,
  log: Logger,
  signal: AbortSignal,
): Promise<SagaRun | RotationOutcome> {
  const state = await deps.state.read(data.rotationId);
  if (state.message) return { kind: "published", message: state.message, resumedAt: "publish" };
  const group = await deps.state.readGroup(data.groupId);
  // Its saga state expires an hour after the publish (keys.ts): the group still names it.
  if (group.lastMessage?.rotation_id === data.rotationId)
    return { kind: "published", message: group.lastMessage, resumedAt: "publish" };
  return {
    data,
    deps,
    context,
    log,
    signal,
    group,
    resumedAt: "delete",
    deletedAt: state.deletedAt,
    sequenceAtDelete: state.sequenceAtDelete,
    inviteLink: state.inviteLink,
    createdAt: state.createdAt,
  };
}
