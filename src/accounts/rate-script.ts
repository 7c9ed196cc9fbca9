/**
 * The adaptive rate of a phone number: Lua the gate's scripts (`gate.ts`) run in their one atomic
 * call. Graph's 131208 limit is per number and unnamed, so the rate is learned, in Redis so every
 * worker process shares it: the AWS SDKs' adaptive retry mode (@smithy/util-retry, botocore
 * `retries/adaptive.py`: slow start, a cut on 131208, CUBIC's climb back). TCP's AIMD climbed too
 * slowly; a fixed β = 0.7 cut from the current rate cut from an overshot one (30–55 % refused).
 * The number's hash and its line's keys are listed at `NumberKeys` (core/keys.ts).
 */

/** Where slow start begins without `rate_limit`. */
export const DEFAULT_START_RATE = 20;
/**
 * The rate is never above `rate_limit` (the hard ceiling), without one this; and with no call
 * waiting not above twice the rate the number was asked for, so a quiet number banks nothing.
 */
export const DEFAULT_CEILING = 1000;
/** No cut goes below this. */
export const MIN_RATE = 0.5;
/**
 * Until the first 131208 the rate (from `rate_limit` or `DEFAULT_START_RATE`) doubles every this
 * many ms while calls wait in line (a call sleeps in line one doubling at most: the rate may double
 * under it)…
 */
export const SLOW_START_MS = 250;
/** …but not above this many times what got through lately (a rate nobody used is not raised). */
export const SLOW_START_CAP = 3;
/**
 * After a cut, CUBIC relative to w_max: rate = w_max·(1 + C·(t − K)³), K = ∛((1 − β)/C): back to
 * w_max within K s, flat near it (where the limit is), then probing above. 0.04 probed a steady limit 30 % above
 * w_max 2 s past the plateau, two or three refusals a probe: at a halved limit (20/s) a 1 s window
 * with over 10 % refused came every 5 s (settled after 6-11 s). 0.02 settles within a second and
 * still doubles back to a doubled limit within ~6 s of a cut.
 */
export const CUBIC_C = 0.02;
/**
 * A 131208 cuts from what got through (every process adds the Graph successes it saw to its next
 * script call), not from a rate that overshot (AWS's measuredTxRate): w_max = min(rate, measured),
 * rate = w_max·β (`measured` in the Lua says which count).
 */
export const CUBIC_BETA = 0.8;
/**
 * Throttles within this long of a cut do not cut again, unless what got through since the cut
 * (at least `RECUT_MIN_OK` calls over at least `RECUT_MIN_MS`) shows the rate is still well above
 * the limit: then they cut from that (the limit's bucket has been empty since the cut).
 */
export const CUT_WINDOW_MS = 500;
export const RECUT_MIN_MS = 150;
export const RECUT_MIN_OK = 2;
/** Calls let through are counted in buckets this long, smoothed `OK_ALPHA` a bucket (τ ≈ 1 s). */
export const OK_BUCKET_MS = 250;
export const OK_ALPHA = 0.25;
/**
 * After this long with no call at all, slow start restarts from β·w_max (or the start rate, when
 * higher, up to w_max) and doubles up to w_max (kept, as TCP keeps ssthresh: RFC 5681 §4.1, restart
 * after idle), and CUBIC carries on from w_max. Longer than the second the rate that got through is measured over and
 * TCP's 1 s RTO floor; short enough that CUBIC's `(t − K)³` is still within ~2× w_max
 * (t − K ≈ 3 s).
 */
export const IDLE_RESTART_MS = 2000;
/**
 * Places kept by delayed jobs count as calls waiting only this long after the last was kept:
 * a job comes back within a few seconds of its slot, and a place whose holder never
 * comes (its job removed while delayed) would otherwise count for as long
 * as the number is used, letting a quiet number's rate climb along CUBIC to the ceiling.
 */
export const HELD_FRESH_MS = 10_000;
/**
 * A number's hash (its learned rate, line and pauses) is kept this long after its last call: a
 * daily or weekly schedule's next fire restarts from the limit learned (24 h, the first choice,
 * let a daily fire that came a little later than the last call of yesterday's find nothing).
 */
export const NUMBER_KEEP_MS = 8 * 24 * 3600 * 1000;

