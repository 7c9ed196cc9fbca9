import type { RedisClient } from "../infra/redis.js";
import { LockLostError } from "../core/errors.js";
import { ROTATION_STATE_TTL_MS, type Keys } from "../core/keys.js";
import { luaScript, type LuaScript } from "../infra/scripts.js";
import type { GateCheckCall } from "./ports.js";
import type { RotationMessage } from "../core/interfaces.js";
import { FAILURE_FIELDS, FINISH_ROTATION_LUA } from "../core/finish-lua.js";

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

/** What a rotation finds when it starts: published already, its group busy, or the lock and the state. */
export type RotationStart =
  | { readonly kind: "published"; readonly message: RotationMessage }
  | { readonly kind: "busy" }
  /** The DELETE's gate check (run in the same call) says wait: the lock was let go at once. */
  | { readonly kind: "wait"; readonly deleteCheck: { readonly reply: unknown } }
  | {
      readonly kind: "acquired";
      readonly state: RotationState;
      readonly group: GroupLinkState;
      /** The group's message count on the rotation's channel (0 for none yet, or not counted). */
      readonly channelSequence: number;
      /** The DELETE's gate check, run under the lock in the same call (a fresh start only). */
      readonly deleteCheck?: { readonly reply: unknown };
    };

export interface RotationStateStore {
  read(rotationId: string): Promise<RotationState>;
  /**
   * One call at the start of an attempt: a rotation already published returns its message (lock
   * or not); else it takes the group's lock for `owner` (owning it already counts, as in
   * `GroupLock.acquire`) and reads the saga state and the group under it. With `deleteCheck`, a
   * rotation that starts afresh also runs the gate's check of its DELETE in the same call.
   */
  begin(
    rotationId: string,
    groupId: string,
    channel: string,
    owner: string,
    lockTtlMs: number,
    deleteCheck?: GateCheckCall,
  ): Promise<RotationStart>;
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
   * `markDeleted` and then, in the same call, the gate's check of the POST (fenced alike: no check
   * when the lock is lost). Returns the check's reply for `check.done`.
   */
  markDeletedThenCheck(
    rotationId: string,
    groupId: string,
    at: number,
    lockOwner: string,
    check: GateCheckCall,
  ): Promise<unknown>;
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
  /**
   * Records on the group why its last rotation failed for good (for `status`, logs, metrics); with
   * `settle`, also settles it as `settle` does, in the same call.
   */
  markFailed(groupId: string, failure: GroupFailure, settle?: boolean): Promise<void>;
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
  /**
   * After a published rotation, in one call: `clearFailure`, `settle`, and the lock released if
   * `owner` still holds it (the publisher does the same inside its publish when asked to).
   */
  finish(groupId: string, rotationId: string, owner: string): Promise<void>;
}

export interface GroupFailure {
  readonly rotationId: string;
  /** Stable error code, for example GRAPH_AUTH. */
  readonly code: string;
  readonly message: string;
  readonly at: number;
}

// Step writes are fenced: an owner that lost the group's lock (a stall, an outage) writes nothing.
// An empty owner means unfenced (callers outside a rotation). Each script is registered once per
// client (infra/scripts.ts): a call sends its SHA1, not its text.
const FENCE = `if ARGV[1] ~= "" and redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
`;

const STATE_FIELDS = ["deleted_at", "sequence_at_delete", "invite_link", "created_at"] as const;
const GROUP_FIELDS = [
  "sequence",
  "graph_owner",
  "last_message",
  "unsure_until",
  "suspended_at",
  "deleted_at",
] as const;

/**
 * KEYS: lock, rotation, group. ARGV: owner, ttl ms, the group's channel counter field, rotation id.
 * Returns {2, message} when published already (its saga state says so, or, once that expired an
 * hour after the publish, the group's last rotation is this one), {0} when another owner holds the
 * lock, else {1, the saga state's fields, the group's fields, the channel counter}. Owning the lock
 * already counts as taking it: a call whose reply was lost and that the client resent must not
 * find the group busy.
 */
