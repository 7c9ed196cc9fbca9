import { randomUUID } from "node:crypto";
import type { Job, Queue } from "bullmq";
import type { RedisClient } from "../infra/redis.js";
import type { AccountGate } from "./gate.js";
import { tokenFingerprint } from "./gate.js";
import type { ResolvedConfig } from "../config/config.js";
import { accountContext } from "../config/config.js";
import { toError } from "../core/errors.js";
import type { GraphClient } from "../graph/client.js";
import { isGraphError, isTokenFailure } from "../graph/errors.js";
import type { RotationJobData } from "../core/interfaces.js";
import type { Keys } from "../core/keys.js";
import type { Logger } from "../infra/logger.js";
import type { Metrics } from "../infra/metrics.js";
import { luaScript } from "../infra/scripts.js";
import { enqueueRotations } from "../rotation/queue.js";
import { createGroupLock, type GroupLock } from "../rotation/group-lock.js";

/**
 * The worker's recovery loop, every `intervalMs`, so that an account or a group that failed comes
 * back without an operator and without waiting for its next fire: failing accounts are probed
 * (`probe`), groups left without a link get their rotation re-driven (`redrive`), and
 * `wa_rotator_account_failing` is refreshed from Redis, so every process reports the same.
 */
export interface AccountProbe {
  start(): void;
  stop(): Promise<void>;
  /** One round now (tests). */
  tick(): Promise<void>;
}

export interface AccountProbeOptions {
  readonly redis: RedisClient;
  readonly keys: Keys;
  readonly queue: Queue<RotationJobData>;
  readonly graph: Pick<GraphClient, "getGroup">;
  readonly gate: AccountGate;
  readonly config: () => ResolvedConfig;
  readonly logger: Logger;
  readonly metrics?: Pick<Metrics, "accountFailing">;
  readonly intervalMs: number;
  /** The groups' lock, under which a recovery or retry is re-checked. Default: one on `redis`. */
  readonly lock?: GroupLock;
  /** Bound of one probe call. Default 10 s. */
  readonly probeTimeoutMs?: number;
}

const LEASE = `local t = redis.call("TIME") local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if (tonumber(redis.call("HGET", KEYS[1], "probe_lease")) or 0) > now then return 0 end
redis.call("HSET", KEYS[1], "probe_lease", now + tonumber(ARGV[1])) return 1`;
const LEASE_SCRIPT = luaScript<number>("rotatorProbeLease", 1, LEASE);

/** What the sweep does for one linkless group. */
type Action =
  | { readonly kind: "recover"; readonly replaces: string; readonly basis: RotationJobData | undefined }
  | { readonly kind: "retry" | "promote"; readonly job: Job<RotationJobData>; readonly rotationId: string }
  | { readonly kind: "orphan" };

const actionRotation = (action: Action) =>
  action.kind === "recover" ? action.replaces : action.kind === "orphan" ? "" : action.rotationId;

/** Failures no retry fixes: the group is gone or suspended. */
const GROUP_STOPS = new Set(["GRAPH_GROUP_UNKNOWN", "GRAPH_GROUP_SUSPENDED", "GRAPH_NOT_ELIGIBLE"]);

