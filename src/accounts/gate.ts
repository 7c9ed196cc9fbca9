import { createHash } from "node:crypto";
import type { RedisClient } from "../infra/redis.js";
import { AccountFailingError } from "../core/errors.js";
import type { AccountContext, Step } from "../core/interfaces.js";
import type { Keys } from "../core/keys.js";
import type { Logger } from "../infra/logger.js";
import { luaScript } from "../infra/scripts.js";
import type { Metrics } from "../infra/metrics.js";
import { boundWait, DEFAULT_THROTTLE_MAX_MS } from "../graph/wait.js";
import type { GateCheckCall, RotationGate } from "../rotation/ports.js";
import {
  CUT_WINDOW_MS,
  DEFAULT_CEILING,
  HELD_FRESH_MS,
  RECUT_MIN_MS,
  RECUT_MIN_OK,
  DEFAULT_START_RATE,
  NUMBER_KEEP_MS,
  RATE_FUNCTIONS,
  SLOW_START_MS,
} from "./rate-script.js";

/**
 * The account gate, consulted before every Graph call of a rotation: one account's trouble (a
 * throttle, a failing token, its number's rate) must not spill over to others, across processes.
 * A throttle pauses the token or phone number for what Graph asked (else base·4^level, capped), and
 * one probe call at a time ends the pause, so a storm costs one call per pause, not per rotation;
 * a 131208 without a named wait cuts the number's adaptive rate instead (`rate-script.ts`: calls
 * wait in line, `rate_limit` is its start and ceiling). A failing token holds its rotations before
 * DELETE (the group keeps its link) until a new token or the probe (`probe.ts`) shows it recovered.
 * Its Redis state is listed at `Keys.account` and `Keys.number` (keys.ts).
 */
export interface AccountGate extends RotationGate {
  /** Wait in ms before the call may go (the job is delayed), or undefined to go now. */
  beforeGraphCall(account: AccountContext, step: Step, groupId: string): Promise<number | undefined>;
  /** The same check as parts another script runs in its own call (rotation/ports.ts). */
  checkCall(account: AccountContext, step: Step, groupId: string): GateCheckCall;
  /** A Graph call of the account succeeded (from the client's onCall hook). Never throws. */
  succeeded(accountName: string): void;
  /** The account's failing state, if failing. */
  failing(accountName: string): Promise<AccountFailing | undefined>;
  /** Clears the failing state; true when it was failing. */
  recover(accountName: string, reason: string): Promise<boolean>;
  /** The rotations held for the account (to promote once it recovered); forgets them. */
  takeHeld(accountName: string): Promise<string[]>;
}

/** Why an account is failing (the account hash's `failing_*` fields). */
export interface AccountFailing {
  readonly code: string;
  readonly message: string;
  readonly since: number;
  readonly tokenFingerprint: string;
  /** A group of the account, for the read-only probe. */
  readonly probeGroup?: string;
}

export interface AccountGateOptions {
  readonly redis: RedisClient;
  readonly keys: Keys;
  readonly logger: Logger;
  readonly metrics?: Pick<Metrics, "throttlePauses" | "accountFailing"> &
    Partial<Pick<Metrics, "learnedRate" | "learnedLimit">>;
  /**
   * The account's `rate_limit` (requests per second), if any: the adaptive rate of its number
   * starts there and never goes above it.
   */
  readonly rateOf?: (accountName: string) => number | undefined;
  /** Where a number's rate starts without `rate_limit`. Default 20/s. */
  readonly startRate?: number;
  /** Tests: the clock in ms; default Redis's (TIME), one clock for every process. */
  readonly clock?: () => number;
  /** Tests: sleeps a call's wait for its slot (with `clock`); default a timer. */
  readonly sleep?: (ms: number) => Promise<void>;
  /** First throttle back-off without Retry-After; later ones grow 4×. Default 1 s. */
  readonly throttleBaseMs?: number;
  /** Longest wait any Graph answer or back-off imposes (ROTATOR_THROTTLE_MAX). Default 15 min. */
  readonly throttleMaxMs?: number;
  /** Default 60 s (the probe interval). */
  readonly recheckMs?: number;
  /**
   * Rate waits up to this are slept in place (a cut reaches only calls not yet let through); longer
   * ones delay the job. Default 500 ms; in slow start at most one doubling (250 ms), and a POST
   * first in line (refused, or its slot voided by a cut) sleeps up to POST_INLINE_MS.
   */
  readonly maxInlineWaitMs?: number;
}

