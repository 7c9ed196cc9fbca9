import { GraphError } from "../graph/errors.js";
import { DEFAULT_UNSURE_SETTLE_MS, type RotationOutcome, type SagaRun } from "./saga-run.js";

/** The rotation saga's steps (src/rotation/saga.ts runs them in order under the group's lock). */

/**
 * Skipped only while it has not touched Graph: no DELETE confirmed, none unsure (an unsure call
 * makes this rotation the group's graph owner).
 */
export async function skipIfUnwanted(run: SagaRun): Promise<RotationOutcome | undefined> {
  const { group } = run;
  const touched = run.deletedAt !== undefined || group.graphOwner === run.data.rotationId;
  if (!touched && group.groupDeletedAt !== undefined) {
    const since = new Date(group.groupDeletedAt).toISOString();
    return { kind: "skipped", reason: `WhatsApp deleted the group at ${since}`, code: "E_GROUP_DELETED" };
  }
  if (!touched && group.suspendedAt !== undefined) {
    const since = new Date(group.suspendedAt).toISOString();
    return { kind: "skipped", reason: `WhatsApp suspended the group at ${since}`, code: "E_GROUP_SUSPENDED" };
  }
  const unwanted = touched ? undefined : run.context.notWanted?.();
  return unwanted === undefined ? undefined : { kind: "skipped", reason: unwanted };
}

/**
 * Resuming half-way: if another rotation has changed this group's link at Graph since our DELETE,
 * our step state is stale (our link, if any, was reset by it). A newer published rotation
 * supersedes this one, unless a call may still land after it published: then this one starts
 * over, and reads the link back before it publishes.
 */
export async function startOverIfChanged(run: SagaRun): Promise<RotationOutcome | undefined> {
  const { group, data, log } = run;
  if (run.deletedAt !== undefined && group.graphOwner !== undefined && group.graphOwner !== data.rotationId) {
    if (group.sequence > (run.sequenceAtDelete ?? 0) && group.unsureUntil === undefined) {
      log.info({ by: group.graphOwner }, "rotation superseded by a newer published rotation");
      return { kind: "superseded", message: group.lastMessage, by: group.graphOwner };
    }
    log.warn({ by: group.graphOwner }, "another rotation changed the group's link meanwhile; starting over");
    // Forgotten in Redis too, so a retry after an unsure call of this start-over cannot pick the
    // stale link up again.
    await run.deps.state.resetSteps(data.rotationId, data.groupId, run.context.owner);
    run.inviteLink = run.createdAt = run.deletedAt = undefined;
  }
  return undefined;
}

/** Where this attempt picks the saga up (logged when not at the start). */
export async function noteResume(run: SagaRun): Promise<undefined> {
  run.resumedAt = run.inviteLink ? "publish" : run.deletedAt ? "create" : "delete";
  if (run.resumedAt !== "delete") run.log.info({ step: run.resumedAt }, "rotation resumes");
  return undefined;
}

/** DELETE the group's link, unless an earlier attempt did (or it has its new link already). */
export async function deleteStep(run: SagaRun): Promise<RotationOutcome | undefined> {
  if (run.inviteLink !== undefined || run.deletedAt !== undefined) return undefined;
  const { deps, data } = run;
  const account = deps.resolveAccount(data.account);
  const checked = run.deleteChecked;
  run.deleteChecked = undefined;
  const wait = checked
    ? await checked.call.done(checked.reply)
    : await deps.beforeGraphCall?.(account, "delete", data.groupId);
  if (wait !== undefined) return { kind: "paused", waitMs: wait, step: "delete" };
  run.signal.throwIfAborted();
  await guarded(run, "delete", () => deps.graph.deleteInviteLink(account, data.groupId, run.signal));
  run.deletedAt = deps.clock.now();
  // The DELETE's record and the POST's gate check in one call, when the gate offers its check.
  const check = deps.beforeGraphCall ? deps.gateCheck?.(account, "create", data.groupId) : undefined;
  if (check) {
    const reply = await deps.state.markDeletedThenCheck(
      data.rotationId,
      data.groupId,
      run.deletedAt,
      run.context.owner,
      check,
    );
    run.log.debug({ step: "delete" }, "old invite link deleted");
    run.createChecked = { wait: await check.done(reply) };
    return undefined;
  }
  await deps.state.markDeleted(data.rotationId, data.groupId, run.deletedAt, run.context.owner);
  run.log.debug({ step: "delete" }, "old invite link deleted");
  return undefined;
}

/** POST for a new link, unless an earlier attempt has one; records it before anything else. */
export async function createStep(run: SagaRun): Promise<RotationOutcome | undefined> {
  if (run.inviteLink !== undefined) return undefined;
  const { deps, data } = run;
  const account = deps.resolveAccount(data.account);
  const checked = run.createChecked;
  run.createChecked = undefined;
  const wait = checked ? checked.wait : await deps.beforeGraphCall?.(account, "create", data.groupId);
  if (wait !== undefined) return { kind: "paused", waitMs: wait, step: "create" };
  run.signal.throwIfAborted();
  const link = await guarded(run, "create", () =>
    deps.graph.createInviteLink(account, data.groupId, run.signal),
  );
  run.createdAt = deps.clock.now();
  const record = deps.state.markCreated(
    data.rotationId,
    data.groupId,
    link,
    run.createdAt,
    run.context.owner,
  );
  run.inviteLink = link;
  if (deps.publisher.oneStep === true && run.group.unsureUntil === undefined) {
    // The publish follows at once (nothing unsure to settle) on the same connection, fenced by the
    // same lock in the same step as its writes: it is sent behind the record, not after its reply.
    // Redis runs them in order, so the link is recorded before it is published, and a lock lost
    // before the record refuses both.
    run.recording = record;
    record.catch(() => undefined); // publishStep awaits it
  } else {
    await record;
  }
  run.log.debug({ step: "create" }, "new invite link created");
  return undefined;
}

