import type { ResolvedPolicy } from "../config/config.js";
import { firesBetween, previousFire } from "../config/cron.js";
import type { FirePolicy, FireResult } from "./fire.js";
import type { Logger } from "../infra/logger.js";
import type { Metrics, MissedFireReason } from "../infra/metrics.js";
import type { PolicyStatePort } from "./policy-state.js";

/**
 * Catch-up, run once per policy when a scheduler starts, so that fires missed while no scheduler
 * ran are not lost (`catchUp`); and recovery, at start and periodically, of a fire a replica
 * claimed and never finished (`recoverUnfinished`).
 */
export type CatchUpOutcome =
  | { readonly kind: "first-start"; readonly recorded?: number | undefined }
  | { readonly kind: "up-to-date" }
  | {
      readonly kind: "off" | "too-old" | "claimed-elsewhere";
      readonly missed: number;
      readonly newest: number;
    }
  | { readonly kind: "caught-up"; readonly missed: number; readonly result: FireResult }
  | Exclude<RecoveryOutcome, { kind: "none" }>;

/** What `recoverUnfinished` did. */
export type RecoveryOutcome =
  | { readonly kind: "none" }
  | {
      /** in-grace: its holder may still be at work; superseded: a later fire is due. */
      readonly kind: "in-grace" | "superseded" | "taken-elsewhere";
      readonly fireAt: number;
    }
  | { readonly kind: "recovered"; readonly fireAt: number; readonly result: FireResult };

export interface CatchUpDeps {
  readonly state: PolicyStatePort;
  /** Runs a claimed fire (the scheduler's retries a failed one in the background). */
  readonly fire: FirePolicy;
  readonly logger: Logger;
  /** An unfinished fire is taken over once its claim is this old. Default 60 s. */
  readonly graceMs?: number | undefined;
  /** Counts fires that will not run (`wa_rotator_missed_fires_total`). */
  readonly metrics?: Pick<Metrics, "missedFires"> | undefined;
}

/** Default of `CatchUpDeps.graceMs`. */
export const DEFAULT_RECOVERY_GRACE_MS = 60_000;

/** Missed fires are counted up to this many per start (for the log line and the metric). */
const COUNT_LIMIT = 10_000;

/**
 * - A first-ever start (no `last_fire`) records the most recent past fire and rotates nothing.
 * - Otherwise, when fires exist in (last_fire, now] and the newest of them is at most `catch_up`
 *   old, that newest fire is claimed and its groups rotate once with trigger `catch-up`, however
 *   many fires were missed. A replica that loses the claim does nothing: the fire is handled.
 * - Missed fires that are not caught up (catch-up off, or too old) are counted in
 *   `wa_rotator_missed_fires_total`, each once across replicas and restarts.
 * - When no fire was missed, an unfinished fire is recovered (`recoverUnfinished`).
 */
export async function catchUp(
  policy: ResolvedPolicy,
  now: number,
  deps: CatchUpDeps,
): Promise<CatchUpOutcome> {
  const log = deps.logger.child({ policy: policy.name });
  const last = await deps.state.lastFire(policy.name);
  // The newest fire at or before now.
  const newest = previousFire(policy.schedule, policy.timezone, now + 1);
  if (last === undefined) {
    if (newest !== undefined) await deps.state.recordIfAbsent(policy.name, newest);
    return { kind: "first-start", recorded: newest };
  }
  if (newest === undefined || newest <= last) {
    const recovery = await recoverUnfinished(policy, now, deps);
    return recovery.kind === "none" ? { kind: "up-to-date" } : recovery;
  }

  const missed = firesBetween(policy.schedule, policy.timezone, last, now, COUNT_LIMIT).length;
  const facts = { missed, newest: new Date(newest).toISOString(), lastFire: new Date(last).toISOString() };
  if (policy.catchUpMs <= 0) {
    log.info(facts, "missed fires; catch-up is off for this policy");
    await countMissed(policy, last, newest, missed, "catch-up-off", deps);
    return { kind: "off", missed, newest };
  }
  if (now - newest > policy.catchUpMs) {
    log.warn({ ...facts, catchUpMs: policy.catchUpMs }, "missed fires are older than catch_up; not rotating");
    await countMissed(policy, last, newest, missed, "too-old", deps);
    return { kind: "too-old", missed, newest };
  }
  if (!(await deps.state.claim(policy.name, newest, "catch-up"))) {
    return { kind: "claimed-elsewhere", missed, newest };
  }
  log.info(facts, "catching up missed fires: rotating the policy's groups once");
  const result = await deps.fire(policy, newest, "catch-up");
  await deps.state.markDone(policy.name, newest);
  return { kind: "caught-up", missed, result };
}

/**
 * Counts the missed fires in (last, newest] once across replicas and restarts: only the start
 * that records `newest` as missed counts, and only the fires after the ones counted before.
 */
async function countMissed(
  policy: ResolvedPolicy,
  last: number,
  newest: number,
  missed: number,
  reason: MissedFireReason,
  deps: CatchUpDeps,
): Promise<void> {
  if (!deps.metrics) return;
  const noted = await deps.state.noteMissed(policy.name, newest);
  if (!noted) return;
  const since = noted.previous;
  const count =
    since === undefined || since <= last
      ? missed
      : firesBetween(policy.schedule, policy.timezone, since, newest, COUNT_LIMIT).length;
  if (count > 0) deps.metrics.missedFires.inc({ policy: policy.name, reason }, count);
}

/**
 * Runs again a fire of the policy that was claimed and never done (its replica crashed, or gave
 * up) for `graceMs`, with its original fire time and trigger, so its rotation ids are the same and
 * nothing is enqueued twice. Only while it is still the policy's newest due fire, whatever
 * `catch_up` says: catch_up bounds fires missed while no scheduler ran, not the repair of a fire a
 * replica claimed (its grace alone is longer than a short catch_up, and 0 is off).
 */
export async function recoverUnfinished(
  policy: ResolvedPolicy,
  now: number,
  deps: CatchUpDeps,
): Promise<RecoveryOutcome> {
  const open = await deps.state.unfinished(policy.name);
  if (!open) return { kind: "none" };
  const { fireAt, trigger } = open;
  const facts = {
    policy: policy.name,
    fireAt: new Date(fireAt).toISOString(),
    trigger,
    claimedAt: new Date(open.claimedAt).toISOString(),
  };
  if (previousFire(policy.schedule, policy.timezone, now + 1) !== fireAt)
    return { kind: "superseded", fireAt };
  const graceMs = deps.graceMs ?? DEFAULT_RECOVERY_GRACE_MS;
  if (now - open.claimedAt < graceMs) return { kind: "in-grace", fireAt };
  if (!(await deps.state.takeOver(policy.name, fireAt, graceMs))) return { kind: "taken-elsewhere", fireAt };
  deps.logger.warn(
    facts,
    "a claimed fire was never enqueued (its replica failed or stopped): running it again",
  );
  const result = await deps.fire(policy, fireAt, trigger);
  await deps.state.markDone(policy.name, fireAt);
  return { kind: "recovered", fireAt, result };
}