const BEGIN_LUA = `local message = redis.call("HGET", KEYS[2], "message")
if message then return {2, message} end
if redis.call("HGET", KEYS[3], "last_rotation_id") == ARGV[4] then
  message = redis.call("HGET", KEYS[3], "last_message")
  if message then return {2, message} end
end
if not redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2], "NX") then
  if redis.call("GET", KEYS[1]) ~= ARGV[1] then return {0} end
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
local reply = {1}
for _, v in ipairs(redis.call("HMGET", KEYS[2], "${STATE_FIELDS.join('", "')}")) do table.insert(reply, v) end
for _, v in ipairs(redis.call("HMGET", KEYS[3], "${GROUP_FIELDS.join('", "')}", ARGV[3])) do
  table.insert(reply, v)
end
`;
const BEGIN = luaScript<[number, ...(string | null)[]]>("rotatorBegin", 3, `${BEGIN_LUA}return reply`);

/**
 * A script whose `body` may call `gate_check()`: the gate's check (its Lua as a function whose
 * KEYS and ARGV are its own) on the KEYS after the first `ownKeys` and the ARGV after the first
 * `ownArgs`. One script per check text (the gate's is one constant).
 */
function withGateCheck<R>(name: string, ownKeys: number, ownArgs: number, body: string) {
  const scripts = new Map<string, LuaScript<R>>();
  return (check: GateCheckCall): LuaScript<R> => {
    let script = scripts.get(check.lua);
    if (!script) {
      const lua = `local function gate_check_of(KEYS, ARGV)
${check.lua}
end
local function gate_check()
  local keys, args = {}, {}
  for i = ${ownKeys + 1}, #KEYS do table.insert(keys, KEYS[i]) end
  for i = ${ownArgs + 1}, #ARGV do table.insert(args, ARGV[i]) end
  return gate_check_of(keys, args)
end
${body}`;
      script = luaScript<R>(`${name}${scripts.size || ""}`, ownKeys + check.keys.length, lua);
      scripts.set(check.lua, script);
    }
    return script;
  };
}

/**
 * BEGIN's keys and arguments, then the gate check's of the DELETE, run only when the rotation
 * starts afresh (no DELETE or link recorded, the group neither suspended nor deleted): one call
 * instead of two. Returns BEGIN's replies, {3, BEGIN's fields…, the check's reply} when it ran
 * under the lock, or {4, the check's reply} when the check says wait (the job is delayed) and no
 * account failure: then the lock is let go at once, so a delayed rotation never held it.
 * BEGIN's reply: 1, STATE_FIELDS (deleted_at 2, invite_link 4), GROUP_FIELDS (suspended_at 10,
 * deleted_at 11).
 */
const beginThenCheckScript = withGateCheck<[number, ...unknown[]]>(
  "rotatorBeginThenCheck",
  3,
  4,
  `${BEGIN_LUA}if not reply[2] and not reply[4] and not reply[10] and not reply[11] then
  local checked = gate_check()
  if tonumber(checked[1]) > 0 and checked[4] == "" then
    redis.call("DEL", KEYS[1])
    return {4, checked}
  end
  reply[1] = 3
  table.insert(reply, checked)
end
return reply`,
);

// A DELETE invalidates any link created before it, this rotation's own included (after a start
// over): drop it, or a retry would resume at publish with a link Graph no longer knows.
const MARK_DELETED_LUA = `local seq = redis.call("HGET", KEYS[3], "sequence") or "0"
redis.call("HSET", KEYS[2], "deleted_at", ARGV[2], "sequence_at_delete", seq)
redis.call("HDEL", KEYS[2], "invite_link", "created_at")
redis.call("PEXPIRE", KEYS[2], ARGV[3])
redis.call("HSETNX", KEYS[3], "without_link_since", ARGV[2])
redis.call("HSET", KEYS[3], "graph_owner", ARGV[4])
redis.call("SADD", KEYS[4], ARGV[5])
redis.call("SADD", KEYS[5], ARGV[5])
`;
const MARK_DELETED = luaScript<number>("rotatorMarkDeleted", 5, `${FENCE}${MARK_DELETED_LUA}return 1`);

