import { linkSignals } from "../core/abort.js";
import { GraphError } from "../graph/errors.js";
import type { GroupLock } from "./group-lock.js";
import { holdLock } from "./group-lock.js";
import type {
  AccountContext,
  Clock,
  GraphPort,
  PublisherPort,
  RotationJobData,
  RotationMessage,
  Step,
} from "../core/interfaces.js";
import type { Logger } from "../infra/logger.js";
import type { RotationStateStore } from "./state.js";

/**
 * The rotation saga of one group: DELETE the old invite link, POST for a new one, publish it.
 *
 * Each step's outcome is persisted (RotationStateStore) before the next begins, so a retry of the
 * same rotation resumes at the step that failed: a confirmed DELETE is not repeated, and a created
 * link is published rather than created again. The saga holds the group's lock throughout, so two
 * rotations of one group never interleave, even when BullMQ delivers a job twice. Every state write
 * (each step's record and the publish) is fenced by the lock: an attempt that lost it, say in a
 * stall longer than the lock's ttl, writes nothing and fails with the retryable `LockLostError`.
 *
 * A DELETE or POST that fails without a clear answer from Graph (a timeout, a reset connection, a
 * proxy's HTML or empty page, a 2xx with a garbled body, an abort) may still be carried out by
 * Graph after its retry succeeded: a late POST would replace the link about to be published, a
 * late DELETE would leave the group with none.
 * Such a call marks the group unsure (and, for a DELETE, possibly without a link); whichever
 * rotation of the group publishes next first waits until the call can no longer land
 * (`unsureSettleMs`) and reads the group's link back: the same link is published, a different one
 * (the late POST) is adopted and published, none (the late DELETE) is created again.
 *
 * The saga knows nothing of BullMQ: it returns an outcome or throws, and `src/worker.ts` maps that
 * onto the queue (delay, retry with backoff, or fail for good).
 */
export interface RotateGroupDeps {
  readonly graph: GraphPort;
  readonly publisher: PublisherPort;
  readonly state: RotationStateStore;
  readonly lock: GroupLock;
  /** Resolves an account by name; throws a `stop` error when it is unknown or has no token. */
  readonly resolveAccount: (name: string) => AccountContext;
  /**
   * Optional gate consulted before any Graph call of an account (throttle pauses, failing tokens).
   * Returns how long to wait, or throws a stop error; undefined means go.
   */
  readonly beforeGraphCall?: (
    account: AccountContext,
    step: Step,
    groupId: string,
  ) => Promise<number | undefined>;
  readonly clock: Clock;
  readonly logger: Logger;
  /**
   * How long after an unsure DELETE or POST Graph may still carry it out, ms (the app passes
   * ROTATOR_UNSURE_SETTLE). Default 15 s.
   */
  readonly unsureSettleMs?: number;
}

const DEFAULT_UNSURE_SETTLE_MS = 15_000;

export type RotationOutcome =
  | {
      readonly kind: "published";
      readonly message: RotationMessage;
      readonly resumedAt: Step;
      /** DELETE success to POST success, when known: how long the group had no link. */
      readonly linkGapMs?: number;
    }
  /**
   * This rotation stopped half-way, and meanwhile another rotation of the group changed its link at
   * Graph and published a newer one: finishing this one would replace a good published link, so it
   * ends here. `message` is the group's newest published message.
   */
  | { readonly kind: "superseded"; readonly message: RotationMessage | undefined; readonly by: string }
  /** Another rotation of the group holds its lock: try again shortly. */
  | { readonly kind: "busy" }
  /**
   * Try again after `waitMs`, at the same step, without using an attempt: the account is paused
   * (throttled), or (`code` E_UNSURE_SETTLE) an unsure call of the group may still land.
   */
  | { readonly kind: "paused"; readonly waitMs: number; readonly step: Step; readonly code?: string }
  /**
   * The rotation is no longer wanted (`RotationContext.notWanted`), or WhatsApp suspended or deleted
   * the group (`code`), and it had not touched Graph.
   */
  | {
      readonly kind: "skipped";
      readonly reason: string;
      readonly code?: "E_GROUP_SUSPENDED" | "E_GROUP_DELETED";
    };

export interface RotationContext {
  /** Identifies this attempt as the lock owner (unique per delivery of the job). */
  readonly owner: string;
  /** Aborts when the worker shuts down hard. */
  readonly signal?: AbortSignal;
  /**
   * Why this rotation is no longer wanted (a reload took its group out of its policy), or
   * undefined. Asked under the group's lock, and only while the rotation has not touched Graph:
   * one that may have changed the group's link finishes.
   */
  readonly notWanted?: () => string | undefined;
}

