/**
 * The domain words, written down once and used everywhere (names, logs, metrics, docs):
 * - **account**: one Cloud API identity (a token from an env var, a Graph version, optionally the
 *   business phone number id); throttles and token failures are tracked per account.
 * - **group**: a WhatsApp group, by its opaque `group_id`.
 * - **policy**: a named rule of the policy file: which groups of which account rotate on which cron
 *   schedule (time zone, jitter), publishing on which channel.
 * - **fire**: one scheduled instant of a policy.
 * - **rotation**: replacing one group's invite link once: one BullMQ job, one `rotation_id` across retries.
 * - **step**: a stage of a rotation's saga (`delete`, `create`, `publish`), each persisted before the next.
 * - **publish**: one Redis transaction: the group's newest message, the channel's stream, the PUBLISH.
 * - **trigger**: why a rotation happens: `schedule`, `manual`, `catch-up`, or `joins` (`rotate_after_joins`).
 */

export type Trigger = "schedule" | "manual" | "catch-up" | "joins";

export type Step = "delete" | "create" | "publish";

/** What a failure means for the work that hit it. Classified once, at the HTTP boundary. */
export type RetryAction = "retry" | "throttle" | "stop";

/**
 * Who a failure concerns: `request` (this call only), `group` (this group only), `number` (every
 * group of the account's phone number), `account` (everything that uses the token).
 */
export type FailureScope = "request" | "group" | "number" | "account";

/** An account as the worker uses it: the token is resolved from the environment. */
export interface AccountContext {
  readonly name: string;
  /** Bearer token. Never logged, never put in an error message. */
  readonly token: string;
  readonly graphApiVersion: string;
  readonly phoneNumberId?: string | undefined;
}

/** The data of one rotation job. Everything a worker needs besides the resolved config. */
export interface RotationJobData {
  readonly rotationId: string;
  readonly groupId: string;
  readonly account: string;
  /** null for a manual rotation of a group outside every policy. */
  readonly policy: string | null;
  readonly channel: string;
  readonly trigger: Trigger;
  /** The fire this rotation belongs to, epoch ms; absent for manual rotations. */
  readonly fireAt?: number | undefined;
  /** When the rotation was requested, epoch ms. */
  readonly requestedAt: number;
}

/** The published message, exactly as the contract defines it. */
export interface RotationMessage {
  event: "invite_link.rotated";
  schema: 1;
  rotation_id: string;
  group_id: string;
  invite_link: string;
  rotated_at: string;
  sequence: number;
  policy: string | null;
  account: string;
  /** A `Trigger` when this version published it; a received message may carry a newer value. */
  trigger: Trigger | (string & {});
  signature?: string;
}

/** A small source of time, so tests and the scheduler can control it. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** The narrow Graph port the rotation job depends on. */
export interface GraphPort {
  /** DELETE /{version}/{group_id}/invite_link. Resolves when Graph confirms success. */
  deleteInviteLink(account: AccountContext, groupId: string, signal?: AbortSignal): Promise<void>;
  /** POST /{version}/{group_id}/invite_link. Resolves with the new `https://chat.whatsapp.com/...` link. */
  createInviteLink(account: AccountContext, groupId: string, signal?: AbortSignal): Promise<string>;
  /**
   * GET /{version}/{group_id}/invite_link: the group's current link, undefined when it has none.
   * Optional: without it, a rotation cannot read back a link after an unsure call (see the saga).
   */
  getInviteLink?(account: AccountContext, groupId: string, signal?: AbortSignal): Promise<string | undefined>;
}

/** The narrow publish port the rotation job depends on. */
export interface PublisherPort {
  /**
   * Publishes the rotation's new link: assigns the group's next sequence, signs, and in one Redis
   * transaction stores C:latest, appends to C:stream and PUBLISHes. Idempotent per rotation id: a
   * second call for a rotation already published returns the stored message and publishes nothing.
   */
  publish(input: PublishInput): Promise<RotationMessage>;
  /**
   * Where the publish is fenced apart from the group's lock (a Redis Cluster keeps the channel's
   * keys in another slot): names `owner` the group's publisher on `channel`. The saga calls it
   * right after taking the lock and before any Graph call, so a stalled older owner can no longer
   * publish, and a channel that cannot be written fails the rotation before it deletes anything.
   */
  claim?(groupId: string, channel: string, owner: string): Promise<void>;
  /** True when `publish` carries out `PublishInput.finish` (the saga asks only then). */
  readonly finishes?: boolean;
  /**
   * True when the publish checks the group's lock and writes in one atomic step on the connection
   * it was given (one node; not a Cluster, whose publish spans two slots). The saga then sends its
   * POST's record and the publish back to back on that connection (the app gives both the same
   * one), without waiting for the record's reply in between: Redis runs them in order.
   */
  readonly oneStep?: boolean;
}

export interface PublishInput {
  readonly rotationId: string;
  readonly groupId: string;
  readonly inviteLink: string;
  /** When the new link was created, epoch ms. */
  readonly createdAt: number;
  readonly policy: string | null;
  readonly account: string;
  readonly trigger: Trigger;
  readonly channel: string;
  /**
   * The group lock's owner token of the publishing attempt. When set, the publish is fenced: it
   * runs only while this owner holds the group's lock, and otherwise writes nothing and throws
   * `LockLostError`. The rotation saga always sets it.
   */
  readonly lockOwner?: string;
  /**
   * The message's `sequence` the caller expects (the saga reads the group's counter on the channel
   * under the lock): when right, the publish is one call to Redis; when not, the publisher learns
   * the right one from that call and signs again. Default 1.
   */
  readonly expectedSequence?: number;
  /**
   * With `lockOwner`: the publish also finishes the rotation in the same call (clears the group's
   * failure record and without-link mark, settles its pending mark, releases the group's lock),
   * also when it finds the rotation published already. Only for a publisher that `finishes`.
   */
  readonly finish?: boolean;
}
