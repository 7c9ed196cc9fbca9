import type { Queue } from "bullmq";
import { throwOnTransactionError, type RedisClient } from "../infra/redis.js";
import type { ResolvedConfig, ResolvedPolicy } from "../config/config.js";
import { nextFires } from "../config/cron.js";
import type { GraphClient } from "../graph/client.js";
import type { AccountContext, Clock, RotationJobData } from "../core/interfaces.js";
import { jitterOffset } from "../config/jitter.js";
import type { Keys } from "../core/keys.js";
import type { Logger } from "../infra/logger.js";
import type { Metrics } from "../infra/metrics.js";
import { enqueueRotations, scheduledRotationId } from "../rotation/queue.js";
import { fireChunk } from "./fire-chunk.js";

/**
 * One fire of a policy becomes rotations: the group list (as written, or discovered from Graph
 * for `groups: all`), then per chunk of groups ONE Lua call that marks each group's
 * `pending_rotation` (skipping groups whose previous rotation is still waiting or retrying) and
 * adds their delayed jobs (fire-chunk.ts). Rotation ids come from (policy, fire, group), so a repeated enqueue of the
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
  /** Groups left out because WhatsApp suspended them (a webhook), until it lifts the suspension. */
  readonly suspended?: number | undefined;
  /** Groups left out because WhatsApp deleted them (a webhook). */
  readonly deleted?: number | undefined;
  /** Chunks (each one Lua call and one bulk enqueue). */
  readonly chunks: number;
}

interface ChunkResult {
  readonly skipped: readonly string[];
  readonly alreadyRotated: number;
  readonly suspended: number;
  readonly deleted: number;
  readonly enqueued: number;
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
  /** Groups per Lua call (it marks them and adds their jobs). Default 1000. */
  readonly chunkSize?: number;
  /**
   * A pending mark at least this old whose job is gone or finished is stale. Default 60 s. A mark
   * whose job is still there (waiting, delayed, held while its account fails) is busy at any age.
   */
  readonly orphanGraceMs?: number;
}

const DEFAULT_CHUNK = 1000;
/** Chunks in flight at once (each one Lua call). */
const CHUNKS_IN_FLIGHT = 3;
const DEFAULT_ORPHAN_GRACE_MS = 60_000;
/** Skipped groups named in one log line; the rest are counted. */
const LOGGED_SKIPS = 20;
/** Group ids per SADD when a fire records the groups it listed. */
const LISTED_PER_SADD = 1000;

