import type { RedisClient } from "../infra/redis.js";
import type { ResolvedConfig, ResolvedPolicy } from "../config/config.js";
import { nextFires } from "../config/cron.js";
import type { Trigger } from "../core/interfaces.js";
import type { Keys } from "../core/keys.js";
import { maskLink } from "../core/invite-link.js";

/**
 * What `status` shows, gathered from Redis in batches: every group the policy file lists, then
 * every other group with state under the prefix (`keys.groupsIndex`: manual rotations, `groups:
 * all`). One pipeline of HGETALLs per batch, never a round trip per group, so 100,000 groups
 * stream in a few hundred round trips. Links are masked here, so no caller can print a whole one.
 */

/**
 * One word per group, most urgent first: `deleted` > `suspended` > `no-link` > `failing` >
 * `pending` > `ok` > `never-rotated`. Deleted and suspended come from WhatsApp's webhooks: such a
 * group is not rotated (its rotations end skipped) and not offered by the gateway.
 */
export type GroupHealth =
  "deleted" | "suspended" | "no-link" | "failing" | "pending" | "ok" | "never-rotated";

/** Why the group's last rotation failed for good (group hash `failure_*`). */
export interface GroupFailureStatus {
  readonly code: string;
  readonly message: string;
  readonly at: string | null;
  readonly rotation_id: string | null;
}

/** The account's failing state (account hash `failing_*`), shared by all its groups. */
export interface AccountFailureStatus {
  readonly code: string;
  readonly message: string;
  readonly since: string | null;
}

/** One group's row of `status`; times are ISO-8601 UTC, absent values null. */
export interface GroupStatus {
  readonly group_id: string;
  /** The policy that rotates it now, or null (manual only, or no longer in the policy file). */
  readonly policy: string | null;
  readonly account: string | null;
  readonly channel: string | null;
  readonly last_rotated_at: string | null;
  readonly sequence: number | null;
  readonly trigger: Trigger | null;
  readonly last_rotation_id: string | null;
  /**
   * The group's live link as last published, masked (`https://chat.whatsapp.com/AbCd…`); never the
   * whole link. Null while the group has none (`without_link_since` set): the published one was
   * deleted and no longer works.
   */
  readonly link: string | null;
  /** The policy's next fire (before jitter); null outside policies. */
  readonly next_due_at: string | null;
  readonly without_link_since: string | null;
  /** Rotation id the scheduler enqueued and no worker has finished yet. */
  readonly pending_rotation: string | null;
  readonly pending_since: string | null;
  readonly failure: GroupFailureStatus | null;
  readonly account_failure: AccountFailureStatus | null;
  /** Set while the account is throttled (in the future only). */
  readonly account_paused_until: string | null;
  /** WhatsApp deleted the group (a `group_delete` webhook): dropped from rotation and pools. */
  readonly deleted_at: string | null;
  /** WhatsApp suspended the group (a `group_suspend` webhook), until the suspension clears. */
  readonly suspended_since: string | null;
  /** Known participants (webhooks, the gateway's poll); null when nothing is known. */
  readonly participants: number | null;
  /** People who joined through the current link since its rotation (webhooks); null when none seen. */
  readonly joins_since_rotation: number | null;
  /** Graph calls per second the account's phone number may make, as learned (null before any call). */
  readonly account_rate: number | null;
  /**
   * The limit (calls/s) the account's phone number was found to allow, from 131208 answers: where
   * its rate returns after a cut and restarts after a quiet spell; null before the first.
   */
  readonly account_learned_limit: number | null;
  readonly state: GroupHealth;
}

export interface StatusSource {
  readonly redis: RedisClient;
  readonly keys: Keys;
  readonly config: ResolvedConfig;
  /** The instant next fires and pauses are judged from, epoch ms. */
  readonly now: number;
  /** Groups per pipeline; default 1,000. */
  readonly batchSize?: number;
  /** Applied to failure messages before they leave the process (secret redaction). */
  readonly clean?: (text: string) => string;
}