/**
 * MARK_DELETED's keys and arguments, then the gate check's of the POST: returns {0} when the lock
 * is lost, else {1, the check's reply}.
 */
const markDeletedThenCheckScript = withGateCheck<[number, unknown?]>(
  "rotatorMarkDeletedThenCheck",
  5,
  5,
  `if ARGV[1] ~= "" and redis.call("GET", KEYS[1]) ~= ARGV[1] then return {0} end
${MARK_DELETED_LUA}return {1, gate_check()}`,
);

const MARK_CREATED = luaScript<number>(
  "rotatorMarkCreated",
  3,
  `${FENCE}redis.call("HSET", KEYS[2], "invite_link", ARGV[2], "created_at", ARGV[3])
redis.call("PEXPIRE", KEYS[2], ARGV[4])
redis.call("HSET", KEYS[3], "graph_owner", ARGV[5])
return 1`,
);

const RESET_STEPS = luaScript<number>(
  "rotatorResetSteps",
  2,
  `${FENCE}redis.call("HDEL", KEYS[2], "deleted_at", "sequence_at_delete", "invite_link", "created_at")
return 1`,
);

const MARK_UNSURE = luaScript<number>(
  "rotatorMarkUnsure",
  3,
  `local current = tonumber(redis.call("HGET", KEYS[1], "unsure_until") or "0")
if tonumber(ARGV[1]) > current then redis.call("HSET", KEYS[1], "unsure_until", ARGV[1]) end
redis.call("HSET", KEYS[1], "graph_owner", ARGV[2])
if ARGV[3] == "delete" then
  redis.call("HSETNX", KEYS[1], "without_link_since", ARGV[4])
  redis.call("SADD", KEYS[2], ARGV[5])
  redis.call("SADD", KEYS[3], ARGV[5])
end
return 1`,
);

const CLEAR_UNSURE = luaScript<number>(
  "rotatorClearUnsure",
  1,
  `if redis.call("HGET", KEYS[1], "unsure_until") == ARGV[1] then
  return redis.call("HDEL", KEYS[1], "unsure_until") end return 0`,
);

const SETTLE_LUA = `if redis.call("HGET", KEYS[1], "pending_rotation") == ARGV[1] then
  return redis.call("HDEL", KEYS[1], "pending_rotation", "pending_since") end return 0`;
const SETTLE = luaScript<number>("rotatorSettle", 1, SETTLE_LUA);

const CLEAR_FAILURE_OF = luaScript<number>(
  "rotatorClearFailureOf",
  1,
  `if redis.call("HGET", KEYS[1], "failed_rotation_id") == ARGV[1] then
  return redis.call("HDEL", KEYS[1], unpack(ARGV, 2)) end return 0`,
);

/** KEYS: group, groups index. ARGV: rotation id, code, message, at, group id, "1" to settle. */
const MARK_FAILED = luaScript<number>(
  "rotatorMarkFailed",
  2,
  `redis.call("HSET", KEYS[1], "failed_rotation_id", ARGV[1], "failure_code", ARGV[2],
  "failure_message", ARGV[3], "failed_at", ARGV[4])
redis.call("SADD", KEYS[2], ARGV[5])
if ARGV[6] == "1" and redis.call("HGET", KEYS[1], "pending_rotation") == ARGV[1] then
  redis.call("HDEL", KEYS[1], "pending_rotation", "pending_since")
end
return 1`,
);

