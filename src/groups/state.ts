import type { RedisClient } from "../infra/redis.js";
import type { Keys } from "../core/keys.js";
import { luaScript } from "../infra/scripts.js";
import type { GroupEvent } from "./events.js";

/**
 * A group's state as WhatsApp's webhooks tell it, kept in Redis: who is in it (per member, the
 * newest event seen and when), how many (`keys.groupParticipants`, which the gateway reads), how
 * many joined through its current link since its last rotation (`joins` on the group hash), and
 * whether it is suspended or deleted (fields on the group hash, and sets).
 *
 * Applying an event is one Lua call and idempotent: a redelivered or replayed event finds its member
 * already in that state (or a newer one) and changes nothing, so a consumer that crashes before it
 * acknowledges an entry can apply it again. Ties (a join and a leave in the same second) go to the
 * leave. Joins count towards the current link only when they happened at or after the second its
 * link was created; the count restarts when a newer rotation has published.
 */
export interface AppliedEvent {
  /** Members whose state this event changed (0: a duplicate or an older event). */
  readonly changed: number;
  /** The group's known participant count afterwards. */
  readonly participants: number;
  /** Joins through the current link since its last rotation. */
  readonly joins: number;
  /** The rotation whose link `joins` counts (its `last_rotation_id`; "" before any). */
  readonly joinsRotation: string;
  /** The policy of the group's last rotation ("" for none or a manual one). */
  readonly lastPolicy: string;
}

export interface GroupStateStore {
  apply(event: GroupEvent): Promise<AppliedEvent>;
}

const ISO_MS = `local function iso_ms(s)
  if not s then return 0 end
  local y, mo, d, h, mi, se, ms = string.match(s, "^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.?(%d*)Z$")
  if not y then return 0 end
  y = tonumber(y); mo = tonumber(mo); d = tonumber(d)
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((mo + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(se) * 1000 + (tonumber(ms) or 0)
end
`;

/**
 * KEYS: group hash, members hash, participants hash, unavailable set, suspended set, deleted set.
 * ARGV: kind, at (ms), group id, via invite link (1/0), members...
 */
const APPLY_LUA = `${ISO_MS}
local kind, at, group = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local changed = 0
local last_rotation = redis.call("HGET", KEYS[1], "last_rotation_id") or ""
if kind == "joined" or kind == "left" then
  -- The joins count belongs to one link: a newer published rotation starts it again.
  if (redis.call("HGET", KEYS[1], "joins_rotation") or "") ~= last_rotation then
    redis.call("HSET", KEYS[1], "joins", 0, "joins_rotation", last_rotation)
  end
  local since = math.floor(iso_ms(redis.call("HGET", KEYS[1], "last_rotated_at")) / 1000) * 1000
  for i = 5, #ARGV do
    local member = ARGV[i]
    local prev = redis.call("HGET", KEYS[2], member)
    local prev_joined = prev ~= false and string.sub(prev, 1, 1) == "+"
    local prev_at = prev and tonumber(string.sub(prev, 2)) or -1
    local apply
    if kind == "joined" then apply = prev_at < at else apply = prev_at < at or (prev_at == at and prev_joined) end
    if apply then
      changed = changed + 1
      if kind == "joined" then
        redis.call("HSET", KEYS[2], member, "+" .. at)
        if not prev_joined then
          redis.call("HINCRBY", KEYS[3], group, 1)
          if ARGV[4] == "1" and at >= since then redis.call("HINCRBY", KEYS[1], "joins", 1) end
        end
      else
        redis.call("HSET", KEYS[2], member, "-" .. at)
        if prev_joined and (tonumber(redis.call("HGET", KEYS[3], group)) or 0) > 0 then
          redis.call("HINCRBY", KEYS[3], group, -1)
        end
      end
    end
  end
else
  local status_at = tonumber(redis.call("HGET", KEYS[1], "status_at") or "-1")
  if kind == "deleted" then
    if not redis.call("HGET", KEYS[1], "deleted_at") then
      redis.call("HSET", KEYS[1], "deleted_at", at)
      redis.call("SADD", KEYS[6], group)
      redis.call("SADD", KEYS[4], group)
      changed = 1
    end
  elseif at >= status_at then
    redis.call("HSET", KEYS[1], "status_at", at)
    if kind == "suspended" then
      if redis.call("HSETNX", KEYS[1], "suspended_at", at) == 1 then changed = 1 end
      redis.call("SADD", KEYS[5], group)
      redis.call("SADD", KEYS[4], group)
    else
      changed = redis.call("HDEL", KEYS[1], "suspended_at")
      redis.call("SREM", KEYS[5], group)
      if not redis.call("HGET", KEYS[1], "deleted_at") then redis.call("SREM", KEYS[4], group) end
    end
  end
end
return {
  changed,
  tonumber(redis.call("HGET", KEYS[3], group) or "0"),
  tonumber(redis.call("HGET", KEYS[1], "joins") or "0"),
  redis.call("HGET", KEYS[1], "joins_rotation") or "",
  redis.call("HGET", KEYS[1], "last_policy") or "",
}`;

const APPLY = luaScript<[number, number, number, string, string]>("rotatorGroupApply", 6, APPLY_LUA);

export function createGroupStateStore(redis: RedisClient, keys: Keys): GroupStateStore {
  return {
    async apply(event) {
      const members = event.kind === "joined" || event.kind === "left" ? event.members : [];
      const viaInviteLink = event.kind === "joined" && event.viaInviteLink ? "1" : "0";
      const [changed, participants, joins, joinsRotation, lastPolicy] = await APPLY.run(
        redis,
        [
          keys.group(event.groupId),
          keys.groupMembers(event.groupId),
          keys.groupParticipants,
          keys.groupsUnavailable,
          keys.suspendedIndex,
          keys.deletedIndex,
        ],
        [event.kind, String(event.at), event.groupId, viaInviteLink, ...members],
      );
      return { changed, participants, joins, joinsRotation, lastPolicy };
    },
  };
}