/** Policy groups in file order, then every other indexed group, sorted. */
export async function listGroupIds(
  redis: RedisClient,
  keys: Keys,
  config: ResolvedConfig,
): Promise<string[]> {
  const ids = [...config.policyByGroup.keys()];
  const extra: string[] = [];
  let cursor = "0";
  do {
    const [next, found] = await redis.sscan(keys.groupsIndex, cursor, "COUNT", 1000);
    cursor = next;
    for (const id of found) if (!config.policyByGroup.has(id)) extra.push(id);
  } while (cursor !== "0");
  // SSCAN may return a member twice while the set is rehashing.
  return ids.concat([...new Set(extra)].sort());
}

/** Yields the statuses of `ids` in order, one batch (one Redis pipeline) at a time. */
export async function* readGroupStatuses(
  source: StatusSource,
  ids: readonly string[],
): AsyncGenerator<GroupStatus[]> {
  const { redis, keys, config, now } = source;
  const size = source.batchSize ?? 1000;
  const clean = source.clean ?? ((text: string) => text);
  const accounts = new Map<string, Record<string, string>>();
  const nextDue = new Map<string, string | null>();
  const dueOf = (policy: ResolvedPolicy): string | null => {
    if (!nextDue.has(policy.name)) {
      const fire = nextFires(policy.schedule, policy.timezone, now, 1)[0];
      nextDue.set(policy.name, fire === undefined ? null : new Date(fire).toISOString());
    }
    return nextDue.get(policy.name) ?? null;
  };
  const allPolicies = new Map(config.policies.filter((p) => p.groups === "all").map((p) => [p.name, p]));
  await loadAccounts(redis, keys, [...config.accounts.keys()], accounts);

  for (let start = 0; start < ids.length; start += size) {
    const batch = ids.slice(start, start + size);
    const pipeline = redis.pipeline();
    for (const id of batch) pipeline.hgetall(keys.group(id));
    pipeline.hmget(keys.groupParticipants, ...batch);
    const replies = (await pipeline.exec()) ?? [];
    const counts = (replies[batch.length]?.[1] ?? []) as (string | null)[];
    const hashes = batch.map((_, i) => {
      const [error, value] = replies[i] ?? [new Error("no reply"), null];
      if (error) throw error;
      return (value ?? {}) as Record<string, string>;
    });
    const rows = batch.map((id, i) => {
      const hash = hashes[i]!;
      const policy =
        config.policyByGroup.get(id) ?? (hash.last_policy ? allPolicies.get(hash.last_policy) : undefined);
      const participants = counts[i] ?? null;
      return { id, hash, policy, participants, account: policy?.account ?? (hash.last_account || null) };
    });
    const missing = rows.map((r) => r.account).filter((a): a is string => a !== null && !accounts.has(a));
    await loadAccounts(redis, keys, [...new Set(missing)], accounts);

    yield rows.map(({ id, hash, policy, account, participants }) => {
      const accountHash = account === null ? {} : (accounts.get(account) ?? {});
      const row = toStatus(id, hash, policy, account, accountHash, policy ? dueOf(policy) : null, now, clean);
      return withWebhookState(row, hash, participants);
    });
  }
}

async function loadAccounts(
  redis: RedisClient,
  keys: Keys,
  names: readonly string[],
  into: Map<string, Record<string, string>>,
): Promise<void> {
  if (names.length === 0) return;
  const pipeline = redis.pipeline();
  for (const name of names) pipeline.hgetall(keys.account(name));
  const replies = (await pipeline.exec()) ?? [];
  names.forEach((name, i) => {
    const [error, value] = replies[i] ?? [null, {}];
    if (error) throw error;
    into.set(name, (value ?? {}) as Record<string, string>);
  });
}

/** A calls/s figure the gate mirrored into the account hash, to one decimal; null when absent. */
const perSecond = (value: string | undefined): number | null =>
  value !== undefined && value !== "" && Number.isFinite(Number(value))
    ? Math.round(Number(value) * 10) / 10
    : null;