/*
 * The line: calls here (let go, or sleeping for their slot) are spaced 1/rate apart and the line
 * ends at `r_tat`; a call joins it when it ends within the inline wait (first come, first served),
 * so no slot goes unused while others wait. Each call also takes a ticket (a place), ticket n due
 * at `anchor_time + (n − anchor)/rate`, the anchor moving on at the current rate (`advance`): a
 * call that would wait longer keeps its ticket (`NumberKeys.tickets`) and its job is delayed until
 * just before its place's slot, so jobs come back in the order they first asked. A DELETE moves
 * the line on by two slots and leaves its POST a credit (`NumberKeys.credits`; credits are no
 * line, their slots are paid): the POST goes at the slot after the DELETE's, or at once when the
 * DELETE was answered later. A refused POST is paid the first slot no call has. A POST first in
 * line (its credit voided) sleeps for its slot up to 2 s rather than going back through the queue,
 * so DELETEs coming meanwhile wait behind it.
 *
 * A cut also voids the slots already handed out: `r_tat` restarts one interval after the refused
 * call and `r_ep` (the number's cut count) moves on, so a call sleeping in place for its slot that
 * wakes to a newer `r_ep` asks again, keeping its place in line, instead of going at the old rate
 * into a bucket that is empty. The credits of groups without a link (a refused POST's; a DELETE's
 * whose slot has come) are re-timed to the new line's first slots, in their order.
 */

/**
 * Lua: defines `read_rate(key)` (the number hash's fields by name), `advance(h, now, rate)` (the
 * line's anchor and next ticket now), `rate_at(h, now, ceil, start, held)` (the rate now; held = tickets kept by delayed jobs) and
 * `count_ok(h, now, delta, fields)` (counts calls that got through, appending the fields to
 * write) and `measured(h, now, rate)` (the rate that got through, for a cut). Needs `now` in ms.
 */
