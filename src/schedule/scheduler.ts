import { catchUp, DEFAULT_RECOVERY_GRACE_MS, recoverUnfinished } from "./catch-up.js";
import type { ResolvedConfig, ResolvedPolicy } from "../config/config.js";
import { nextFires, previousFire } from "../config/cron.js";
import { toError } from "../core/errors.js";
import type { FirePolicy, FireResult } from "./fire.js";
import { createFireRetrier } from "./fire-retry.js";
import { systemClock, type Clock } from "../core/interfaces.js";
import type { Logger } from "../infra/logger.js";
import type { Metrics } from "../infra/metrics.js";
import type { PolicyStatePort } from "./policy-state.js";

/**
 * The scheduler: one timer per policy (never per group) that sleeps until the policy's next fire,
 * claims it in Redis (only the replica that wins enqueues), fires, and re-arms. Sleeps are cut
 * into steps of at most `maxSleepMs` and re-checked against the clock, so a drifting or suspended
 * clock cannot make a fire much late. On start, each policy first catches up (catch-up.ts).
 *
 * A claimed fire that fails is not lost: this replica retries it with backoff (1 s, 2 s, 4 s, ...
 * up to `retryMaxMs`) until it succeeds or the policy's next fire is due (fire-retry.ts).
 * A fire claimed and never done (its replica crashed or stopped) is run again by any replica
 * once its claim is `graceMs` old (checked at start and every `recoverEveryMs`): see catch-up.ts.
 */
export interface Scheduler {
  /** Catches up, then arms every policy. Idempotent. */
  start(): Promise<void>;
  /** Clears the timers and waits for fires in progress (unless `force`). Idempotent. */
  stop(force?: boolean): Promise<void>;
  /**
   * Applies the live config: removed policies stop, added ones arm for their next fire, changed
   * schedules or zones re-arm. Group lists are read at each fire, so they need nothing here.
   */
  reload(): void;
  /** The next fire of each armed policy, epoch ms. */
  upcoming(): ReadonlyMap<string, number>;
  /** Claims `fireAt` of the policy and, when won, fires it; undefined when another replica had it. */
  handle(policy: ResolvedPolicy, fireAt: number): Promise<FireResult | undefined>;
}

export interface SchedulerDeps {
  readonly config: () => ResolvedConfig;
  readonly state: PolicyStatePort;
  readonly fire: FirePolicy;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Longest single sleep before the clock is checked again. Default 30 s. */
  readonly maxSleepMs?: number;
  /** First retry delay of a failed fire, doubled each time. Default 1 s. */
  readonly retryBaseMs?: number;
  /** Longest retry delay; keep it under `graceMs`. Default 30 s. */
  readonly retryMaxMs?: number;
  /** A fire claimed and not done for this long is run again by any replica. Default 60 s. */
  readonly graceMs?: number;
  /** How often unfinished fires are looked for. Default 30 s. */
  readonly recoverEveryMs?: number;
  /** Counts fires that will not run: missed during downtime, or failed until the next fire. */
  readonly metrics?: Pick<Metrics, "missedFires"> | undefined;
}

interface Armed {
  readonly policy: string;
  /** Schedule and zone it was armed with: a change re-arms. */
  readonly when: string;
  next: number;
  timer?: ReturnType<typeof setTimeout> | undefined;
}

