import { createHash } from "node:crypto";
import type { Queue } from "bullmq";
import type { ResolvedConfig, ResolvedPolicy } from "../config/config.js";
import type { Clock, RotationJobData } from "../core/interfaces.js";
import type { Logger } from "../infra/logger.js";
import { enqueueRotations } from "../rotation/queue.js";
import type { AppliedEvent } from "./state.js";

/**
 * The `rotate_after_joins: N` policy option: once N people joined a group through its current link,
 * one rotation (trigger `joins`) is enqueued. Its id comes from the group and the rotation whose
 * link the joins count, so every further join through that link (while the rotation runs, or a
 * replayed webhook) enqueues the same id, which BullMQ keeps once. The new link's rotation id is
 * another, and its count starts at 0 (`state.ts`).
 */
export interface JoinsTriggerDeps {
  readonly queue: Queue<RotationJobData>;
  /** The live config. */
  readonly config: () => ResolvedConfig;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Called with each rotation enqueued (BullMQ may still find it a duplicate), for metrics. */
  readonly onEnqueued?: (policy: string) => void;
}

export type OnJoined = (groupId: string, applied: AppliedEvent) => Promise<void>;

export function createJoinsTrigger(deps: JoinsTriggerDeps): OnJoined {
  return async (groupId, applied) => {
    const policy = policyOf(deps.config(), groupId, applied.lastPolicy);
    const limit = policy?.rotateAfterJoins;
    if (!policy || limit === undefined || applied.joins < limit) return;
    const rotationId = joinsRotationId(groupId, applied.joinsRotation);
    await enqueueRotations(deps.queue, [
      {
        rotationId,
        groupId,
        account: policy.account,
        policy: policy.name,
        channel: policy.channel,
        trigger: "joins",
        requestedAt: deps.clock.now(),
      },
    ]);
    deps.onEnqueued?.(policy.name);
    deps.logger.info(
      { group: groupId, policy: policy.name, rotation: rotationId, joins: applied.joins, limit },
      "enough joins through the current link: rotation enqueued",
    );
  };
}

/** The policy a group belongs to: the one listing it, else the `groups: all` policy that last rotated it. */
export function policyOf(
  config: ResolvedConfig,
  groupId: string,
  lastPolicy: string,
): ResolvedPolicy | undefined {
  const listed = config.policyByGroup.get(groupId);
  if (listed) return listed;
  return config.policies.find((p) => p.groups === "all" && p.name === lastPolicy);
}

/** The rotation id of a group's joins rotation: one per link (per rotation that created it). */
export function joinsRotationId(groupId: string, linkRotationId: string): string {
  const digest = createHash("sha256").update(`${groupId}\u0000${linkRotationId}`).digest("base64url");
  return `j-${digest.slice(0, 24)}`;
}