/**
 * A DELETE or POST of the group that failed without a clear answer may still land: wait until it
 * cannot, then read the link back. The same link is published; a different one (a late POST) is
 * adopted; none (a late DELETE) is created again; the link already published ends this rotation.
 */
export async function settleUnsureCall(run: SagaRun): Promise<RotationOutcome | undefined> {
  const { deps, data, log, group } = run;
  const unsureUntil = group.unsureUntil;
  if (unsureUntil === undefined) return undefined;
  const wait = unsureUntil - deps.clock.now();
  if (wait > 0) {
    log.info(
      { step: "publish", waitMs: wait },
      "an earlier Graph call may still land: reading the link back once it cannot",
    );
    return { kind: "paused", waitMs: wait, step: "publish", code: "E_UNSURE_SETTLE" };
  }
  if (!deps.graph.getInviteLink) {
    // Nothing to read the link back with: the wait is all there is.
    await deps.state.clearUnsure(data.groupId, unsureUntil);
    return undefined;
  }
  const account = deps.resolveAccount(data.account);
  const gateWait = await deps.beforeGraphCall?.(account, "publish", data.groupId);
  if (gateWait !== undefined) return { kind: "paused", waitMs: gateWait, step: "publish" };
  run.signal.throwIfAborted();
  let current: string | undefined;
  try {
    current = await deps.graph.getInviteLink(account, data.groupId, run.signal);
  } catch (error) {
    // Retry or throttle: try again later, still unsure. Stop (the read is refused): the link
    // created is the best knowledge there is.
    if (!(error instanceof GraphError) || error.action !== "stop") throw error;
    log.warn({ err: error }, "cannot read the group's link back; publishing the link created");
    current = run.inviteLink;
  }
  if (current === undefined) {
    log.warn({ step: "create" }, "a late DELETE left the group without a link: creating one again");
    run.deletedAt = deps.clock.now();
    await deps.state.markDeleted(data.rotationId, data.groupId, run.deletedAt, run.context.owner);
    await deps.state.clearUnsure(data.groupId, unsureUntil);
    run.inviteLink = undefined;
    return createStep(run);
  }
  if (current === group.lastMessage?.invite_link) {
    // Graph holds the link already published (our calls did not change it after all): that is
    // the promise kept; publishing it again would send subscribers the same link twice.
    await deps.state.clearUnsure(data.groupId, unsureUntil);
    log.info({ by: group.lastMessage.rotation_id }, "Graph holds the published link: nothing to publish");
    return { kind: "superseded", message: group.lastMessage, by: group.lastMessage.rotation_id };
  }
  if (current !== run.inviteLink) {
    log.warn({ step: "publish" }, "a late POST replaced the link created: publishing the link Graph holds");
    run.inviteLink = current;
    run.createdAt = deps.clock.now();
    await deps.state.markCreated(data.rotationId, data.groupId, current, run.createdAt, run.context.owner);
  }
  await deps.state.clearUnsure(data.groupId, unsureUntil);
  return undefined;
}

/** Publishes the link (fenced by the lock) and ends the attempt. */
export async function publishStep(run: SagaRun): Promise<RotationOutcome> {
  const { deps, data } = run;
  if (run.inviteLink === undefined) throw new Error(`group ${data.groupId}: no link to publish`);
  const recording = run.recording;
  run.recording = undefined;
  run.signal.throwIfAborted();
  const finish = deps.publisher.finishes === true;
  const publishing = deps.publisher.publish({
    rotationId: data.rotationId,
    groupId: data.groupId,
    inviteLink: run.inviteLink,
    createdAt: run.createdAt ?? deps.clock.now(),
    policy: data.policy,
    account: data.account,
    trigger: data.trigger,
    channel: data.channel,
    lockOwner: run.context.owner,
    // Under the lock no other rotation of the group publishes: the sequence read then is right,
    // and the publish is one call. It also finishes the rotation and releases the lock.
    expectedSequence: run.channelSequence + 1,
    finish,
  });
  const message = recording ? (await Promise.all([recording, publishing]))[1] : await publishing;
  run.log.info({ step: "publish", sequence: message.sequence, channel: data.channel }, "invite link rotated");
  const { deletedAt, createdAt } = run;
  const linkGapMs = deletedAt !== undefined && createdAt !== undefined ? createdAt - deletedAt : undefined;
  return {
    kind: "published",
    message,
    resumedAt: run.resumedAt,
    finished: finish,
    ...(linkGapMs === undefined ? {} : { linkGapMs }),
  };
}

/**
 * Runs a DELETE or POST; one that failed without a clear answer records that it may still land
 * (`unsureSettleMs`). The error goes on as is.
 */
export async function guarded<T>(
  run: SagaRun,
  step: "delete" | "create",
  call: () => Promise<T>,
): Promise<T> {
  try {
    return await call();
  } catch (error) {
    // Graph's own error object is a clear answer; no answer, a proxy's page or a garbled 2xx is not.
    const mayLand =
      error instanceof GraphError
        ? error.action === "retry" && error.graphCode === undefined
        : run.signal.aborted;
    if (mayLand) {
      const until = run.deps.clock.now() + (run.deps.unsureSettleMs ?? DEFAULT_UNSURE_SETTLE_MS);
      await run.deps.state
        .markUnsure(run.data.rotationId, run.data.groupId, step, until)
        .catch((cause: unknown) => {
          run.log.warn({ err: cause }, "could not record an unsure Graph call");
        });
    }
    throw error;
  }
}
