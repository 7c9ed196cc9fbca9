import type { RedisClient } from "../infra/redis.js";
import { LockLostError } from "../core/errors.js";
import { ROTATION_STATE_TTL_MS, type Keys } from "../core/keys.js";
import { throwOnTransactionError } from "../infra/redis.js";
import type { RotationMessage } from "../core/interfaces.js";

/**
 * The persisted saga state of one rotation, in `keys.rotation(rotation_id)`. Each step's outcome is
 * written before the next step begins, so a retry (on any process) resumes where the last attempt
 * stopped: after DELETE it does not delete again; after POST it publishes the created link instead
 * of creating another. The publisher writes `message` in its own transaction.
 */
export interface RotationState {
  /** When Graph confirmed the DELETE, epoch ms. */
  readonly deletedAt?: number;
  /** The group's published sequence when this rotation's DELETE was confirmed. */
  readonly sequenceAtDelete?: number;
  /** The link Graph created for this rotation. */
  readonly inviteLink?: string;
  /** When Graph returned the new link, epoch ms. */
  readonly createdAt?: number;
  /** The published message (set by the publisher). */
  readonly message?: RotationMessage;
}

/** What a resuming rotation checks on its group: has anyone changed or published it since? */
export interface GroupLinkState {
  /** The group's last published sequence (0 for none). */
  readonly sequence: number;
  /** The rotation whose DELETE or POST last changed the group's link at Graph. */
  readonly graphOwner?: string;
  /** The group's last published message. */
  readonly lastMessage?: RotationMessage;
  /**
   * Set when a DELETE or POST of the group failed without a clear answer from Graph (a timeout, a
   * reset connection, a proxy's page): until then, epoch ms, such a call may still land. Whichever
   * rotation of the group publishes next first waits until then and reads the link back.
   */
  readonly unsureUntil?: number;
  /** WhatsApp suspended the group at this instant, epoch ms (a webhook; cleared with the suspension). */
  readonly suspendedAt?: number;
  /** WhatsApp deleted the group at this instant, epoch ms (a webhook). */
  readonly groupDeletedAt?: number;
}

export interface RotationStateStore {
  read(rotationId: string): Promise<RotationState>;
  /**
   * Records a confirmed DELETE (with the group's sequence at that moment), forgets any link this
   * rotation created before it, marks the group as having no link since then, and this rotation as
   * the last to change the group's link.
   *
   * With `lockOwner` (the saga always passes it), both step writes are fenced by the group's lock:
   * they write nothing and throw `LockLostError` unless `lockOwner` holds it at that moment.
   */
  markDeleted(rotationId: string, groupId: string, at: number, lockOwner?: string): Promise<void>;
  /**
   * Forgets this rotation's DELETE and link (it starts over because another rotation changed the
   * group's link). Fenced like the step writes.
   */
  resetSteps(rotationId: string, groupId: string, lockOwner: string): Promise<void>;
  /** Records the link created by POST; this rotation is the last to change the group's link. */
  markCreated(
    rotationId: string,
    groupId: string,
    inviteLink: string,
    at: number,
    lockOwner?: string,
  ): Promise<void>;
  readGroup(groupId: string): Promise<GroupLinkState>;
  /** Records on the group why its last rotation failed for good (for `status`, logs, metrics). */
  markFailed(groupId: string, failure: GroupFailure): Promise<void>;
  /**
   * Clears the group's `pending_rotation` mark (set by the scheduler when it enqueues a scheduled
   * rotation) if it names this rotation: the rotation has finished, for good or ill, so the group's
   * next fire may enqueue again.
   */
  settle(groupId: string, rotationId: string): Promise<void>;
  /**
   * Records a DELETE or POST of the group that may still land until `until` (the later of it and
   * any earlier mark is kept), made by this rotation, which becomes the last to change the group's
   * link. An unsure DELETE may have left the group without a link: it is marked so (index, since),
   * so a rotation that fails after it is loud and re-driven like one that failed after a DELETE.
   * Not fenced by the lock: a late call is a fact about Graph, whoever sent it.
   */
  markUnsure(rotationId: string, groupId: string, step: "delete" | "create", until: number): Promise<void>;
  /** The link was read back once the mark `until` had passed: clears it unless a newer one is set. */
  clearUnsure(groupId: string, until: number): Promise<void>;
  /** Clears the group's failure record if it is this rotation's (a held rotation that was skipped). */
  clearFailureOf(groupId: string, rotationId: string): Promise<void>;
  /** Clears the group's failure and its without-link mark after a published rotation. */
  clearFailure(groupId: string): Promise<void>;
}