/** A short, non-reversible name of a token: enough to notice it changed, useless to an attacker. */
export function tokenFingerprint(token: string): string {
  return createHash("sha256").update(token).digest("hex").slice(0, 12);
}

/**
 * How long a POST may wait for its slot in line, sleeping (longer: its job is delayed). Above the
 * inline wait: a group without a link goes before DELETEs that come later.
 */
const POST_INLINE_MS = 2_000;

const NOW = `local t = redis.call("TIME") local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;
/** The clock of the last ARGV when it is not negative (tests), else Redis's. */
const CLOCK = `local now = math.floor(tonumber(ARGV[#ARGV]))
if now < 0 then
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end`;

/**
 * KEYS: account hash, token subject, number subject, the number's tickets (places kept by delayed
 * jobs), the number's credits (paid slots of POSTs not back yet). ARGV: probe lease ms,
 * rate ceiling (0 none), max inline ms, step, group id, start rate, the account's Graph calls that
 * succeeded since this process's last script call, the place in line to keep ("<mark>:<pos>", ""
 * none: a call whose slot a cut voided asks again with it), clock (-1: Redis TIME).
 * Returns {wait, sleep, recovering, failing code, token fingerprint, the number's rate, its cut
 * count (r_ep), the call's place in line, the limit learned (w_max; "" before the first 131208)}.
 */
const CHECK = `${CLOCK}
${RATE_FUNCTIONS}
local wait, recovering = 0, 0
for i = 2, 3 do
  local h = redis.call("HMGET", KEYS[i], "paused_until", "throttle_level", "probe_until")
  local paused = tonumber(h[1]) or 0
  if paused > now then wait = math.max(wait, paused - now)
  elseif (tonumber(h[2]) or 0) > 0 then
    recovering = 1
    local probe = tonumber(h[3]) or 0
    if probe > now then wait = math.max(wait, probe - now)
    elseif wait == 0 then redis.call("HSET", KEYS[i], "probe_until", now + tonumber(ARGV[1])) end
  end
end
local f = redis.call("HMGET", KEYS[1], "failing_code", "token_fingerprint")
local ceil = tonumber(ARGV[2])
if ceil <= 0 then ceil = ${DEFAULT_CEILING} end
local h = read_rate(KEYS[3])
-- Places kept by others' delayed jobs (this call's own is no line: a lone rotation counted as
-- calls waiting and let a quiet number's rate climb along CUBIC unused). Credits are no line
-- either: their slots are paid in the line that is here (r_tat).
-- A POST has a credit or a place, never both (a credit is spent before a place is kept): one
-- read when it has a credit. A DELETE has none to spend: one left by an earlier attempt goes (it
-- pays anew when let go).
local credit, held = false, false
if ARGV[4] == "delete" then redis.call("HDEL", KEYS[5], ARGV[5])
else credit = redis.call("HGET", KEYS[5], ARGV[5]) end
if not credit then held = redis.call("HGET", KEYS[4], ARGV[5]) end
local others = redis.call("HLEN", KEYS[4])
if held then others = others - 1 end
local rate = rate_at(h, now, ceil, tonumber(ARGV[6]), others)
local ep = tostring(h.r_ep or 0)
-- The limit learned from 131208 answers (w_max), "" before the first: for status and metrics.
local learned = ""
if h.r_ss ~= 1 and h.r_wmax then learned = tostring(h.r_wmax) end
if wait > 0 or f[1] then return {wait, 0, recovering, f[1] or "", f[2] or "", tostring(rate), ep, "", learned} end
local anchor, nxt = advance(h, now, rate)
local step, group = ARGV[4], ARGV[5]
local kind = "c"
if step == "delete" then kind = "d" end
local pos, paid, front = nil, false, false
if credit then
  if kind == "c" then
    -- The POST of a DELETE let go since the last cut ("p:<cut count>:<slot ms>"): its slot, the
    -- one after the DELETE's, was paid with it; it goes then, or at once when the DELETE's answer
    -- came later (the group has no link), not behind the line. A refused POST's ("r:") likewise.
    -- A cut since voided it: first in line instead.
    local rest = string.sub(credit, 3)
    local sep = string.find(rest, ":", 1, true)
    pos, front = math.floor(anchor), true
    if sep and string.sub(rest, 1, sep - 1) == ep then
      paid = math.max(0, math.floor((tonumber(string.sub(rest, sep + 1)) or now) - now))
    end
  end
  redis.call("HDEL", KEYS[5], group)
end
if held then
  local k = string.sub(held, 1, 1)
  if not pos then
    if kind == "c" and k == "f" then pos, front = tonumber(string.sub(held, 3)), true
    elseif k == kind then pos = tonumber(string.sub(held, 3)) end
  end
  redis.call("HDEL", KEYS[4], group)
end
if not pos and ARGV[8] ~= "" then
  -- A place kept across a cut ("<mark>:<pos>"): first in line stays first.
  pos, front = tonumber(string.sub(ARGV[8], 3)), front or (kind == "c" and string.sub(ARGV[8], 1, 1) == "f")
end
local issued = 0
if not pos then
  pos = nxt
  if kind == "d" then issued = 2 else issued = 1 end
  nxt = nxt + issued
end
-- The line that is here (calls let go or sleeping for their slot) ends at r_tat: calls are spaced
-- 1/rate apart, in fractions of a ms (rounding each call's 1/rate up to a ms capped every number
-- at 1,000 calls a second). A call joins it when it ends within the inline wait: it goes when the
-- line has gone (first come, first served), not at its place among tickets whose holders may be
-- away (delayed jobs not back yet), which left slots unused.
-- Only a call that would wait longer is delayed, until its place's slot.
local slot = math.floor((pos - anchor) / rate * 1000)
local tat = math.max(h.r_tat or 0, now)
-- (1e-6: r_tat sums fractions of a ms; 5 × 0.2 must come to 1 ms, not 0.999…)
local inline = math.floor(tat - now + 1e-6)
local maxInline = tonumber(ARGV[3])
-- In slow start the rate may double within the inline wait (unless at its ceiling): a line slept
-- at today's spacing would hold calls back for all of it. It is kept to one doubling.
local doubling = h.r_ss ~= 0 and rate < ceil
if doubling then maxInline = math.min(maxInline, ${SLOW_START_MS}) end
-- A POST first in line (refused, or its paid slot voided by a cut: its group has no link) waits
-- in line up to POST_INLINE_MS, not the inline wait: it is not sent back through the queue, where
-- DELETEs that joined meanwhile kept the line full and it waited seconds; while it sleeps in line,
-- DELETEs find the line long and are delayed behind it.
if front then maxInline = math.max(maxInline, ${POST_INLINE_MS}) end
local due, joined = math.max(slot, inline), false
if inline <= maxInline then
  due, joined = inline, true
end
if paid then due, joined = paid, true end
local fields = {"r_rate", rate, "r_anchor", anchor, "r_at", now, "r_next", nxt}
if not h.r_cut then
  for _, v in ipairs({"r_wmax", rate, "r_k", 0, "r_cut", now, "r_ss", 1}) do table.insert(fields, v) end
end
if h.r_restart then
  for _, v in ipairs({"r_ss", h.r_ss, "r_cut", h.r_cut}) do table.insert(fields, v) end
end
count_ok(h, now, tonumber(ARGV[7]), fields)
-- The rate the number is asked for (slots handed out), as AWS measures its send rate: 0.5 s
-- buckets, smoothed 0.8. Without a line the rate never climbs past twice this.
local bucket = math.floor(now / 500)
local count = (h.r_mcount or 0) + issued
local last = h.r_mbucket or bucket
if bucket > last then
  local meas = count / ((bucket - last) / 2) * 0.8 + (h.r_meas or 0) * 0.2
  for _, v in ipairs({"r_meas", meas, "r_mbucket", bucket, "r_mcount", 0}) do table.insert(fields, v) end
else
  for _, v in ipairs({"r_mbucket", bucket, "r_mcount", count}) do table.insert(fields, v) end
end
if due > maxInline then
  table.insert(fields, "r_hw") table.insert(fields, now)
  redis.call("HSET", KEYS[3], unpack(fields))
  local mark = kind
  if front then mark = "f" end
  redis.call("HSET", KEYS[4], group, mark .. ":" .. pos)
  redis.call("PEXPIRE", KEYS[4], 86400000)
  if redis.call("PTTL", KEYS[3]) < ${NUMBER_KEEP_MS} then redis.call("PEXPIRE", KEYS[3], ${NUMBER_KEEP_MS}) end
  -- Back just before the slot (a job sleeping holds a concurrency slot); from far back, halfway
  -- there, to see whether the rate moved it.
  -- In slow start (below the ceiling) the rate may double every ${SLOW_START_MS} ms: back when the n
  -- tickets ahead would be served if it did (∫ rate·2^(t/S) dt = n), after one doubling at the
  -- soonest: a fixed 2 doublings sent a backlog of a thousand jobs through the queue twice a
  -- second, and near places came back after the rate had doubled twice, to slots gone unused.
  local margin = math.min(100, math.floor(maxInline / 2))
  local back = due - margin
  if doubling then
    local s = ${SLOW_START_MS} / 1000
    local t = s * math.log(1 + math.max(0, pos - anchor) * math.log(2) / (rate * s)) / math.log(2)
    back = math.min(back, math.max(${SLOW_START_MS}, math.floor(t * 1000) - margin))
  elseif back > 2000 then back = math.max(2000, math.floor(back / 2)) end
  return {back, 0, recovering, "", "", tostring(rate), ep, "", learned}
end
due = math.max(0, due)
-- A DELETE pays for its POST's slot too: the line moves on by two calls, and the POST, whenever
-- its DELETE is answered, goes without waiting behind the line (a group without a link waited up
-- to the whole line, and through the queue when the line was full: seconds at p99).
local spend = 1
if kind == "d" then spend = 2 elseif paid then spend = 0 end
if spend > 0 then
  table.insert(fields, "r_tat") table.insert(fields, math.max(tat, now + due) + spend * 1000 / rate)
end
redis.call("HSET", KEYS[3], unpack(fields))
if redis.call("PTTL", KEYS[3]) < ${NUMBER_KEEP_MS} then redis.call("PEXPIRE", KEYS[3], ${NUMBER_KEEP_MS}) end
if kind == "d" then
  -- The POST's paid slot: the one after the DELETE's.
  redis.call("HSET", KEYS[5], group, "p:" .. ep .. ":" .. math.ceil(now + due + 1000 / rate))
  redis.call("PEXPIRE", KEYS[5], 86400000)
end
if learned ~= "" then redis.call("HSET", KEYS[1], "rate", tostring(rate), "learned_limit", learned)
else redis.call("HSET", KEYS[1], "rate", tostring(rate)) end
local place = kind
if front then place = "f" end
return {0, due, recovering, "", "", tostring(rate), ep, place .. ":" .. pos, learned}`;

/**
 * KEYS: subject hash, account hash, the number's tickets and credits. ARGV: retry-after ms (-1 none), base ms,
 * max ms (whole numbers, retry-after ≤ max: bounded in JS), "1" to cut the number's rate (131208),
 * rate ceiling (0 none), start rate, group id, "1" when the refused call was a POST, successes
 * seen since (as CHECK's), clock (-1:
 * Redis TIME). Returns the wait and 1 when this answer set a pause, 2 when it lengthened one, 3
 * when it cut the rate (no pause: Graph named no wait), 0 when it only saw one; the rate; the
 * number's cut count (r_ep); and the limit this answer taught ("" when it did not cut).
 * Every value is computed (and bounded by max again) before the first write, so the script cannot
 * stop half-way through its writes.
 */
const THROTTLE = `${CLOCK}
${RATE_FUNCTIONS}
local max = math.floor(tonumber(ARGV[3]))
local asked = math.min(math.floor(tonumber(ARGV[1])), max)
local h = redis.call("HMGET", KEYS[1], "paused_until", "throttle_level")
local paused = tonumber(h[1]) or 0
local level = math.min(tonumber(h[2]) or 0, 12)
local cut, rate, ep, lim = nil, nil, "", ""
if ARGV[4] == "1" then
  local ceil = tonumber(ARGV[5])
  if ceil <= 0 then ceil = ${DEFAULT_CEILING} end
  local r = read_rate(KEYS[1])
  rate = rate_at(r, now, ceil, tonumber(ARGV[6]), redis.call("HLEN", KEYS[3]))
  local anchor, nxt = advance(r, now, rate)
  cut = {"r_anchor", anchor, "r_at", now, "r_next", nxt}
  if r.r_restart then
    for _, v in ipairs({"r_ss", r.r_ss, "r_cut", r.r_cut}) do table.insert(cut, v) end
  end
  count_ok(r, now, tonumber(ARGV[9]), cut)
  local wmax = nil
  local since = now - (r.r_cut or 0)
  if not r.r_cut or since >= ${CUT_WINDOW_MS} then
    -- From what actually got through lately, not from a rate that may have overshot (AWS's
    -- measuredTxRate): that is the best guess of the limit, the plateau CUBIC returns to.
    wmax = math.min(rate, measured(r, now, rate))
  elseif r.r_ss == 0 and since >= ${RECUT_MIN_MS} and (r.r_cok or 0) >= ${RECUT_MIN_OK} then
    -- Within the window, only on evidence: what got through since the cut (the limit itself, the
    -- bucket empty since) is well below the rate; a first cut from a burst-inflated count left it
    -- far above the limit, and every call until the window ends would be refused.
    local got = r.r_cok * 1000 / since
    if got < rate * RBETA then wmax = got end
  end
  ep = tostring(r.r_ep or 0)
  -- The line that is here ends at r_tat (calls let go or asleep for their slots).
  local tat = math.max(r.r_tat or 0, now)
  local kept = {}
  if wmax then
    wmax = math.max(RMIN, wmax)
    rate = math.max(RMIN, wmax * RBETA)
    ep = tostring((r.r_ep or 0) + 1)
    -- The slots handed out at the old rate are void: spacing restarts from the refused call (it
    -- took the slot now: the next is 1/rate later), and a call sleeping for one asks again when
    -- it sees the new r_ep.
    tat = now + 1000 / rate
    -- POSTs whose groups have no link keep their turn: a refused POST's credit ("r:"), and a
    -- DELETE's whose slot has come (the DELETE went; one still asleep asks again and pays
    -- anew), taken at the old rate, get the new line's first slots in their order. Voided, they
    -- came back behind the DELETEs that asked again meanwhile (1.2 s at a 10/s limit).
    -- (Credits are one per rotation between its DELETE and its POST: a small hash. One older
    -- than that, its POST never back, goes.)
    local old = tostring(r.r_ep or 0)
    local all, stale = redis.call("HGETALL", KEYS[4]), {}
    for i = 1, #all, 2 do
      local mark, rest = string.sub(all[i + 1], 1, 2), string.sub(all[i + 1], 3)
      local sep = string.find(rest, ":", 1, true)
      local slot = sep and tonumber(string.sub(rest, sep + 1)) or 0
      if not sep or slot <= now - ${HELD_FRESH_MS} then table.insert(stale, all[i])
      elseif string.sub(rest, 1, sep - 1) == old and (mark == "r:" or slot <= now) then
        table.insert(kept, {slot, all[i], mark})
      end
    end
    for i = 1, #stale, 1000 do redis.call("HDEL", KEYS[4], unpack(stale, i, math.min(i + 999, #stale))) end
    table.sort(kept, function(a, b) return a[1] < b[1] end)
    for _, v in ipairs({"r_wmax", wmax, "r_k", ((1 - RBETA) / RC) ^ (1 / 3), "r_cut", now, "r_ss", 0,
      "r_cok", 0, "r_ep", ep}) do
      table.insert(cut, v)
    end
  end
  -- A refused POST leaves its group without a link: it takes the first slot no call has (after
  -- the refused call's, at the new rate), paid now as its DELETE paid for it ("r:<cut count>:<slot
  -- ms>"), so DELETEs that join the line before it comes back go after it: as "first in line"
  -- only (f:) it came back behind the DELETEs that joined meanwhile, two intervals each, and
  -- waited 0.7-1.4 s at a 10/s limit. A later cut re-times it (above).
  local credits = {}
  for _, k in ipairs(kept) do
    table.insert(credits, k[2]) table.insert(credits, k[3] .. ep .. ":" .. math.ceil(tat))
    tat = tat + 1000 / rate
  end
  local credit = nil
  if ARGV[7] ~= "" and ARGV[8] == "1" then
    credit = math.max(tat, now + 1000 / rate)
    tat = credit + 1000 / rate
    table.insert(credits, ARGV[7]) table.insert(credits, "r:" .. ep .. ":" .. math.ceil(credit))
    table.insert(cut, "r_hw") table.insert(cut, now)
  end
  if wmax or credit then table.insert(cut, "r_tat") table.insert(cut, tat) end
  table.insert(cut, "r_rate") table.insert(cut, rate)
  redis.call("HSET", KEYS[1], unpack(cut))
  if wmax then lim = tostring(wmax) end
  if wmax then redis.call("HSET", KEYS[2], "rate", tostring(rate), "learned_limit", lim)
  else redis.call("HSET", KEYS[2], "rate", tostring(rate)) end
  if #credits > 0 then
    redis.call("HSET", KEYS[4], unpack(credits))
    redis.call("PEXPIRE", KEYS[4], 86400000)
  end
  if asked < 0 then
    if redis.call("PTTL", KEYS[1]) < ${NUMBER_KEEP_MS} then redis.call("PEXPIRE", KEYS[1], ${NUMBER_KEEP_MS}) end
    local wait = math.ceil(1000 / rate)
    if credit then wait = math.ceil(credit - now) end
    return {math.max(1, wait), 3, tostring(rate), ep, lim}
  end
end
local r = tostring(rate or "")
if paused > now then
  -- A pause is on: a later, longer Retry-After lengthens it (the pause is the max of both); a
  -- back-off without one does not grow it again (the first answer of the storm set it).
  if asked >= 0 and now + asked > paused then
    paused = now + asked
    redis.call("HSET", KEYS[1], "paused_until", paused)
    redis.call("PEXPIRE", KEYS[1], asked + 86400000)
    redis.call("HSET", KEYS[2], "paused_until", paused)
    return {asked, 2, r, ep, lim}
  end
  return {paused - now, 0, r, ep, lim}
end
local wait = asked
if wait < 0 then wait = math.min(math.floor(tonumber(ARGV[2]) * 4 ^ level), max) end
redis.call("HSET", KEYS[1], "paused_until", now + wait, "throttle_level", level + 1)
redis.call("HDEL", KEYS[1], "probe_until")
redis.call("PEXPIRE", KEYS[1], wait + 86400000)
redis.call("HSET", KEYS[2], "paused_until", now + wait)
return {wait, 1, r, ep, lim}`;

/** KEYS: subject hash. Resets the back-off level once the pause is over. */
const SUCCESS = `${NOW}
if (tonumber(redis.call("HGET", KEYS[1], "paused_until")) or 0) <= now then
  return redis.call("HDEL", KEYS[1], "throttle_level", "probe_until") end return 0`;

// Registered once per client (infra/scripts.ts): each call sends the script's SHA1, not its text.
type CheckReply = [number, number, number, string, string, string, string, string, string];
const CHECK_SCRIPT = luaScript<CheckReply>("rotatorGateCheck", 5, CHECK);
const THROTTLE_SCRIPT = luaScript<[number, number, string, string, string]>(
  "rotatorGateThrottle",
  4,
  THROTTLE,
);
const SUCCESS_SCRIPT = luaScript<number>("rotatorGateSuccess", 1, SUCCESS);

/** Held rotations are forgotten after a week without a new one (saga state lives that long too). */
const HELD_TTL_MS = 7 * 24 * 3600 * 1000;

const FAILING_FIELDS = [
  "failing_code",
  "failing_message",
  "failing_since",
  "token_fingerprint",
  "probe_group",
] as const;

export function createAccountGate(options: AccountGateOptions): AccountGate {
  const { redis, keys, logger } = options;
  const base = options.throttleBaseMs ?? 1_000;
  const maxOption = options.throttleMaxMs ?? DEFAULT_THROTTLE_MAX_MS;
  const max = Number.isFinite(maxOption) && maxOption >= 0 ? Math.floor(maxOption) : DEFAULT_THROTTLE_MAX_MS;
  const recheckMs = options.recheckMs ?? 60_000;
  const maxInline = options.maxInlineWaitMs ?? 500;
  // Subjects this process saw in back-off: a success of their account resets them.
  const recovering = new Map<string, Set<string>>();

  const tokenSubject = (account: AccountContext) => keys.account(`token:${tokenFingerprint(account.token)}`);
  // 131208 is per phone number. Without phone_number_id the number is unknown, but it is the
  // account's own: pause the account alone, never every account that shares the token.
  const numberKeys = (account: AccountContext) =>
    keys.number(
      account.phoneNumberId === undefined
        ? { account: account.name }
        : { phoneNumberId: account.phoneNumberId },
    );
  const numberSubject = (account: AccountContext) => numberKeys(account).hash;
  const subjects = (account: AccountContext) => [tokenSubject(account), numberSubject(account)];

  const heldKey = (accountName: string) => keys.account(`held:${accountName}`);
  const ticketsOf = (account: AccountContext) => numberKeys(account).tickets;
  const creditsOf = (account: AccountContext) => numberKeys(account).credits;
  const positive = (n: number | undefined) =>
    n !== undefined && n > 0 && Number.isFinite(n) ? n : undefined;
  const ceilingOf = (name: string) => positive(options.rateOf?.(name)) ?? 0;
  const startOf = (name: string) =>
    positive(options.rateOf?.(name)) ?? options.startRate ?? DEFAULT_START_RATE;
  const showRate = (account: AccountContext, rate: string | undefined, learned: string | undefined) => {
    const value = Number(rate);
    if (rate && Number.isFinite(value)) options.metrics?.learnedRate?.set({ account: account.name }, value);
    const limit = Number(learned);
    if (learned && Number.isFinite(limit))
      options.metrics?.learnedLimit?.set({ account: account.name }, limit);
  };

  // Graph calls of each account that succeeded since this process last told Redis: the next
  // script call adds them to the number's count (the rate a cut starts from), no call of its own.
  const oks = new Map<string, number>();
  const takeOk = (accountName: string) => {
    const n = oks.get(accountName) ?? 0;
    oks.delete(accountName);
    return String(n);
  };

  // The number's cut count (r_ep) as this process last heard it from any script reply: a call
  // that slept for its slot goes only if no cut came in meanwhile.
  const cuts = new Map<string, number>();
  const noteCuts = (account: AccountContext, ep: string | undefined) => {
    const subject = numberSubject(account);
    const known = cuts.get(subject) ?? 0;
    const heard = Number(ep);
    if (ep && Number.isFinite(heard) && heard > known) {
      cuts.set(subject, heard);
      return heard;
    }
    return known;
  };

  const check = (account: AccountContext, step: Step, groupId: string, keep = ""): GateCheckCall => {
    const succeeded = takeOk(account.name);
    return {
      lua: CHECK,
      keys: [keys.account(account.name), ...subjects(account), ticketsOf(account), creditsOf(account)],
      args: [
        String(Math.max(1000, base * 2)),
        String(ceilingOf(account.name)),
        String(maxInline),
        step,
        groupId,
        String(startOf(account.name)),
        succeeded,
        keep,
        String(options.clock?.() ?? -1),
      ],
      done: async (reply) => {
        const [wait, sleep, inBackoff, failingCode, fingerprint, rate, ep, pos, learned] =
          reply as CheckReply;
        showRate(account, rate, learned);
        const seen = noteCuts(account, ep);
        if (inBackoff === 1) {
          const set = recovering.get(account.name) ?? new Set<string>();
          subjects(account).forEach((s) => set.add(s));
          recovering.set(account.name, set);
        }
        if (failingCode !== "") {
          if (fingerprint !== tokenFingerprint(account.token)) {
            await gate.recover(account.name, "the account has a new token");
            return undefined;
          }
          if (step === "delete") throw new AccountFailingError(account.name, failingCode, groupId);
          // The group has no link: wait for the account to recover, then finish the POST.
          return recheckMs;
        }
        if (wait > 0) return wait;
        if (sleep > 0) {
          await (options.sleep?.(sleep) ?? new Promise((resolve) => setTimeout(resolve, sleep)));
          // A cut while it slept voided its slot (the old rate's): ask again, keeping its place.
          if ((cuts.get(numberSubject(account)) ?? 0) > seen) {
            const again = check(account, step, groupId, pos);
            return again.done(await CHECK_SCRIPT.run(redis, again.keys, again.args));
          }
        }
        return undefined;
      },
      unused: () => {
        const n = Number(succeeded);
        if (n > 0) oks.set(account.name, (oks.get(account.name) ?? 0) + n);
      },
    };
  };

  const gate: AccountGate = {
    recheckMs,
    async beforeGraphCall(account, step, groupId) {
      const call = gate.checkCall(account, step, groupId);
      return call.done(await CHECK_SCRIPT.run(redis, call.keys, call.args));
    },

    checkCall: (account, step, groupId) => check(account, step, groupId),

    async throttled(account, error, groupId) {
      const byNumber = error.scope === "number";
      const subject = byNumber ? numberSubject(account) : tokenSubject(account);
      const asked = error.retryAfterMs === undefined ? undefined : boundWait(error.retryAfterMs, max);
      const [wait, set, rate, ep, learned] = await THROTTLE_SCRIPT.run(
        redis,
        [subject, keys.account(account.name), ticketsOf(account), creditsOf(account)],
        [
          String(asked?.ms ?? -1),
          String(base),
          String(max),
          byNumber ? "1" : "0",
          String(ceilingOf(account.name)),
          String(startOf(account.name)),
          groupId ?? "",
          error.operation === "create-invite-link" ? "1" : "0",
          takeOk(account.name),
          String(options.clock?.() ?? -1),
        ],
      );
      showRate(account, rate, learned);
      if (byNumber) noteCuts(account, ep);
      const fields = {
        account: account.name,
        scope: error.scope,
        code: error.code,
        graphCode: error.graphCode,
        waitMs: wait,
      };
      if (asked?.clamped) {
        logger.warn(
          { ...fields, askedMs: error.retryAfterMs, maxMs: max },
          `graph asked account ${account.name} to wait longer than ROTATOR_THROTTLE_MAX; waiting ${max} ms`,
        );
      }
      if (set === 2) {
        logger.warn(
          fields,
          `graph asked account ${account.name} to wait longer; its pause now ends in ${wait} ms`,
        );
      }
      if (set === 3) {
        logger.info(
          { ...fields, rate: Number(rate) },
          `graph throttled phone number of account ${account.name}; its rate is now ${Number(rate).toFixed(1)}/s`,
        );
      }
      if (set === 1) {
        options.metrics?.throttlePauses.inc({ account: account.name });
        logger.warn(fields, `graph throttled account ${account.name}; pausing its rotations`);
      }
      return wait;
    },

    async failed(account, error, groupId) {
      const key = keys.account(account.name);
      const [[, first] = [null, 0]] =
        (await redis
          .multi()
          .hsetnx(key, "failing_since", String(Date.now()))
          .hset(key, {
            failing_code: error.code,
            failing_message: error.message,
            token_fingerprint: tokenFingerprint(account.token),
            probe_group: groupId,
          })
          .exec()) ?? [];
      options.metrics?.accountFailing.set({ account: account.name }, 1);
      if (Number(first) === 1) {
        logger.error(
          { account: account.name, code: error.code, graphCode: error.graphCode },
          `ACCOUNT FAILING: Graph rejected the token of account ${account.name}; its rotations stop ` +
            `before DELETE until a new token is loaded or a probe succeeds: ${error.message}`,
        );
      }
    },

    succeeded(accountName) {
      oks.set(accountName, (oks.get(accountName) ?? 0) + 1);
      const set = recovering.get(accountName);
      if (!set) return;
      recovering.delete(accountName);
      for (const subject of set) {
        SUCCESS_SCRIPT.run(redis, [subject], []).catch((error: unknown) => {
          logger.warn({ account: accountName, err: error }, "could not reset the throttle back-off");
        });
      }
    },

    async failing(accountName) {
      const raw = await redis.hgetall(keys.account(accountName));
      if (!raw.failing_code) return undefined;
      return {
        code: raw.failing_code,
        message: raw.failing_message ?? "",
        since: Number(raw.failing_since ?? 0),
        tokenFingerprint: raw.token_fingerprint ?? "",
        ...(raw.probe_group ? { probeGroup: raw.probe_group } : {}),
      };
    },

    async hold(accountName, rotationId) {
      const key = heldKey(accountName);
      const [[, added] = [null, 0]] =
        (await redis.multi().sadd(key, rotationId).pexpire(key, HELD_TTL_MS).exec()) ?? [];
      return Number(added) === 1;
    },

    async takeHeld(accountName) {
      const key = heldKey(accountName);
      const [[, members] = [null, []]] = (await redis.multi().smembers(key).del(key).exec()) ?? [];
      return Array.isArray(members) ? (members as string[]) : [];
    },

    async recover(accountName, reason) {
      const removed = await redis.hdel(keys.account(accountName), ...FAILING_FIELDS);
      options.metrics?.accountFailing.set({ account: accountName }, 0);
      if (removed > 0)
        logger.info({ account: accountName, reason }, `account ${accountName} recovered: ${reason}`);
      return removed > 0;
    },
  };
  return gate;
}