/** KEYS: group, without-link index. ARGV: group id. */
const CLEAR_FAILURE = luaScript<number>(
  "rotatorClearFailure",
  2,
  `redis.call("HDEL", KEYS[1], "${FAILURE_FIELDS.join('", "')}", "without_link_since")
redis.call("SREM", KEYS[2], ARGV[1])
return 1`,
);

/** KEYS: group, lock, without-link index. ARGV: owner, rotation id, group id. */
const FINISH = luaScript<number>(
  "rotatorFinish",
  3,
  `${FINISH_ROTATION_LUA}
finish_rotation(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])
return 1`,
);

const num = (value: string | null | undefined) => (value ? Number(value) : undefined);

/** The saga state from its hash's fields (absent ones are left out). */
function rotationState(raw: Partial<Record<string, string | null>>): RotationState {
  const deletedAt = num(raw.deleted_at);
  const sequenceAtDelete = num(raw.sequence_at_delete);
  return {
    ...(deletedAt !== undefined ? { deletedAt } : {}),
    ...(sequenceAtDelete !== undefined ? { sequenceAtDelete } : {}),
    ...(raw.invite_link ? { inviteLink: raw.invite_link, createdAt: Number(raw.created_at) } : {}),
    ...(raw.message ? { message: JSON.parse(raw.message) as RotationMessage } : {}),
  };
}

/** The group's link state from its hash's fields, in `GROUP_FIELDS` order. */
function groupLinkState(values: readonly (string | null | undefined)[]): GroupLinkState {
  const [sequence, graphOwner, lastMessage, unsureUntil, suspendedAt, groupDeletedAt] = values;
  const unsure = num(unsureUntil);
  const suspended = num(suspendedAt);
  const deleted = num(groupDeletedAt);
  return {
    sequence: Number(sequence ?? 0) || 0,
    ...(graphOwner ? { graphOwner } : {}),
    ...(lastMessage ? { lastMessage: JSON.parse(lastMessage) as RotationMessage } : {}),
    ...(unsure !== undefined ? { unsureUntil: unsure } : {}),
    ...(suspended !== undefined ? { suspendedAt: suspended } : {}),
    ...(deleted !== undefined ? { groupDeletedAt: deleted } : {}),
  };
}

/** The group hash's field counting the group's messages on one channel (the publisher's too). */
const channelSequenceField = (channel: string) => `sequence:${channel}`;