export function createScheduler(deps: SchedulerDeps): Scheduler {
  const clock = deps.clock ?? systemClock;
  const maxSleepMs = deps.maxSleepMs ?? 30_000;
  const log = deps.logger.child({ service: "scheduler" });
  const armed = new Map<string, Armed>();
  const graceMs = deps.graceMs ?? DEFAULT_RECOVERY_GRACE_MS;
  const recoverEveryMs = deps.recoverEveryMs ?? 30_000;
  const inFlight = new Set<Promise<unknown>>();
  let running = false;
  let starting: Promise<void> | undefined;
  let recoverTimer: ReturnType<typeof setTimeout> | undefined;

  const whenOf = (p: ResolvedPolicy) => `${p.schedule}\u0000${p.timezone}`;
  const policyNamed = (name: string) => deps.config().policies.find((p) => p.name === name);
  const retrier = createFireRetrier({
    state: deps.state,
    fire: deps.fire,
    logger: log,
    clock,
    policyNamed,
    baseMs: deps.retryBaseMs,
    maxMs: deps.retryMaxMs,
    metrics: deps.metrics,
  });

  const track = <T>(promise: Promise<T>): Promise<T> => {
    inFlight.add(promise);
    const done = () => inFlight.delete(promise);
    promise.then(done, done);
    return promise;
  };

  /** Runs a claimed fire; a failure starts the background retries and is rethrown for the log. */
  const fireClaimed: FirePolicy = async (policy, fireAt, trigger) => {
    try {
      return await deps.fire(policy, fireAt, trigger);
    } catch (error) {
      void track(retrier.retry(policy, fireAt, trigger)); // nothing once stopped
      throw error;
    }
  };

  const handle = async (policy: ResolvedPolicy, fireAt: number): Promise<FireResult | undefined> => {
    if (!(await deps.state.claim(policy.name, fireAt, "schedule"))) {
      log.debug(
        { policy: policy.name, fireAt: new Date(fireAt).toISOString() },
        "fire claimed by another replica",
      );
      return undefined;
    }
    const result = await fireClaimed(policy, fireAt, "schedule");
    await deps.state.markDone(policy.name, fireAt);
    return result;
  };

  const recoveryDeps = { state: deps.state, fire: fireClaimed, logger: log, graceMs, metrics: deps.metrics };

  const recover = () => {
    recoverTimer = undefined;
    if (!running) return;
    const now = clock.now();
    const checks = deps
      .config()
      .policies.map((policy) =>
        retrier.retrying(policy.name)
          ? undefined
          : recoverUnfinished(policy, now, recoveryDeps).catch((error: unknown) =>
              log.error({ policy: policy.name, err: toError(error) }, "recovering an unfinished fire failed"),
            ),
      );
    void track(
      Promise.all(checks).finally(() => {
        if (running) recoverTimer = setTimeout(recover, recoverEveryMs);
      }),
    );
  };

  const arm = (policy: ResolvedPolicy, after: number) => {
    const now = clock.now();
    let next = nextFires(policy.schedule, policy.timezone, after, 1)[0];
    if (next !== undefined && next <= now - maxSleepMs) {
      // Fell behind (a slow fire, a suspended process): take only the newest due fire.
      next = previousFire(policy.schedule, policy.timezone, now + 1) ?? next;
    }
    if (next === undefined) {
      log.warn({ policy: policy.name }, "the schedule has no next fire; the policy is idle");
      armed.delete(policy.name);
      return;
    }
    const entry: Armed = { policy: policy.name, when: whenOf(policy), next };
    armed.set(policy.name, entry);
    sleep(entry);
  };

  const sleep = (entry: Armed) => {
    const wait = Math.min(Math.max(entry.next - clock.now(), 0), maxSleepMs);
    entry.timer = setTimeout(() => wake(entry), wait);
  };

  const wake = (entry: Armed) => {
    entry.timer = undefined;
    if (!running || armed.get(entry.policy) !== entry) return;
    if (clock.now() < entry.next) return sleep(entry);
    const policy = policyNamed(entry.policy);
    if (!policy) return void armed.delete(entry.policy);
    void track(
      handle(policy, entry.next)
        .catch((error: unknown) =>
          log.error(
            { policy: policy.name, fireAt: new Date(entry.next).toISOString(), err: toError(error) },
            "fire failed; it is retried (or recovered once its claim is stale)",
          ),
        )
        .finally(() => {
          if (running && armed.get(entry.policy) === entry) {
            const current = policyNamed(entry.policy);
            if (current) arm(current, entry.next);
            else armed.delete(entry.policy);
          }
        }),
    );
  };

  const disarm = (name: string) => {
    const entry = armed.get(name);
    if (entry?.timer) clearTimeout(entry.timer);
    armed.delete(name);
  };

  const reload = () => {
    if (!running) return;
    const policies = new Map(deps.config().policies.map((p) => [p.name, p]));
    const now = clock.now();
    for (const [name, entry] of [...armed]) {
      const policy = policies.get(name);
      if (!policy) {
        disarm(name);
        log.info({ policy: name }, "policy removed; its fires stop");
      } else if (entry.when !== whenOf(policy)) {
        disarm(name);
        arm(policy, now);
        const next = armed.get(name)?.next;
        log.info(
          { policy: name, next: next === undefined ? null : new Date(next).toISOString() },
          "policy rescheduled",
        );
      }
    }
    for (const policy of policies.values()) {
      if (armed.has(policy.name)) continue;
      arm(policy, now);
      log.info({ policy: policy.name }, "policy added");
    }
  };

  return {
    start() {
      starting ??= (async () => {
        running = true;
        const now = clock.now();
        const outcomes = deps
          .config()
          .policies.map((policy) =>
            track(
              catchUp(policy, now, recoveryDeps).catch((error: unknown) =>
                log.error(
                  { policy: policy.name, err: toError(error) },
                  "catch-up failed; a claimed fire is retried (or recovered once its claim is stale)",
                ),
              ),
            ),
          );
        await Promise.all(outcomes);
        if (!running) return;
        for (const policy of deps.config().policies) {
          disarm(policy.name); // a reload during catch-up may have armed it already
          arm(policy, now);
        }
        recoverTimer = setTimeout(recover, recoverEveryMs);
        log.info(
          {
            policies: [...armed.values()].map((a) => ({
              policy: a.policy,
              next: new Date(a.next).toISOString(),
            })),
          },
          "scheduler armed",
        );
      })();
      return starting;
    },
    async stop(force = false) {
      running = false;
      if (recoverTimer) clearTimeout(recoverTimer);
      recoverTimer = undefined;
      retrier.stop();
      for (const name of [...armed.keys()]) disarm(name);
      if (!force) await Promise.all([...inFlight]);
    },
    reload,
    upcoming: () => new Map([...armed].map(([name, entry]) => [name, entry.next])),
    handle,
  };
}
