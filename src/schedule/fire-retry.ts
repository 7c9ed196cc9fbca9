import type { ResolvedPolicy } from "../config/config.js";
import { nextFires } from "../config/cron.js";
import { toError } from "../core/errors.js";
import type { FirePolicy, FireTrigger } from "./fire.js";
import type { Clock } from "../core/interfaces.js";
import type { Logger } from "../infra/logger.js";
import type { Metrics } from "../infra/metrics.js";
import type { PolicyStatePort } from "./policy-state.js";

/**
 * Retries of a claimed fire whose attempt failed, by the replica that holds its claim: after
 * `baseMs`, doubling up to `maxMs`, until it is enqueued (then recorded done) or the policy's next
 * fire is due (then given up with an error log: the fire is lost). Each attempt first renews the
 * claim, so other replicas do not take the fire over (catch-up.ts) while it is being retried, and
 * stops when the fire is done, superseded by a newer claim or taken over elsewhere. The fire keeps
 * its time and trigger, so its rotation ids, and its jobs, are the same on every attempt.
 */
export interface FireRetrier {
  /** Retries `fireAt` of the policy until done or due to give up; never rejects. */
  retry(policy: ResolvedPolicy, fireAt: number, trigger: FireTrigger): Promise<void>;
  /** True while a fire of the policy is being retried here. */
  retrying(policy: string): boolean;
  /** Ends every retry at its next pause (the fires stay unfinished for recovery). Final. */
  stop(): void;
}

export interface FireRetryDeps {
  readonly state: PolicyStatePort;
  readonly fire: FirePolicy;
  readonly logger: Logger;
  readonly clock: Clock;
  /** The policy as the live config has it now (undefined: removed, no more retries). */
  readonly policyNamed: (name: string) => ResolvedPolicy | undefined;
  /** First delay. Default 1 s. */
  readonly baseMs?: number | undefined;
  /** Longest delay; keep it under the recovery grace period. Default 30 s. */
  readonly maxMs?: number | undefined;
  /** A fire given up is counted in `wa_rotator_missed_fires_total{reason="failed"}`. */
  readonly metrics?: Pick<Metrics, "missedFires"> | undefined;
}

export function createFireRetrier(deps: FireRetryDeps): FireRetrier {
  const baseMs = deps.baseMs ?? 1_000;
  const maxMs = deps.maxMs ?? 30_000;
  const active = new Map<string, number>();
  const pauses = new Set<() => void>();
  let stopped = false;

  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        pauses.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      pauses.add(wake);
    });

  const run = async (policy: ResolvedPolicy, fireAt: number, trigger: FireTrigger) => {
    const facts = { policy: policy.name, fireAt: new Date(fireAt).toISOString(), trigger };
    const log = deps.logger;
    const deadline = nextFires(policy.schedule, policy.timezone, fireAt, 1)[0] ?? Infinity;
    for (let attempt = 2; ; attempt++) {
      const delay = Math.min(baseMs * 2 ** (attempt - 2), maxMs);
      if (deps.clock.now() + delay >= deadline) {
        log.error(
          { ...facts, attempts: attempt - 1 },
          "FIRE LOST: it kept failing until the policy's next fire was due; its groups were not rotated for it",
        );
        deps.metrics?.missedFires.inc({ policy: policy.name, reason: "failed" });
        return;
      }
      await pause(delay);
      if (stopped) {
        log.warn(facts, "scheduler stopping with a failed fire; another replica or the next start runs it");
        return;
      }
      const current = deps.policyNamed(policy.name); // its groups as they are now
      if (!current) return log.info(facts, "policy removed; its failed fire is not retried");
      try {
        if (!(await deps.state.renew(policy.name, fireAt))) {
          log.info(facts, "failed fire done, superseded or taken over elsewhere; no more retries");
          return;
        }
        await deps.fire(current, fireAt, trigger);
        await deps.state.markDone(policy.name, fireAt);
        log.info({ ...facts, attempts: attempt }, "failed fire enqueued on retry");
        return;
      } catch (error) {
        log.warn({ ...facts, attempt, err: toError(error) }, "fire failed again; retrying");
      }
    }
  };

  return {
    async retry(policy, fireAt, trigger) {
      if (stopped) return;
      active.set(policy.name, (active.get(policy.name) ?? 0) + 1);
      try {
        await run(policy, fireAt, trigger);
      } catch (error) {
        deps.logger.error({ policy: policy.name, err: toError(error) }, "retrying a failed fire failed");
      } finally {
        const left = (active.get(policy.name) ?? 1) - 1;
        if (left > 0) active.set(policy.name, left);
        else active.delete(policy.name);
      }
    },
    retrying: (policy) => active.has(policy),
    stop() {
      stopped = true;
      for (const wake of [...pauses]) wake();
    },
  };
}