export function createFirer(deps: FireDeps): FirePolicy {
  const chunkSize = Math.max(1, deps.chunkSize ?? DEFAULT_CHUNK);

  const fire: FirePolicy = async (policy, fireAt, trigger) => {
    const log = deps.logger.child({ policy: policy.name, fireAt: new Date(fireAt).toISOString(), trigger });
    const groups = await groupsOf(policy);
    const now = deps.clock.now();
    // Jitter counts from the fire (from now for a catch-up of a past fire) and ends well before the
    // next fire (jitter.ts), so each rotation has time to finish before that fire marks its group.
    const base = trigger === "catch-up" ? Math.max(fireAt, now) : fireAt;
    const next = nextFires(policy.schedule, policy.timezone, base, 1)[0];
    const gap = next === undefined ? Infinity : next - base;
    const orphanGraceMs = deps.orphanGraceMs ?? DEFAULT_ORPHAN_GRACE_MS;

    // One chunk: marks its groups and adds their delayed jobs in one Lua call (fire-chunk.ts).
    const runChunk = async (chunk: readonly string[]): Promise<ChunkResult> => {
      const rotations: RotationJobData[] = [];
      const delays: number[] = [];
      for (const groupId of chunk) {
        rotations.push({
          rotationId: scheduledRotationId(policy.name, fireAt, groupId),
          groupId,
          account: policy.account,
          policy: policy.name,
          channel: policy.channel,
          trigger,
          fireAt,
          requestedAt: now,
        });
        delays.push(Math.max(0, base - now + jitterOffset(policy.name, groupId, policy.jitterMs, gap)));
      }
      const outcomes = await fireChunk(deps.redis, deps.queue, {
        rotations,
        delays,
        now,
        orphanGraceMs,
        groupKey: (groupId) => deps.keys.group(groupId),
      });
      const skipped: string[] = [];
      const addNow: RotationJobData[] = [];
      let alreadyRotated = 0;
      let suspended = 0;
      let deleted = 0;
      let enqueued = 0;
      outcomes.forEach((outcome, i) => {
        if (outcome === 1) skipped.push(chunk[i]!);
        else if (outcome === 2) alreadyRotated++;
        else if (outcome === 4) suspended++;
        else if (outcome === 5) deleted++;
        else {
          enqueued++;
          if (outcome === 3) addNow.push(rotations[i]!);
        }
      });
      // Jobs due at once enter BullMQ's wait list (or its paused list) through BullMQ itself.
      await enqueueRotations(deps.queue, addNow);
      return { skipped, alreadyRotated, suspended, deleted, enqueued };
    };

    // A few chunks in flight at once, so this process prepares the next chunk while Redis runs the
    // previous one (one after another, each would wait for the other). Chunks hold different
    // groups, so their order does not matter; results are kept in order. A failed chunk stops the
    // fire (the scheduler runs it again: fire-retry.ts).
    const chunks: (readonly string[])[] = [];
    for (let start = 0; start < groups.length; start += chunkSize)
      chunks.push(groups.slice(start, start + chunkSize));
    const results = new Array<ChunkResult>(chunks.length);
    let nextChunk = 0;
    let failed = false;
    const lane = async () => {
      while (!failed && nextChunk < chunks.length) {
        const index = nextChunk++;
        results[index] = await runChunk(chunks[index]!).catch((error: unknown) => {
          failed = true;
          throw error;
        });
      }
    };
    const lanes = await Promise.allSettled(
      Array.from({ length: Math.min(CHUNKS_IN_FLIGHT, chunks.length) }, lane),
    );
    const rejected = lanes.find((lane) => lane.status === "rejected");
    if (rejected) throw rejected.reason;
    const skipped = results.flatMap((result) => result.skipped);
    const enqueued = results.reduce((sum, result) => sum + result.enqueued, 0);
    const alreadyRotated = results.reduce((sum, result) => sum + result.alreadyRotated, 0);
    const suspended = results.reduce((sum, result) => sum + result.suspended, 0);
    const deleted = results.reduce((sum, result) => sum + result.deleted, 0);

    deps.metrics?.fires.inc({ policy: policy.name, trigger });
    if (enqueued > 0) deps.metrics?.firedRotations.inc({ policy: policy.name }, enqueued);
    if (skipped.length > 0) {
      deps.metrics?.skippedFires.inc({ policy: policy.name, reason: "busy" }, skipped.length);
      log.warn(
        { skipped: skipped.length, groups: skipped.slice(0, LOGGED_SKIPS) },
        "skipped groups whose previous rotation is still pending",
      );
    }
    if (suspended > 0)
      deps.metrics?.skippedFires.inc({ policy: policy.name, reason: "suspended" }, suspended);
    if (deleted > 0) deps.metrics?.skippedFires.inc({ policy: policy.name, reason: "deleted" }, deleted);
    const counts = {
      groups: groups.length,
      enqueued,
      skipped: skipped.length,
      alreadyRotated,
      suspended,
      deleted,
      chunks: chunks.length,
    };
    log.info(counts, "fire enqueued");
    return {
      policy: policy.name,
      fireAt,
      trigger,
      groups: groups.length,
      enqueued,
      skipped,
      alreadyRotated,
      suspended,
      deleted,
      chunks: chunks.length,
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
    await recordListed(policy.name, [...ids]);
    return [...ids];
  }

  /**
   * Replaces the set of the groups this fire listed (`keys.policyGroups`): a join link's `policy:`
   * pool keeps a group whose newest message is a manual rotation's (`policy: null`), also in a
   * gateway started after it.
   */
  async function recordListed(name: string, ids: readonly string[]): Promise<void> {
    const key = deps.keys.policyGroups(name);
    const transaction = deps.redis.multi().del(key);
    for (let start = 0; start < ids.length; start += LISTED_PER_SADD)
      transaction.sadd(key, ...ids.slice(start, start + LISTED_PER_SADD));
    throwOnTransactionError(await transaction.exec());
  }
}