export interface GroupFailure {
  readonly rotationId: string;
  /** Stable error code, for example GRAPH_AUTH. */
  readonly code: string;
  readonly message: string;
  readonly at: number;
}

// Step writes are fenced: an owner that lost the group's lock (a stall, an outage) writes nothing.
// An empty owner means unfenced (callers outside a rotation).
const FENCE = `if ARGV[1] ~= "" and redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
`;

// A DELETE invalidates any link created before it, this rotation's own included (after a start
// over): drop it, or a retry would resume at publish with a link Graph no longer knows.
const MARK_DELETED = `${FENCE}local seq = redis.call("HGET", KEYS[3], "sequence") or "0"
redis.call("HSET", KEYS[2], "deleted_at", ARGV[2], "sequence_at_delete", seq)
redis.call("HDEL", KEYS[2], "invite_link", "created_at")
redis.call("PEXPIRE", KEYS[2], ARGV[3])
redis.call("HSETNX", KEYS[3], "without_link_since", ARGV[2])
redis.call("HSET", KEYS[3], "graph_owner", ARGV[4])
redis.call("SADD", KEYS[4], ARGV[5])
redis.call("SADD", KEYS[5], ARGV[5])
return 1`;

const MARK_CREATED = `${FENCE}redis.call("HSET", KEYS[2], "invite_link", ARGV[2], "created_at", ARGV[3])
redis.call("PEXPIRE", KEYS[2], ARGV[4])
redis.call("HSET", KEYS[3], "graph_owner", ARGV[5])
return 1`;

const RESET_STEPS = `${FENCE}redis.call("HDEL", KEYS[2], "deleted_at", "sequence_at_delete", "invite_link", "created_at")
return 1`;

const MARK_UNSURE = `local current = tonumber(redis.call("HGET", KEYS[1], "unsure_until") or "0")
if tonumber(ARGV[1]) > current then redis.call("HSET", KEYS[1], "unsure_until", ARGV[1]) end
redis.call("HSET", KEYS[1], "graph_owner", ARGV[2])
if ARGV[3] == "delete" then
  redis.call("HSETNX", KEYS[1], "without_link_since", ARGV[4])
  redis.call("SADD", KEYS[2], ARGV[5])
  redis.call("SADD", KEYS[3], ARGV[5])
end
return 1`;

const CLEAR_UNSURE = `if redis.call("HGET", KEYS[1], "unsure_until") == ARGV[1] then
  return redis.call("HDEL", KEYS[1], "unsure_until") end return 0`;

const SETTLE = `if redis.call("HGET", KEYS[1], "pending_rotation") == ARGV[1] then
  return redis.call("HDEL", KEYS[1], "pending_rotation", "pending_since") end return 0`;

const FAILURE_FIELDS = ["failed_rotation_id", "failure_code", "failure_message", "failed_at"] as const;

const CLEAR_FAILURE_OF = `if redis.call("HGET", KEYS[1], "failed_rotation_id") == ARGV[1] then
  return redis.call("HDEL", KEYS[1], unpack(ARGV, 2)) end return 0`;