export function createRotationStateStore(redis: RedisClient, keys: Keys): RotationStateStore {
  /** What the DELETE's record touches (MARK_DELETED's KEYS, and the start of the merged call's). */
  const deleteRecordKeys = (rotationId: string, groupId: string) => [
    keys.groupLock(groupId),
    keys.rotation(rotationId),
    keys.group(groupId),
    keys.withoutLinkIndex,
    keys.groupsIndex,
  ];
  return {
    async read(rotationId) {
      return rotationState(await redis.hgetall(keys.rotation(rotationId)));
    },
    async begin(rotationId, groupId, channel, owner, lockTtlMs, deleteCheck) {
      const beginKeys = [keys.groupLock(groupId), keys.rotation(rotationId), keys.group(groupId)];
      const beginArgs = [owner, lockTtlMs, channelSequenceField(channel), rotationId];
      const reply = deleteCheck
        ? await beginThenCheckScript(deleteCheck).run(
            redis,
            [...beginKeys, ...deleteCheck.keys],
            [...beginArgs, ...deleteCheck.args],
          )
        : await BEGIN.run(redis, beginKeys, beginArgs);
      if (deleteCheck && reply[0] !== 3 && reply[0] !== 4) deleteCheck.unused?.();
      if (reply[0] === 2)
        return { kind: "published", message: JSON.parse(reply[1] as string) as RotationMessage };
      if (reply[0] === 4) return { kind: "wait", deleteCheck: { reply: reply[1] } };
      if (reply[0] !== 1 && reply[0] !== 3) return { kind: "busy" };
      const values = reply.slice(1) as (string | null)[];
      const state: Record<string, string | null> = {};
      STATE_FIELDS.forEach((field, i) => (state[field] = values[i] ?? null));
      const group = values.slice(STATE_FIELDS.length, STATE_FIELDS.length + GROUP_FIELDS.length);
      const counter = values[STATE_FIELDS.length + GROUP_FIELDS.length];
      return {
        kind: "acquired",
        state: rotationState(state),
        group: groupLinkState(group),
        channelSequence: Number(counter ?? 0) || 0,
        ...(reply[0] === 3
          ? { deleteCheck: { reply: reply[STATE_FIELDS.length + GROUP_FIELDS.length + 2] } }
          : {}),
      };
    },
    async markDeleted(rotationId, groupId, at, lockOwner) {
      const done = await MARK_DELETED.run(redis, deleteRecordKeys(rotationId, groupId), [
        lockOwner ?? "",
        at,
        ROTATION_STATE_TTL_MS,
        rotationId,
        groupId,
      ]);
      if (done !== 1) throw new LockLostError(groupId, "lost the lock before recording the DELETE");
    },
    async markDeletedThenCheck(rotationId, groupId, at, lockOwner, check) {
      const reply = await markDeletedThenCheckScript(check).run(
        redis,
        [...deleteRecordKeys(rotationId, groupId), ...check.keys],
        [lockOwner, at, ROTATION_STATE_TTL_MS, rotationId, groupId, ...check.args],
      );
      if (reply[0] !== 1) throw new LockLostError(groupId, "lost the lock before recording the DELETE");
      return reply[1];
    },
    async resetSteps(rotationId, groupId, lockOwner) {
      const done = await RESET_STEPS.run(
        redis,
        [keys.groupLock(groupId), keys.rotation(rotationId)],
        [lockOwner],
      );
      if (done !== 1) throw new LockLostError(groupId, "lost the lock before starting over");
    },
    async markCreated(rotationId, groupId, inviteLink, at, lockOwner) {
      const done = await MARK_CREATED.run(
        redis,
        [keys.groupLock(groupId), keys.rotation(rotationId), keys.group(groupId)],
        [lockOwner ?? "", inviteLink, at, ROTATION_STATE_TTL_MS, rotationId],
      );
      if (done !== 1) throw new LockLostError(groupId, "lost the lock before recording the POST");
    },
    async markUnsure(rotationId, groupId, step, until) {
      await MARK_UNSURE.run(
        redis,
        [keys.group(groupId), keys.withoutLinkIndex, keys.groupsIndex],
        [until, rotationId, step, Date.now(), groupId],
      );
    },
    async clearUnsure(groupId, until) {
      await CLEAR_UNSURE.run(redis, [keys.group(groupId)], [until]);
    },
    async clearFailureOf(groupId, rotationId) {
      await CLEAR_FAILURE_OF.run(redis, [keys.group(groupId)], [rotationId, ...FAILURE_FIELDS]);
    },
    async markFailed(groupId, failure, settle = false) {
      await MARK_FAILED.run(
        redis,
        [keys.group(groupId), keys.groupsIndex],
        [failure.rotationId, failure.code, failure.message, failure.at, groupId, settle ? "1" : "0"],
      );
    },
    async readGroup(groupId) {
      return groupLinkState(await redis.hmget(keys.group(groupId), ...GROUP_FIELDS));
    },
    async settle(groupId, rotationId) {
      await SETTLE.run(redis, [keys.group(groupId)], [rotationId]);
    },
    async clearFailure(groupId) {
      await CLEAR_FAILURE.run(redis, [keys.group(groupId), keys.withoutLinkIndex], [groupId]);
    },
    async finish(groupId, rotationId, owner) {
      await FINISH.run(
        redis,
        [keys.group(groupId), keys.groupLock(groupId), keys.withoutLinkIndex],
        [owner, rotationId, groupId],
      );
    },
  };
}