export function createAccountProbe(options: AccountProbeOptions): AccountProbe {
  const { redis, keys, queue, gate, logger } = options;
  const lock = options.lock ?? createGroupLock(redis, keys);
  const log = logger.child({ component: "account-probe" });
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  /** Linkless groups already reported as having no rotation to re-drive (once per process). */
  const orphans = new Set<string>();

  /**
   * The rotation that left a group without link: the last to change its link at Graph
   * (`graph_owner`), else the one its recorded failure names. Every linkless group counts, with or
   * without a recorded failure (BullMQ may fail a job itself, say stalled too often, or the write of
   * the failure may have failed).
   */
  const rotationOf = async (groupId: string) => {
    const [graphOwner, failedRotation, code, failedAt] = await redis.hmget(
      keys.group(groupId),
      "graph_owner",
      "failed_rotation_id",
      "failure_code",
      "failed_at",
    );
    for (const id of new Set([graphOwner, failedRotation])) {
      if (!id) continue;
      const job = await queue.getJob(id);
      if (!job) continue;
      // A finished rotation cannot be re-driven (a stalled delivery's late DELETE can leave the
      // group linkless after its job completed): a recovery rotation takes its place.
      if (await job.isCompleted()) return { kind: "finished" as const, data: job.data, rotationId: id };
      const recorded = id === failedRotation;
      return {
        kind: "live" as const,
        job,
        rotationId: id,
        code: recorded ? (code ?? undefined) : undefined,
        failedAt: recorded ? Number(failedAt ?? 0) : (job.finishedOn ?? 0),
      };
    }
    return undefined;
  };

  /**
   * Enqueues one rotation that gives a linkless group a link again, when the rotation that left it
   * so has finished (or is gone): as the group's policy says, else as that rotation was. Its job id
   * derives from the rotation it replaces, so repeated sweeps enqueue it once.
   */
  const recover = async (groupId: string, replaces: string, basis: RotationJobData | undefined) => {
    const policy = options.config().policyByGroup.get(groupId);
    const data: RotationJobData | undefined = policy
      ? {
          rotationId: `recover-${replaces}`,
          groupId,
          account: policy.account,
          policy: policy.name,
          channel: policy.channel,
          trigger: "catch-up",
          requestedAt: Date.now(),
        }
      : basis && {
          ...basis,
          rotationId: `recover-${replaces}`,
          trigger: basis.trigger === "manual" ? "manual" : "catch-up",
          requestedAt: Date.now(),
        };
    if (!data || (await queue.getJob(data.rotationId))) return;
    await enqueueRotations(queue, [data]);
    log.error(
      { group: groupId, rotation: data.rotationId, replaces, withoutLink: true },
      `GROUP WITHOUT INVITE LINK: group ${groupId}'s rotation ${replaces} has finished; a recovery rotation is enqueued`,
    );
  };

  /**
   * What the sweep would do for a linkless group now, or undefined for nothing: a recovery rotation
   * (its rotation has finished, or none is known but a policy names the group), a retry of its
   * failed rotation, a promotion of its delayed one (account recovery only), or an orphan report.
   */
  const decide = async (
    groupId: string,
    account: string | undefined,
    failingAccounts: ReadonlySet<string>,
  ): Promise<Action | undefined> => {
    const found = await rotationOf(groupId);
    if (found?.kind === "finished") {
      if (account !== undefined && found.data.account !== account) return undefined;
      return { kind: "recover", replaces: found.rotationId, basis: found.data };
    }
    if (!found) {
      const policy = options.config().policyByGroup.get(groupId);
      if (policy && (account === undefined || policy.account === account)) {
        return { kind: "recover", replaces: groupId, basis: undefined };
      }
      return account === undefined ? { kind: "orphan" } : undefined;
    }
    const { job, rotationId, code, failedAt } = found;
    if (account !== undefined ? job.data.account !== account : failingAccounts.has(job.data.account))
      return undefined;
    const state = await job.getState();
    if (state === "delayed" && account !== undefined) return { kind: "promote", job, rotationId };
    if (state !== "failed") return undefined;
    const recent = Date.now() - failedAt < options.intervalMs;
    if (account === undefined && (recent || GROUP_STOPS.has(code ?? ""))) return undefined;
    return { kind: "retry", job, rotationId };
  };

  /**
   * Re-checks a recovery or a retry under the group's lock before it happens. The without-link index
   * is read once per sweep, and a rotation may publish (and leave the index) between that read and
   * the look at its job: seen completed, it would pass for one that finished without a link. Under
   * the lock no rotation of the group is half-way, so what the index and the job say then holds.
   * A group whose lock is taken has a rotation running: nothing to do this round.
   */
  const underLock = async (
    groupId: string,
    planned: Action,
    account: string | undefined,
    failingAccounts: ReadonlySet<string>,
  ): Promise<Action | undefined> => {
    const owner = `sweep:${randomUUID()}`;
    if (!(await lock.acquire(groupId, owner))) return undefined;
    try {
      if ((await redis.sismember(keys.withoutLinkIndex, groupId)) !== 1) return undefined;
      const now = await decide(groupId, account, failingAccounts);
      if (!now || now.kind !== planned.kind || actionRotation(now) !== actionRotation(planned))
        return undefined;
      if (now.kind === "recover") await recover(groupId, now.replaces, now.basis);
      else if (now.kind === "retry") {
        await now.job.retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true });
      }
      return now;
    } finally {
      await lock.release(groupId, owner);
    }
  };

  /**
   * Rotations of groups without link: for `account` only (recovery), or all not failing (sweep).
   * A rotation that failed for good (past its attempts, or failed by BullMQ itself) is retried at
   * most once per interval, with or without a failure recorded on the group: "at the next fire, or
   * sooner".
   */
  const redrive = async (account: string | undefined, failingAccounts: ReadonlySet<string>) => {
    const groups = await redis.smembers(keys.withoutLinkIndex);
    for (const o of orphans) if (!groups.includes(o)) orphans.delete(o);
    for (const groupId of groups) {
      const planned = await decide(groupId, account, failingAccounts);
      if (!planned) continue;
      if (planned.kind === "orphan") {
        if (!orphans.has(groupId)) {
          orphans.add(groupId);
          log.error(
            { group: groupId, withoutLink: true },
            `GROUP WITHOUT INVITE LINK: group ${groupId} has no rotation left to re-drive; rotate it by hand`,
          );
        }
        continue;
      }
      try {
        const done =
          planned.kind === "promote"
            ? (await planned.job.promote(), planned)
            : await underLock(groupId, planned, account, failingAccounts);
        if (done?.kind !== "promote" && done?.kind !== "retry") continue;
        log.warn(
          { group: groupId, rotation: done.rotationId, account: done.job.data.account },
          "group without link: rotation re-driven",
        );
      } catch (error) {
        // Another process moved the job first.
        log.debug({ group: groupId, err: toError(error) }, "could not re-drive the rotation");
      }
    }
  };

  /** Rotations held before DELETE while the account failed: on their way again at once. */
  const promoteHeld = async (name: string) => {
    let promoted = 0;
    for (const rotationId of await gate.takeHeld(name)) {
      const job = await queue.getJob(rotationId);
      if (!job || (await job.getState()) !== "delayed") continue;
      try {
        await job.promote();
        promoted++;
      } catch (error) {
        // Another process moved the job first; a held job re-checks by itself anyway.
        log.debug({ rotation: rotationId, err: toError(error) }, "could not promote a held rotation");
      }
    }
    if (promoted > 0) log.info({ account: name, promoted }, "account recovered: held rotations resumed");
  };

  /**
   * Probes a failing account read-only (GET the group that failed; one process per interval, by a
   * lease in the account hash); returns whether it still fails. Only a token failure (0, 190, 10,
   * 200–299) keeps it failing; a success or any other Graph answer (the token got past
   * authentication), or a token with a new fingerprint, clears `failing` and re-drives the
   * rotations of its linkless groups at once (delayed → promoted, failed → retried) and those held
   * before DELETE. A timeout, network error, 5xx or throttle is inconclusive: probed next interval.
   */
  const probe = async (name: string): Promise<boolean> => {
    const failing = await gate.failing(name);
    options.metrics?.accountFailing.set({ account: name }, failing ? 1 : 0);
    if (!failing) {
      // Recovered elsewhere (a rotation saw a new token) or just now: release what it held.
      await promoteHeld(name);
      return false;
    }
    const resolved = options.config().accounts.get(name);
    if (!resolved?.token) return true;
    const account = accountContext(resolved);
    if (tokenFingerprint(account.token) !== failing.tokenFingerprint) {
      await gate.recover(name, "the account has a new token");
      await redrive(name, new Set());
      await promoteHeld(name);
      return false;
    }
    if (!failing.probeGroup) return true;
    const leased = await LEASE_SCRIPT.run(redis, [keys.account(name)], [options.intervalMs]);
    if (leased !== 1) return true;
    let reason = "a read-only probe succeeded";
    try {
      await options.graph.getGroup(
        account,
        failing.probeGroup,
        AbortSignal.timeout(options.probeTimeoutMs ?? 10_000),
      );
    } catch (thrown) {
      const error = toError(thrown);
      const fields = { account: name, group: failing.probeGroup, err: { message: error.message } };
      if (isGraphError(error) && isTokenFailure(error)) {
        log.info({ ...fields, code: error.code, graphCode: error.graphCode }, "account still failing");
        return true;
      }
      if (!isGraphError(error) || error.action !== "stop") {
        // A timeout, a network error, a 5xx or a throttle says nothing about the token.
        log.info(fields, "account probe inconclusive; the account stays failing until the next probe");
        return true;
      }
      // Any other answer of Graph (the probe group unknown or suspended, say) came past the token
      // check: the token authenticated.
      reason = `a read-only probe was answered by Graph (${error.code}), so the token authenticated`;
    }
    await gate.recover(name, reason);
    await redrive(name, new Set());
    await promoteHeld(name);
    return false;
  };

  const tick = async () => {
    const failing = new Set<string>();
    for (const name of options.config().accounts.keys()) {
      try {
        if (await probe(name)) failing.add(name);
      } catch (error) {
        failing.add(name);
        log.warn({ account: name, err: toError(error) }, "account probe failed");
      }
    }
    await redrive(undefined, failing).catch((error: unknown) =>
      log.warn({ err: toError(error) }, "sweep of groups without link failed"),
    );
  };

  const loop = () => {
    running = tick().finally(() => {
      running = undefined;
      if (timer !== undefined) timer = setTimeout(loop, options.intervalMs).unref();
    });
  };

  return {
    tick,
    start() {
      if (timer !== undefined) return;
      timer = setTimeout(loop, options.intervalMs).unref();
    },
    async stop() {
      clearTimeout(timer);
      timer = undefined;
      await running;
    },
  };
}