export function createRotationStateStore(redis: RedisClient, keys: Keys): RotationStateStore {
  return {
    async read(rotationId) {
      const raw = await redis.hgetall(keys.rotation(rotationId));
      return {
        ...(raw.deleted_at ? { deletedAt: Number(raw.deleted_at) } : {}),
        ...(raw.sequence_at_delete ? { sequenceAtDelete: Number(raw.sequence_at_delete) } : {}),
        ...(raw.invite_link ? { inviteLink: raw.invite_link, createdAt: Number(raw.created_at) } : {}),
        ...(raw.message ? { message: JSON.parse(raw.message) as RotationMessage } : {}),
      };
    },
    async markDeleted(rotationId, groupId, at, lockOwner) {
      const done = await redis.eval(
        MARK_DELETED,
        5,
        keys.groupLock(groupId),
        keys.rotation(rotationId),
        keys.group(groupId),
        keys.withoutLinkIndex,
        keys.groupsIndex,
        lockOwner ?? "",
        String(at),
        String(ROTATION_STATE_TTL_MS),
        rotationId,
        groupId,
      );
      if (Number(done) !== 1) throw new LockLostError(groupId, "lost the lock before recording the DELETE");
    },
    async resetSteps(rotationId, groupId, lockOwner) {
      const done = await redis.eval(
        RESET_STEPS,
        2,
        keys.groupLock(groupId),
        keys.rotation(rotationId),
        lockOwner,
      );
      if (Number(done) !== 1) throw new LockLostError(groupId, "lost the lock before starting over");
    },
    async markCreated(rotationId, groupId, inviteLink, at, lockOwner) {
      const done = await redis.eval(
        MARK_CREATED,
        3,
        keys.groupLock(groupId),
        keys.rotation(rotationId),
        keys.group(groupId),
        lockOwner ?? "",
        inviteLink,
        String(at),
        String(ROTATION_STATE_TTL_MS),
        rotationId,
      );
      if (Number(done) !== 1) throw new LockLostError(groupId, "lost the lock before recording the POST");
    },
    async markUnsure(rotationId, groupId, step, until) {
      await redis.eval(
        MARK_UNSURE,
        3,
        keys.group(groupId),
        keys.withoutLinkIndex,
        keys.groupsIndex,
        String(until),
        rotationId,
        step,
        String(Date.now()),
        groupId,
      );
    },
    async clearUnsure(groupId, until) {
      await redis.eval(CLEAR_UNSURE, 1, keys.group(groupId), String(until));
    },
    async clearFailureOf(groupId, rotationId) {
      await redis.eval(CLEAR_FAILURE_OF, 1, keys.group(groupId), rotationId, ...FAILURE_FIELDS);
    },
    async markFailed(groupId, failure) {
      await redis.hset(keys.group(groupId), {
        failed_rotation_id: failure.rotationId,
        failure_code: failure.code,
        failure_message: failure.message,
        failed_at: String(failure.at),
      });
      await redis.sadd(keys.groupsIndex, groupId);
    },
    async readGroup(groupId) {
      const [sequence, graphOwner, lastMessage, unsureUntil, suspendedAt, groupDeletedAt] = await redis.hmget(
        keys.group(groupId),
        "sequence",
        "graph_owner",
        "last_message",
        "unsure_until",
        "suspended_at",
        "deleted_at",
      );
      return {
        sequence: Number(sequence ?? 0) || 0,
        ...(graphOwner ? { graphOwner } : {}),
        ...(lastMessage ? { lastMessage: JSON.parse(lastMessage) as RotationMessage } : {}),
        ...(unsureUntil ? { unsureUntil: Number(unsureUntil) } : {}),
        ...(suspendedAt ? { suspendedAt: Number(suspendedAt) } : {}),
        ...(groupDeletedAt ? { groupDeletedAt: Number(groupDeletedAt) } : {}),
      };
    },
    async settle(groupId, rotationId) {
      await redis.eval(SETTLE, 1, keys.group(groupId), rotationId);
    },
    async clearFailure(groupId) {
      await redis
        .multi()
        .hdel(keys.group(groupId), ...FAILURE_FIELDS, "without_link_since")
        .srem(keys.withoutLinkIndex, groupId)
        .exec()
        .then(throwOnTransactionError);
    },
  };
}
