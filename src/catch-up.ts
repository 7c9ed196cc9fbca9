import type { ResolvedPolicy } from "./config.js";
import { firesBetween, previousFire } from "./cron.js";
import type { FirePolicy, FireResult } from "./fire.js";
import type { Logger } from "./logger.js";
import type { PolicyStatePort } from "./policy-state.js";

/**
 * Catch-up, run once per policy when a scheduler starts: fires missed while no scheduler ran.
 *
 * - A first-ever start (no `last_fire`) records the most recent past fire and rotates nothing.
 * - Otherwise, when fires exist in (last_fire, now] and the newest of them is at most `catch_up`
 *   old, that newest fire is claimed and its groups rotate once with trigger `catch-up`, however
 *   many fires were missed. A replica that loses the claim does nothing: the fire is handled.
 */
export type CatchUpOutcome =
  | { readonly kind: "first-start"; readonly recorded?: number | undefined }
  | { readonly kind: "up-to-date" }
  | {
      readonly kind: "off" | "too-old" | "claimed-elsewhere";
      readonly missed: number;
      readonly newest: number;
    }
  | { readonly kind: "caught-up"; readonly missed: number; readonly result: FireResult };

export interface CatchUpDeps {
  readonly state: PolicyStatePort;
  readonly fire: FirePolicy;
  readonly logger: Logger;
}

/** Missed fires are counted up to this many (for the log line only). */
const COUNT_LIMIT = 10_000;

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
  if (newest === undefined || newest <= last) return { kind: "up-to-date" };

  const missed = firesBetween(policy.schedule, policy.timezone, last, now, COUNT_LIMIT).length;
  const facts = { missed, newest: new Date(newest).toISOString(), lastFire: new Date(last).toISOString() };
  if (policy.catchUpMs <= 0) {
    log.info(facts, "missed fires; catch-up is off for this policy");
    return { kind: "off", missed, newest };
  }
  if (now - newest > policy.catchUpMs) {
    log.warn({ ...facts, catchUpMs: policy.catchUpMs }, "missed fires are older than catch_up; not rotating");
    return { kind: "too-old", missed, newest };
  }
  if (!(await deps.state.claim(policy.name, newest))) return { kind: "claimed-elsewhere", missed, newest };
  log.info(facts, "catching up missed fires: rotating the policy's groups once");
  const result = await deps.fire(policy, newest, "catch-up");
  return { kind: "caught-up", missed, result };
}
