import { createHash } from "node:crypto";
import type { RedisClient as Redis } from "../infra/redis.js";
import { AccountFailingError } from "../core/errors.js";
import type { AccountContext, Step } from "../core/interfaces.js";
import type { Keys } from "../core/keys.js";
import type { Logger } from "../infra/logger.js";
import type { Metrics } from "../infra/metrics.js";
import { boundWait, DEFAULT_THROTTLE_MAX_MS } from "../graph/wait.js";
import type { RotationGate } from "../rotation/ports.js";

/**
 * The account gate, consulted before every Graph call of a rotation: one account's trouble (a
 * throttle, a failing token, its steady rate) must not spill over to others, across processes.
 * A throttle pauses the token or phone number for what Graph asked (else base·4^level, capped), and
 * one probe call at a time ends the pause, so a storm costs one call per pause, not per rotation.
 * A failing token holds its rotations before DELETE (the group keeps its link) until a new token or
 * the probe (`probe.ts`) shows it recovered. Its Redis state is listed at `Keys.account` (keys.ts).
 */
export interface AccountGate extends RotationGate {
  /** Wait in ms before the call may go (the job is delayed), or undefined to go now. */
  beforeGraphCall(account: AccountContext, step: Step, groupId: string): Promise<number | undefined>;
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
  readonly redis: Redis;
  readonly keys: Keys;
  readonly logger: Logger;
  readonly metrics?: Pick<Metrics, "throttlePauses" | "accountFailing">;
  /** Requests per second of an account, if limited. */
  readonly rateOf?: (accountName: string) => number | undefined;
  /** First throttle back-off without Retry-After; later ones grow 4×. Default 1 s. */
  readonly throttleBaseMs?: number;
  /** Longest wait any Graph answer or back-off imposes (ROTATOR_THROTTLE_MAX). Default 15 min. */
  readonly throttleMaxMs?: number;
  /** Default 60 s (the probe interval). */
  readonly recheckMs?: number;
  /** Rate waits up to this are slept in place. Default 2 s. */
  readonly maxInlineWaitMs?: number;
}

/** A short, non-reversible name of a token: enough to notice it changed, useless to an attacker. */
export function tokenFingerprint(token: string): string {
  return createHash("sha256").update(token).digest("hex").slice(0, 12);
}

const NOW = `local t = redis.call("TIME") local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/** KEYS: account hash, subject hashes. ARGV: probe lease ms, rate interval ms (0 none), max inline ms. */
const CHECK = `${NOW}
local wait, recovering = 0, 0
for i = 2, #KEYS do
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
local interval = tonumber(ARGV[2])
if wait == 0 and not f[1] and interval > 0 then
  local tat = math.max(tonumber(redis.call("HGET", KEYS[1], "rate_tat") or "0") or 0, now)
  if tat - now <= tonumber(ARGV[3]) then
    redis.call("HSET", KEYS[1], "rate_tat", tat + interval)
    return {0, tat - now, recovering, "", ""}
  end
  wait = tat - now
end
return {wait, 0, recovering, f[1] or "", f[2] or ""}`;

/**
 * KEYS: subject hash, account hash. ARGV: retry-after ms (-1 none), base ms, max ms, all whole
 * numbers with retry-after ≤ max (bounded in JS). Returns the wait and 1 when this answer set a
 * pause, 2 when it lengthened one, 0 when it only saw one. Every value is computed (and bounded
 * by max again) before the first write, so the script cannot stop half-way through its writes.
 */
const THROTTLE = `${NOW}
local max = math.floor(tonumber(ARGV[3]))
local asked = math.min(math.floor(tonumber(ARGV[1])), max)
local h = redis.call("HMGET", KEYS[1], "paused_until", "throttle_level")
local paused = tonumber(h[1]) or 0
if paused > now then
  -- A pause is on: a later, longer Retry-After lengthens it (the pause is the max of both); a
  -- back-off without one does not grow it again (the first answer of the storm set it).
  if asked >= 0 and now + asked > paused then
    paused = now + asked
    redis.call("HSET", KEYS[1], "paused_until", paused)
    redis.call("PEXPIRE", KEYS[1], asked + 86400000)
    redis.call("HSET", KEYS[2], "paused_until", paused)
    return {asked, 2}
  end
  return {paused - now, 0}
end
local level = math.min(tonumber(h[2]) or 0, 12)
local wait = asked
if wait < 0 then wait = math.min(math.floor(tonumber(ARGV[2]) * 4 ^ level), max) end
redis.call("HSET", KEYS[1], "paused_until", now + wait, "throttle_level", level + 1)
redis.call("HDEL", KEYS[1], "probe_until")
redis.call("PEXPIRE", KEYS[1], wait + 86400000)
redis.call("HSET", KEYS[2], "paused_until", now + wait)
return {wait, 1}`;

/** KEYS: subject hash. Resets the back-off level once the pause is over. */
const SUCCESS = `${NOW}
if (tonumber(redis.call("HGET", KEYS[1], "paused_until")) or 0) <= now then
  return redis.call("HDEL", KEYS[1], "throttle_level", "probe_until") end return 0`;

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
  const maxInline = options.maxInlineWaitMs ?? 2_000;
  // Subjects this process saw in back-off: a success of their account resets them.
  const recovering = new Map<string, Set<string>>();

  const tokenSubject = (account: AccountContext) => keys.account(`token:${tokenFingerprint(account.token)}`);
  // 131208 is per phone number. Without phone_number_id the number is unknown, but it is the
  // account's own: pause the account alone, never every account that shares the token.
  const numberSubject = (account: AccountContext) =>
    account.phoneNumberId === undefined
      ? keys.account(`number-of:${account.name}`)
      : keys.account(`number:${account.phoneNumberId}`);
  const subjects = (account: AccountContext) => [tokenSubject(account), numberSubject(account)];

  const heldKey = (accountName: string) => keys.account(`held:${accountName}`);

  const gate: AccountGate = {
    recheckMs,
    async beforeGraphCall(account, step, groupId) {
      const rate = options.rateOf?.(account.name);
      const interval = rate !== undefined && rate > 0 ? Math.max(1, Math.round(1000 / rate)) : 0;
      const reply = (await redis.eval(
        CHECK,
        1 + subjects(account).length,
        keys.account(account.name),
        ...subjects(account),
        String(Math.max(1000, base * 2)),
        String(interval),
        String(maxInline),
      )) as [number, number, number, string, string];
      const [wait, sleep, inBackoff, failingCode, fingerprint] = reply;
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
      if (sleep > 0) await new Promise((resolve) => setTimeout(resolve, sleep));
      return undefined;
    },

    async throttled(account, error) {
      const subject = error.scope === "number" ? numberSubject(account) : tokenSubject(account);
      const asked = error.retryAfterMs === undefined ? undefined : boundWait(error.retryAfterMs, max);
      const [wait, set] = (await redis.eval(
        THROTTLE,
        2,
        subject,
        keys.account(account.name),
        String(asked?.ms ?? -1),
        String(base),
        String(max),
      )) as [number, number];
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
      const set = recovering.get(accountName);
      if (!set) return;
      recovering.delete(accountName);
      for (const subject of set) {
        redis.eval(SUCCESS, 1, subject).catch((error: unknown) => {
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
