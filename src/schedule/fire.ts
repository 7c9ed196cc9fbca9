import type { Queue } from "bullmq";
import type { RedisClient } from "../infra/redis.js";
import type { ResolvedConfig, ResolvedPolicy } from "../config/config.js";
import { nextFires } from "../config/cron.js";
import type { GraphClient } from "../graph/client.js";
import type { AccountContext, Clock, RotationJobData } from "../core/interfaces.js";
import { jitterOffset } from "../config/jitter.js";
import type { Keys } from "../core/keys.js";
import type { Logger } from "../infra/logger.js";
import type { Metrics } from "../infra/metrics.js";
import { enqueueRotations, scheduledRotationId } from "../rotation/queue.js";

/**
 * One fire of a policy becomes rotations: the group list (as written, or discovered from Graph
 * for `groups: all`), then per chunk of groups ONE Lua call that marks each group's
 * `pending_rotation` (skipping groups whose previous rotation is still waiting or retrying) and
 * ONE bulk enqueue. Rotation ids come from (policy, fire, group), so a repeated enqueue of the
 * same fire is deduplicated by BullMQ, and a group whose last published rotation is this one is
 * left out: running a fire again (after a failure or a crash) enqueues each group at most once.
 * The caller claims the fire first and records it done after (see policy-state.ts, scheduler.ts).
 */
export type FireTrigger = "schedule" | "catch-up";

/** What one fire did. */
export interface FireResult {
  readonly policy: string;
  readonly fireAt: number;
  readonly trigger: FireTrigger;
  /** Groups of the policy at this fire. */
  readonly groups: number;
  readonly enqueued: number;
  /** Groups skipped because their previous rotation was still pending. */
  readonly skipped: readonly string[];
  /** Groups left out because this fire's rotation of them already published (a fire run again). */
  readonly alreadyRotated?: number | undefined;
  /** Chunks (each one Lua call and one bulk enqueue). */
  readonly chunks: number;
}

/** Turns one fire of a policy into rotation jobs. */
export type FirePolicy = (
  policy: ResolvedPolicy,
  fireAt: number,
  trigger: FireTrigger,
) => Promise<FireResult>;

export interface FireDeps {
  readonly redis: RedisClient;
  readonly keys: Keys;
  readonly queue: Queue<RotationJobData>;
  /** For `groups: all`. */
  readonly graph: Pick<GraphClient, "listGroups">;
  /** The live config (explicit groups of other policies are left out of `groups: all`). */
  readonly config: () => ResolvedConfig;
  readonly resolveAccount: (name: string) => AccountContext;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly metrics?: Pick<Metrics, "fires" | "firedRotations" | "skippedFires" | "fireFailures"> | undefined;
  /** Groups per Lua call and bulk enqueue. Default 1000. */
  readonly chunkSize?: number;
  /**
   * A pending mark at least this old whose job is gone or finished is stale. Default 60 s. A mark
   * whose job is still there (waiting, delayed, held while its account fails) is busy at any age.
   */
  readonly orphanGraceMs?: number;
}

const DEFAULT_CHUNK = 1000;
const DEFAULT_ORPHAN_GRACE_MS = 60_000;
/** Skipped groups named in one log line; the rest are counted. */
const LOGGED_SKIPS = 20;

/**
 * KEYS: group hashes. ARGV: now, orphanGraceMs, BullMQ job key prefix, then one rotation id per
 * key. A group is busy when it has a pending mark of another rotation that is younger than the
 * grace (its job may not be enqueued yet) or whose job is still unfinished, however old: a rotation
 * held for days while its account fails must not have a second one queued behind it each day.
 * Busy groups are returned as 1-based indexes, groups whose last published rotation is this one as
 * negative indexes; every other group gets the new mark.
 */
const MARK_PENDING = `local now = tonumber(ARGV[1])
local grace = tonumber(ARGV[2])
local skipped = {}
for i, key in ipairs(KEYS) do
  local id = ARGV[i + 3]
  local pending = redis.call("HGET", key, "pending_rotation")
  local busy = false
  if pending and pending ~= id then
    local age = now - (tonumber(redis.call("HGET", key, "pending_since")) or 0)
    busy = true
    if age >= grace then
      local job = ARGV[3] .. pending
      if redis.call("EXISTS", job) == 0 or redis.call("HEXISTS", job, "finishedOn") == 1 then busy = false end
    end
  end
  if redis.call("HGET", key, "last_rotation_id") == id then skipped[#skipped + 1] = -i
  elseif busy then skipped[#skipped + 1] = i
  else redis.call("HSET", key, "pending_rotation", id, "pending_since", ARGV[1]) end
end
return skipped`;

