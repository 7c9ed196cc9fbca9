/**
 * What a published rotation leaves on its group, as Lua the publish scripts and the rotation's own
 * scripts share (they live in different rooms: publish/ and rotation/), so "finished" means one
 * thing wherever it runs.
 */

/** The group hash's fields that record why its last rotation failed. */
export const FAILURE_FIELDS = ["failed_rotation_id", "failure_code", "failure_message", "failed_at"] as const;

/**
 * Lua: `finish_rotation(group, lock, without_link_index, owner, rotation_id, group_id)`. Clears the
 * group's failure record and its without-link mark, settles its `pending_rotation` if it names this
 * rotation, and releases the group's lock if `owner` (not "") holds it. Every key it touches must
 * be among the script's KEYS.
 */
export const FINISH_ROTATION_LUA = `
local function finish_rotation(group, lock, without_link, owner, rotation_id, group_id)
  redis.call("HDEL", group, "${FAILURE_FIELDS.join('", "')}", "without_link_since")
  redis.call("SREM", without_link, group_id)
  if redis.call("HGET", group, "pending_rotation") == rotation_id then
    redis.call("HDEL", group, "pending_rotation", "pending_since")
  end
  if owner ~= "" and redis.call("GET", lock) == owner then redis.call("DEL", lock) end
end
`;