export async function rotateGroup(
  data: RotationJobData,
  deps: RotateGroupDeps,
  context: RotationContext,
): Promise<RotationOutcome> {
  const { groupId, rotationId } = data;
  const log = deps.logger.child({
    rotation: rotationId,
    group: groupId,
    account: data.account,
    policy: data.policy,
    trigger: data.trigger,
  });

  // Already published on an earlier attempt: nothing left to do, and nothing to do twice.
  const before = await deps.state.read(rotationId);
  if (before.message) return { kind: "published", message: before.message, resumedAt: "publish" };

  const acquiredAt = Date.now(); // wall time, as the lock's ttl runs in Redis (not deps.clock)
  if (!(await deps.lock.acquire(groupId, context.owner))) return { kind: "busy" };
  const held = holdLock(deps.lock, groupId, context.owner, acquiredAt);
  const attempt = linkSignals(context.signal ? [held.signal, context.signal] : [held.signal]);
  const signal = attempt.signal;
  try {
    await deps.publisher.claim?.(groupId, data.channel, context.owner);
    // Re-read under the lock: a previous owner may have advanced the saga meanwhile.
    const state = await deps.state.read(rotationId);
    if (state.message) return { kind: "published", message: state.message, resumedAt: "publish" };
    let inviteLink = state.inviteLink;
    let createdAt = state.createdAt;
    let deletedAt = state.deletedAt;
    const group = await deps.state.readGroup(groupId);

    // Skipped only while it has not touched Graph: no DELETE confirmed, none unsure (an unsure call
    // makes this rotation the group's graph owner).
    const touched = deletedAt !== undefined || group.graphOwner === rotationId;
    if (!touched && group.groupDeletedAt !== undefined) {
      const since = new Date(group.groupDeletedAt).toISOString();
      return { kind: "skipped", reason: `WhatsApp deleted the group at ${since}`, code: "E_GROUP_DELETED" };
    }
    if (!touched && group.suspendedAt !== undefined) {
      const since = new Date(group.suspendedAt).toISOString();
      return {
        kind: "skipped",
        reason: `WhatsApp suspended the group at ${since}`,
        code: "E_GROUP_SUSPENDED",
      };
    }
    const unwanted = touched ? undefined : context.notWanted?.();
    if (unwanted !== undefined) return { kind: "skipped", reason: unwanted };

    if (deletedAt !== undefined) {
      // Resuming half-way: if another rotation has changed this group's link at Graph since our
      // DELETE, our step state is stale (our link, if any, was reset by it).
      if (group.graphOwner !== undefined && group.graphOwner !== rotationId) {
        // A newer published rotation supersedes this one, unless a call may still land after it
        // published: then this one starts over, and reads the link back before it publishes.
        if (group.sequence > (state.sequenceAtDelete ?? 0) && group.unsureUntil === undefined) {
          log.info({ by: group.graphOwner }, "rotation superseded by a newer published rotation");
          return { kind: "superseded", message: group.lastMessage, by: group.graphOwner };
        }
        log.warn(
          { by: group.graphOwner },
          "another rotation changed the group's link meanwhile; starting over",
        );
        // Forgotten in Redis too, so a retry after an unsure call of this start-over cannot pick the
        // stale link up again.
        await deps.state.resetSteps(rotationId, groupId, context.owner);
        inviteLink = createdAt = deletedAt = undefined;
      }
    }
    const resumedAt: Step = inviteLink ? "publish" : deletedAt ? "create" : "delete";
    if (resumedAt !== "delete") log.info({ step: resumedAt }, "rotation resumes");

    // A Graph call that failed unclearly records that it may still land; the error goes on as is.
    const settleMs = deps.unsureSettleMs ?? DEFAULT_UNSURE_SETTLE_MS;
    const guarded = async <T>(step: "delete" | "create", call: () => Promise<T>): Promise<T> => {
      try {
        return await call();
      } catch (error) {
        // Graph's own error object is a clear answer; no answer, a proxy's page or a garbled 2xx is not.
        const mayLand =
          error instanceof GraphError
            ? error.action === "retry" && error.graphCode === undefined
            : signal.aborted;
        if (mayLand) {
          const until = deps.clock.now() + settleMs;
          await deps.state.markUnsure(rotationId, groupId, step, until).catch((cause: unknown) => {
            log.warn({ err: cause }, "could not record an unsure Graph call");
          });
        }
        throw error;
      }
    };
    const create = async (account: AccountContext): Promise<string | RotationOutcome> => {
      const wait = await deps.beforeGraphCall?.(account, "create", groupId);
      if (wait !== undefined) return { kind: "paused", waitMs: wait, step: "create" };
      signal.throwIfAborted();
      const link = await guarded("create", () => deps.graph.createInviteLink(account, groupId, signal));
      createdAt = deps.clock.now();
      await deps.state.markCreated(rotationId, groupId, link, createdAt, context.owner);
      log.debug({ step: "create" }, "new invite link created");
      return link;
    };

    if (inviteLink === undefined) {
      const account = deps.resolveAccount(data.account);
      if (deletedAt === undefined) {
        const wait = await deps.beforeGraphCall?.(account, "delete", groupId);
        if (wait !== undefined) return { kind: "paused", waitMs: wait, step: "delete" };
        signal.throwIfAborted();
        await guarded("delete", () => deps.graph.deleteInviteLink(account, groupId, signal));
        deletedAt = deps.clock.now();
        await deps.state.markDeleted(rotationId, groupId, deletedAt, context.owner);
        log.debug({ step: "delete" }, "old invite link deleted");
      }
      const created = await create(account);
      if (typeof created !== "string") return created;
      inviteLink = created;
    }

    const unsureUntil = group.unsureUntil;
    if (unsureUntil !== undefined) {
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
        await deps.state.clearUnsure(groupId, unsureUntil);
      } else {
        const account = deps.resolveAccount(data.account);
        const gateWait = await deps.beforeGraphCall?.(account, "publish", groupId);
        if (gateWait !== undefined) return { kind: "paused", waitMs: gateWait, step: "publish" };
        signal.throwIfAborted();
        let current: string | undefined;
        try {
          current = await deps.graph.getInviteLink(account, groupId, signal);
        } catch (error) {
          // Retry or throttle: try again later, still unsure. Stop (the read is refused): the link
          // created is the best knowledge there is.
          if (!(error instanceof GraphError) || error.action !== "stop") throw error;
          log.warn({ err: error }, "cannot read the group's link back; publishing the link created");
          current = inviteLink;
        }
        if (current === undefined) {
          log.warn({ step: "create" }, "a late DELETE left the group without a link: creating one again");
          deletedAt = deps.clock.now();
          await deps.state.markDeleted(rotationId, groupId, deletedAt, context.owner);
          await deps.state.clearUnsure(groupId, unsureUntil);
          const created = await create(account);
          if (typeof created !== "string") return created;
          inviteLink = created;
        } else if (current === group.lastMessage?.invite_link) {
          // Graph holds the link already published (our calls did not change it after all): that is
          // the promise kept; publishing it again would send subscribers the same link twice.
          await deps.state.clearUnsure(groupId, unsureUntil);
          log.info(
            { by: group.lastMessage.rotation_id },
            "Graph holds the published link: nothing to publish",
          );
          return { kind: "superseded", message: group.lastMessage, by: group.lastMessage.rotation_id };
        } else {
          if (current !== inviteLink) {
            log.warn(
              { step: "publish" },
              "a late POST replaced the link created: publishing the link Graph holds",
            );
            inviteLink = current;
            createdAt = deps.clock.now();
            await deps.state.markCreated(rotationId, groupId, inviteLink, createdAt, context.owner);
          }
          await deps.state.clearUnsure(groupId, unsureUntil);
        }
      }
    }

    signal.throwIfAborted();
    const message = await deps.publisher.publish({
      rotationId,
      groupId,
      inviteLink,
      createdAt: createdAt ?? deps.clock.now(),
      policy: data.policy,
      account: data.account,
      trigger: data.trigger,
      channel: data.channel,
      lockOwner: context.owner,
    });
    log.info({ step: "publish", sequence: message.sequence, channel: data.channel }, "invite link rotated");
    const linkGapMs = deletedAt !== undefined && createdAt !== undefined ? createdAt - deletedAt : undefined;
    return { kind: "published", message, resumedAt, ...(linkGapMs === undefined ? {} : { linkGapMs }) };
  } finally {
    attempt.dispose();
    held.stop();
    await deps.lock.release(groupId, context.owner).catch((error: unknown) => {
      log.warn({ err: error }, "could not release the group lock; it expires by itself");
    });
  }
}
