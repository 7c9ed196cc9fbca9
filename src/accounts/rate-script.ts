/**
 * The adaptive rate of a phone number, shared by every worker process through Redis: Lua pieces the
 * gate's scripts run inside their one atomic call (`gate.ts`).
 *
 * The controller is the AWS SDKs' adaptive retry mode (@smithy/util-retry `DefaultRateLimiter`,
 * botocore `retries/adaptive.py`), moved into Redis so all processes share one rate per number:
 *
 * - the rate follows CUBIC: `rate(t) = w_max + C·(t − K)³`, t seconds since the last cut,
 *   `K = ∛(w_max·(1 − β)/C)`, C = 0.4, β = 0.7: right after a cut it climbs back quickly, flattens
 *   near the rate that was refused (most of the time is spent just below it), then probes above;
 * - a 131208 cuts it multiplicatively (rate·β, at most once a second: the calls already in flight
 *   were sent at the old rate and say nothing new), never below `MIN_RATE`, so no number starves;
 * - it never exceeds the account's `rate_limit` (the hard ceiling; without one, `DEFAULT_CEILING`),
 *   nor twice the rate the number actually sent at (measured in 0.5 s buckets, smoothed 0.8), so a
 *   quiet number does not bank a rate it never tried: after a lull it climbs from the start again;
 * - it starts at `rate_limit`, else at `DEFAULT_START_RATE`.
 *
 * TCP's AIMD (add one per round trip) was the other anchor: its linear climb takes w_max/2 round
 * trips to recover a cut, far slower than CUBIC's K seconds at the limits Graph uses (10–200/s), and
 * its time is spent well below the limit (efficiency ~0.75 against ~0.9).
 *
 * Calls wait in line, in order: each takes a ticket (a position), and ticket n goes at
 * `anchor_time + (n − anchor)/rate`, the anchor moving on at the current rate. So the line respaces
 * itself at once when the rate changes, and a pause ends with one call per slot, not a herd. A
 * DELETE takes two tickets, the second for its POST, so a group is not left without a link while
 * the rest of the line goes first. A call whose slot is further than the inline wait keeps its
 * ticket in `<number>:tickets` (by group) and its job is delayed until just before the slot.
 *
 * Number hash fields: `r_rate`, `r_wmax`, `r_k`, `r_cut` (ms), `r_anchor`, `r_at` (ms), `r_next`,
 * `r_meas`, `r_mbucket`, `r_mcount`.
 */

export const DEFAULT_START_RATE = 20;
export const DEFAULT_CEILING = 1000;
export const MIN_RATE = 0.5;
export const CUBIC_C = 0.4;
export const CUBIC_BETA = 0.7;
/** Throttles within this long of a cut do not cut again. */
export const CUT_WINDOW_MS = 1000;

/**
 * Lua: defines `rate_at(h, now, ceil, start)` (h = the number hash's fields by name) returning the
 * rate now, and `read_rate(key)` returning the fields. Needs `now` in ms.
 */
export const RATE_FUNCTIONS = `
local RC, RBETA, RMIN = ${CUBIC_C}, ${CUBIC_BETA}, ${MIN_RATE}
local RFIELDS = {"r_rate", "r_wmax", "r_k", "r_cut", "r_anchor", "r_at", "r_next", "r_meas", "r_mbucket", "r_mcount"}
local function read_rate(key)
  local v = redis.call("HMGET", key, unpack(RFIELDS))
  local h = {}
  for i, name in ipairs(RFIELDS) do h[name] = tonumber(v[i]) end
  return h
end
-- The line's anchor moved on to now at the rate it had.
local function advance(h, now, rate)
  local anchor = h.r_anchor or 0
  local at = h.r_at or now
  local nxt = h.r_next or 0
  anchor = anchor + (now - at) / 1000 * (h.r_rate or rate)
  if anchor > nxt then anchor = nxt end
  return anchor, nxt
end
local function rate_at(h, now, ceil, start)
  if not h.r_cut then return math.max(RMIN, math.min(start, ceil)) end
  local t = (now - h.r_cut) / 1000
  local r = math.min(h.r_wmax + RC * (t - h.r_k) ^ 3, ceil)
  -- No calls waiting in line: not above twice what the number was asked for lately.
  local anchor, nxt = advance(h, now, start)
  if nxt - anchor < 1 then r = math.min(r, math.max(start, 2 * (h.r_meas or 0))) end
  return math.max(RMIN, r)
end
`;