export function createFirer(deps: FireDeps): FirePolicy {
  const chunkSize = Math.max(1, deps.chunkSize ?? DEFAULT_CHUNK);
  const jobKeyPrefix = deps.queue.toKey("");

  const fire: FirePolicy = async (policy, fireAt, trigger) => {
    const log = deps.logger.child({ policy: policy.name, fireAt: new Date(fireAt).toISOString(), trigger });
    const groups = await groupsOf(policy);
    const now = deps.clock.now();
    // Jitter counts from the fire (from now for a catch-up of a past fire) and ends well before the
    // next fire (jitter.ts), so each rotation has time to finish before that fire marks its group.
    const base = trigger === "catch-up" ? Math.max(fireAt, now) : fireAt;
    const next = nextFires(policy.schedule, policy.timezone, base, 1)[0];
    const gap = next === undefined ? Infinity : next - base;
    const skipped: string[] = [];
    let enqueued = 0;
    let alreadyRotated = 0;
    let chunks = 0;

    for (let start = 0; start < groups.length; start += chunkSize) {
      const chunk = groups.slice(start, start + chunkSize);
      const ids = chunk.map((group) => scheduledRotationId(policy.name, fireAt, group));
      const busy = (await deps.redis.eval(
        MARK_PENDING,
        chunk.length,
        ...chunk.map((group) => deps.keys.group(group)),
        String(now),
        String(deps.orphanGraceMs ?? DEFAULT_ORPHAN_GRACE_MS),
        jobKeyPrefix,
        ...ids,
      )) as number[];
      const skip = new Set(busy.filter((index) => index > 0).map((index) => index - 1));
      const done = new Set(busy.filter((index) => index < 0).map((index) => -index - 1));
      alreadyRotated += done.size;
      const rotations: RotationJobData[] = [];
      const delays: number[] = [];
      chunk.forEach((groupId, i) => {
        if (done.has(i)) return;
        if (skip.has(i)) {
          skipped.push(groupId);
          return;
        }
        rotations.push({
          rotationId: ids[i]!,
          groupId,
          account: policy.account,
          policy: policy.name,
          channel: policy.channel,
          trigger,
          fireAt,
          requestedAt: now,
        });
        delays.push(Math.max(0, base - now + jitterOffset(policy.name, groupId, policy.jitterMs, gap)));
      });
      await enqueueRotations(deps.queue, rotations, { delays });
      enqueued += rotations.length;
      chunks++;
    }

    deps.metrics?.fires.inc({ policy: policy.name, trigger });
    if (enqueued > 0) deps.metrics?.firedRotations.inc({ policy: policy.name }, enqueued);
    if (skipped.length > 0) {
      deps.metrics?.skippedFires.inc({ policy: policy.name, reason: "busy" }, skipped.length);
      log.warn(
        { skipped: skipped.length, groups: skipped.slice(0, LOGGED_SKIPS) },
        "skipped groups whose previous rotation is still pending",
      );
    }
    const counts = { groups: groups.length, enqueued, skipped: skipped.length, alreadyRotated, chunks };
    log.info(counts, "fire enqueued");
    return {
      policy: policy.name,
      fireAt,
      trigger,
      groups: groups.length,
      enqueued,
      skipped,
      alreadyRotated,
      chunks,
    };
  };

  // Every failed attempt is counted; the scheduler retries it (scheduler.ts).
  return async (policy, fireAt, trigger) => {
    try {
      return await fire(policy, fireAt, trigger);
    } catch (error) {
      deps.metrics?.fireFailures.inc({ policy: policy.name });
      throw error;
    }
  };

  async function groupsOf(policy: ResolvedPolicy): Promise<readonly string[]> {
    if (policy.groups !== "all") return policy.groups;
    const account = deps.resolveAccount(policy.account);
    if (account.phoneNumberId === undefined) {
      throw new Error(`policy ${policy.name}: groups: all needs phone_number_id on account ${account.name}`);
    }
    const listed = await deps.graph.listGroups(account, account.phoneNumberId);
    const owners = deps.config().policyByGroup;
    const ids = new Set<string>();
    for (const group of listed) {
      // A group listed by another policy belongs to that policy only.
      const owner = owners.get(group.id);
      if (owner === undefined || owner.name === policy.name) ids.add(group.id);
    }
    return [...ids];
  }
}
