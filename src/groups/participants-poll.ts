import type { RedisClient as Redis } from "../infra/redis.js";
import type { ResolvedConfig } from "../config/config.js";
import type { PoolMember } from "../config/links.js";
import { toError } from "../core/errors.js";
import type { AccountContext, Step } from "../core/interfaces.js";
import type { Keys } from "../core/keys.js";
import type { GraphClient } from "../graph/client.js";
import { GraphError } from "../graph/errors.js";
import type { Logger } from "../infra/logger.js";
import { readPoolMembers } from "./pools.js";

/**
 * The participant poll (a link's `participants_poll`): each pool group's `total_participant_count`
 * read from Graph into `keys.groupParticipants`, where the gateway reads it; an absolute count, so
 * it also corrects joins and leaves the webhooks missed. Run by every worker process (the workers
 * hold the tokens and the gate; schedulers may be none or several), shared by a claim per group
 * (`SET NX PX interval`); every read passes the account gate first, so the poll takes its place in
 * the number's line and never spends more than its learned rate (a wait shortens the claim).
 */
export interface ParticipantsPoll {
  start(): void;
  /** Stops the ticks and waits for reads in flight. Idempotent. */
  stop(): Promise<void>;
  /** One pass now (tests): claims due groups and reads them. */
  tick(): Promise<void>;
}

export type PollOutcome = "stored" | "waited" | "throttled" | "failed";

export interface ParticipantsPollOptions {
  readonly redis: Redis;
  readonly keys: Keys;
  readonly graph: Pick<GraphClient, "getParticipantCount">;
  readonly config: () => ResolvedConfig;
  readonly resolveAccount: (name: string) => AccountContext;
  /** The account gate's admission: ms to wait, or undefined to call now. */
  readonly beforeGraphCall: (
    account: AccountContext,
    step: Step,
    groupId: string,
  ) => Promise<number | undefined>;
  /** The account gate's record of a throttle answer: ms to wait. */
  readonly throttled: (account: AccountContext, error: GraphError) => Promise<number>;
  readonly logger: Logger;
  readonly onPolled?: (outcome: PollOutcome) => void;
  /** How often due groups are looked for. Default 1 s. */
  readonly tickMs?: number;
  /** Reads in flight per process. Default 4. */
  readonly concurrency?: number;
}

/** The gate's line ticket of a poll read: a space never occurs in a group id, so no rotation shares it. */
const ticketOf = (groupId: string) => `participants ${groupId}`;

export function createParticipantsPoll(options: ParticipantsPollOptions): ParticipantsPoll {
  const { redis, keys } = options;
  const log = options.logger.child({ component: "participants-poll" });
  const tickMs = options.tickMs ?? 1_000;
  const concurrency = options.concurrency ?? 4;
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopping: Promise<void> | undefined;

  /** Every group a link polls, with the shortest interval of the links it is in. */
  const dueGroups = async (config: ResolvedConfig) => {
    const groups = new Map<string, { member: PoolMember; everyMs: number; account: string | undefined }>();
    for (const link of config.links) {
      if (link.participantsPollMs <= 0) continue;
      const policyAccount = link.policy && config.policies.find((p) => p.name === link.policy)?.account;
      for (const member of await readPoolMembers(redis, keys, link)) {
        const known = groups.get(member.groupId);
        const account =
          config.policyByGroup.get(member.groupId)?.account ??
          policyAccount ??
          (config.accounts.has("default") ? "default" : undefined);
        const everyMs = Math.min(known?.everyMs ?? Infinity, link.participantsPollMs);
        groups.set(member.groupId, { member, everyMs, account });
      }
    }
    return [...groups.values()];
  };

  const read = async (groupId: string, accountName: string | undefined): Promise<PollOutcome> => {
    const claim = keys.participantsPoll(groupId);
    if (accountName === undefined)
      throw new Error("the group is in no policy and there is no default account");
    const account = options.resolveAccount(accountName);
    const wait = await options.beforeGraphCall(account, "create", ticketOf(groupId));
    if (wait !== undefined && wait > 0) {
      await redis.pexpire(claim, Math.max(1, Math.ceil(wait)));
      return "waited";
    }
    try {
      const count = await options.graph.getParticipantCount(account, groupId, controller.signal);
      await redis.hset(keys.groupParticipants, groupId, String(count));
      return "stored";
    } catch (error) {
      if (controller.signal.aborted) throw error;
      if (error instanceof GraphError && error.action === "throttle") {
        const ms = await options.throttled(account, error);
        await redis.pexpire(claim, Math.max(1, Math.ceil(ms)));
        return "throttled";
      }
      throw error;
    }
  };

  const pass = async () => {
    const groups = await dueGroups(options.config());
    if (groups.length === 0) return;
    const pipeline = redis.pipeline();
    for (const g of groups) pipeline.set(keys.participantsPoll(g.member.groupId), "1", "PX", g.everyMs, "NX");
    const replies = (await pipeline.exec()) ?? [];
    const claimed = groups.filter((_, i) => replies[i]?.[1] === "OK");
    let next = 0;
    const lane = async () => {
      while (next < claimed.length && !controller.signal.aborted) {
        const { member, account } = claimed[next++]!;
        let outcome: PollOutcome;
        try {
          outcome = await read(member.groupId, account);
        } catch (error) {
          if (controller.signal.aborted) return;
          const err = toError(error);
          const code = (err as { code?: unknown }).code;
          log.warn(
            { groupId: member.groupId, account, code, err: { message: err.message } },
            "participant count not read",
          );
          outcome = "failed";
        }
        options.onPolled?.(outcome);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, claimed.length) }, lane));
  };

  const tick = () =>
    (running ??= pass()
      .catch((error: unknown) =>
        log.warn({ err: { message: toError(error).message } }, "participant poll failed"),
      )
      .finally(() => {
        running = undefined;
      }));

  return {
    start() {
      if (timer || stopping) return;
      timer = setInterval(() => void tick(), tickMs);
      timer.unref();
    },
    stop: () =>
      (stopping ??= (async () => {
        if (timer) clearInterval(timer);
        timer = undefined;
        controller.abort(new Error("participant poll stopped"));
        await running;
      })()),
    tick,
  };
}