function toStatus(
  id: string,
  hash: Record<string, string>,
  policy: ResolvedPolicy | undefined,
  account: string | null,
  accountHash: Record<string, string>,
  nextDueAt: string | null,
  now: number,
  clean: (text: string) => string,
): GroupStatus {
  // The last message's sequence (per channel); state from before per-channel counting has only `sequence`.
  const sequence = Number(hash.last_sequence ?? hash.sequence);
  const failure: GroupFailureStatus | null = hash.failure_code
    ? {
        code: hash.failure_code,
        message: clean(hash.failure_message ?? ""),
        at: instant(hash.failed_at),
        rotation_id: hash.failed_rotation_id || null,
      }
    : null;
  const accountFailure: AccountFailureStatus | null = accountHash.failing_code
    ? {
        code: accountHash.failing_code,
        message: clean(accountHash.failing_message ?? ""),
        since: instant(accountHash.failing_since),
      }
    : null;
  const pausedUntil = instant(accountHash.paused_until);
  const withoutLinkSince = instant(hash.without_link_since);
  const status = {
    group_id: id,
    policy: policy?.name ?? null,
    account,
    channel: hash.last_channel || policy?.channel || null,
    last_rotated_at: instant(hash.last_rotated_at),
    sequence: Number.isSafeInteger(sequence) && sequence > 0 ? sequence : null,
    trigger: isTrigger(hash.last_trigger) ? hash.last_trigger : null,
    last_rotation_id: hash.last_rotation_id || null,
    link: withoutLinkSince === null ? linkOf(hash.last_message) : null,
    next_due_at: nextDueAt,
    without_link_since: withoutLinkSince,
    pending_rotation: hash.pending_rotation || null,
    pending_since: instant(hash.pending_since),
    failure,
    account_failure: accountFailure,
    account_paused_until: pausedUntil !== null && Date.parse(pausedUntil) > now ? pausedUntil : null,
    account_rate: perSecond(accountHash.rate),
    account_learned_limit: perSecond(accountHash.learned_limit),
    deleted_at: null,
    suspended_since: null,
    participants: null,
    joins_since_rotation: null,
  };
  return { ...status, state: healthOf(status) };
}

/** What WhatsApp's webhooks told about the group: deletion, suspension, participants, joins. */
function withWebhookState(
  row: GroupStatus,
  hash: Record<string, string>,
  participants: string | null,
): GroupStatus {
  const joinsCountCurrentLink = (hash.joins_rotation ?? "") === (hash.last_rotation_id ?? "");
  const status = {
    ...row,
    deleted_at: instant(hash.deleted_at),
    suspended_since: instant(hash.suspended_at),
    participants: participants === null ? null : Math.max(0, Number(participants) || 0),
    joins_since_rotation:
      hash.joins === undefined ? null : joinsCountCurrentLink ? Number(hash.joins) || 0 : 0,
  };
  return { ...status, state: healthOf(status) };
}

function healthOf(s: Omit<GroupStatus, "state">): GroupHealth {
  if (s.deleted_at) return "deleted";
  if (s.suspended_since) return "suspended";
  if (s.without_link_since) return "no-link";
  if (s.failure || s.account_failure) return "failing";
  if (s.pending_rotation) return "pending";
  return s.sequence === null ? "never-rotated" : "ok";
}

/** Where the masking lives now (core/invite-link.ts, shared with job return values). */
export { maskLink };

function linkOf(lastMessage: string | undefined): string | null {
  if (!lastMessage) return null;
  try {
    const link = (JSON.parse(lastMessage) as { invite_link?: unknown }).invite_link;
    return typeof link === "string" && link !== "" ? maskLink(link) : null;
  } catch {
    return null;
  }
}

/** Epoch ms (digits) or an ISO string, as ISO-8601 UTC; null when absent or unreadable. */
function instant(value: string | undefined): string | null {
  if (!value) return null;
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : null;
}

function isTrigger(value: string | undefined): value is Trigger {
  return value === "schedule" || value === "manual" || value === "catch-up" || value === "joins";
}