export const RATE_FUNCTIONS = `
local RC, RBETA, RMIN, RSS, RSSCAP = ${CUBIC_C}, ${CUBIC_BETA}, ${MIN_RATE}, ${SLOW_START_MS}, ${SLOW_START_CAP}
local OKB, OKA = ${OK_BUCKET_MS}, ${OK_ALPHA}
local RIDLE, RK, RHELD = ${IDLE_RESTART_MS}, ((1 - RBETA) / RC) ^ (1 / 3), ${HELD_FRESH_MS}
local RFIELDS = {"r_rate", "r_wmax", "r_k", "r_cut", "r_anchor", "r_at", "r_next", "r_meas", "r_mbucket",
  "r_mcount", "r_ss", "r_tat", "r_ob", "r_oc", "r_op", "r_om", "r_cok", "r_ep", "r_hw"}
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
-- Calls that got through lately, a second: the last two OKB buckets.
local function recent_ok(h, now)
  local bucket = math.floor(now / OKB)
  local last = h.r_ob or bucket
  local count = 0
  if last == bucket then count = (h.r_oc or 0) + (h.r_op or 0)
  elseif last == bucket - 1 then count = h.r_oc or 0 end
  return math.max(0, count) * 1000 / (OKB + now - bucket * OKB)
end
-- Where slow start restarts after a quiet spell: β·w_max, the rate a cut from the limit learned
-- gives (a daily fire ramping from the start rate again lost ~0.5 s of a 10 s fire at 200/s), or
-- the start rate when higher; never above w_max or the ceiling. A limit lowered meanwhile is found
-- as in any slow start: the first 131208 cuts from what got through.
local function restart_rate(h, start, ceil)
  return math.min(ceil, h.r_wmax, math.max(start, RBETA * h.r_wmax))
end
local function rate_at(h, now, ceil, start, held)
  if not h.r_cut then return math.max(RMIN, math.min(start, ceil)) end
  local anchor, nxt = advance(h, now, start)
  -- Calls wait: more tickets ahead of the anchor, or more in the line that is here, than one
  -- DELETE and its POST, or tickets held by delayed jobs (while places are being kept: one never
  -- claimed is not a line for ever). A lone rotation is no line: counted as one (its two
  -- tickets), it let a quiet number's rate climb along CUBIC.
  local kept = held > 0 and now - (h.r_hw or 0) < RHELD
  local waiting = nxt - anchor > 2 or kept or (h.r_tat or 0) - now > 2000 / (h.r_rate or start)
  local r
  if h.r_ss ~= 1 and now - (h.r_at or now) >= RIDLE then
    -- No call for RIDLE ms: CUBIC's clock ran on without calls (t − K large, far above w_max).
    -- Slow start again (r_ss 2) from β·w_max, up to w_max.
    h.r_ss, h.r_restart = 2, true
    r = restart_rate(h, start, ceil)
  elseif h.r_ss == 2 then
    -- Restarted slow start: doubles every RSS ms while a line waits, not above 3× what got
    -- through lately (nor below where it restarted); at w_max CUBIC carries on from its plateau
    -- (t = K).
    r = h.r_rate
    if waiting then r = r * 2 ^ ((now - (h.r_at or now)) / RSS) end
    r = math.min(r, ceil, math.max(restart_rate(h, start, ceil), RSSCAP * recent_ok(h, now)))
    if r >= h.r_wmax then
      r = h.r_wmax
      h.r_ss, h.r_cut, h.r_restart = 0, now - (h.r_k or RK) * 1000, true
    end
  elseif h.r_ss == 1 then
    -- Slow start: doubles every RSS ms while a line waits, until the first 131208; never above
    -- twice what got through lately, as TCP grows only a window it fills: a line parked in
    -- delayed jobs does not raise a rate nobody tried.
    r = h.r_rate
    if waiting then r = r * 2 ^ ((now - (h.r_at or now)) / RSS) end
    r = math.min(r, ceil, math.max(start, RSSCAP * recent_ok(h, now)))
  else
    local t = (now - h.r_cut) / 1000
    r = math.min(h.r_wmax * (1 + RC * (t - h.r_k) ^ 3), ceil)
  end
  -- No calls waiting in line: not above twice what the number was asked for lately (after a quiet
  -- spell, where slow start restarted: the first call of a fire finds no line yet).
  if not waiting then
    local floor = math.max(start, 2 * (h.r_meas or 0))
    if h.r_ss == 2 then floor = math.max(floor, restart_rate(h, start, ceil)) end
    r = math.min(r, floor)
  end
  return math.max(RMIN, r)
end
-- Calls that got through (every process adds the successes it saw since its last script call):
-- in OKB ms buckets (this and the last), smoothed OKA a bucket, and since the last cut.
local function count_ok(h, now, delta, fields)
  local bucket = math.floor(now / OKB)
  local last = h.r_ob or bucket
  local count, prev = h.r_oc or 0, h.r_op or 0
  local om = h.r_om
  if bucket > last then
    om = (om or count * 1000 / OKB) * (1 - OKA) + count * 1000 / OKB * OKA
    if bucket > last + 1 then om = om * (1 - OKA) ^ (bucket - last - 1) prev = 0 else prev = count end
    count = 0
  end
  count = count + delta
  h.r_ob, h.r_oc, h.r_op, h.r_om = bucket, count, prev, om
  h.r_cok = (h.r_cok or 0) + delta
  for _, v in ipairs({"r_ob", bucket, "r_oc", count, "r_op", prev, "r_cok", h.r_cok}) do table.insert(fields, v) end
  if om then table.insert(fields, "r_om") table.insert(fields, om) end
end
-- The rate that got through, for a cut: within a second of the last cut, the count since it (the
-- limit's bucket is empty since, so this is the limit itself); leaving slow start, the last half
-- second (the rate doubled within it; the smoothed rate lags); else the last half second, or the
-- average since the cut (≤ 3 s) or the smoothed rate when higher. The average since a cut alone
-- counts the climb back from β as well: a w_max taken from it sank a little with every cut.
local function measured(h, now, rate)
  local since = (now - (h.r_cut or 0)) / 1000
  if h.r_ss == 1 or h.r_ss == 2 then return recent_ok(h, now) end
  if since > 0 and since <= 1 then return (h.r_cok or 0) / since end
  local longer = h.r_om or rate
  if since > 0 and since <= 3 then longer = (h.r_cok or 0) / since end
  return math.max(recent_ok(h, now), longer)
end
`;
