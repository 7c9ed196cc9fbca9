import { QueueEvents, type Job } from "bullmq";
import { checkGroupId } from "../config/checks.js";
import { parseDuration } from "../core/durations.js";
import { UsageError } from "../core/errors.js";
import type { RotationJobData } from "../core/interfaces.js";
import { DEFAULT_CHANNEL, hashTag } from "../core/keys.js";
import { clusterChannelProblem } from "../config/config.js";
import { serializeMessage } from "../publish/message.js";
import { createRotationQueue, enqueueRotations, manualRotationId } from "../rotation/queue.js";
import { connectOneShot, createRedis, onceEvery, projectKeys, redisDeployment } from "../infra/redis.js";
import { parseCommandArgs } from "./args.js";
import type { Command } from "./command.js";
import type { RotationJobResult } from "../rotation/worker.js";
import { loadRuntime } from "./runtime.js";

/**
 * `rotate <group_id>... [--wait] [--timeout <duration>]`: enqueues an immediate rotation (trigger
 * `manual`) of each group. With `--wait`, prints each group's published message as one JSON line
 * once done, and exits 1 if any failed or did not finish in time.
 */
const command: Command = {
  async run(args, io) {
    const { values, positionals } = parse(args);
    const groups = [...new Set(positionals)];
    if (groups.length === 0) throw new UsageError("rotate needs at least one group id");
    const bad = badGroupIds(groups);
    if (bad.length > 0) throw new UsageError(`rotate: ${bad.join("; ")}`);
    const timeoutMs = parseDuration(values.timeout ?? "2m");
    if (timeoutMs === undefined || timeoutMs <= 0)
      throw new UsageError(`--timeout: not a duration: ${values.timeout}`);

    const { settings, logger, config } = await loadRuntime(io, { logLevel: "warn" });
    const rotations: RotationJobData[] = groups.map((groupId) => {
      const policy = config.policyByGroup.get(groupId);
      const account = values.account ?? policy?.account ?? "default";
      if (!config.accounts.has(account)) {
        throw new UsageError(`account ${account} is not in the policy file ${config.file}`);
      }
      return {
        rotationId: manualRotationId(),
        groupId,
        account,
        policy: null,
        channel: values.channel ?? policy?.channel ?? DEFAULT_CHANNEL,
        trigger: "manual",
        requestedAt: Date.now(),
      };
    });

    const deployment = redisDeployment(settings);
    if (deployment.kind === "cluster") {
      const untagged = rotations.find((r) => hashTag(r.channel) === undefined);
      if (untagged) throw new UsageError(clusterChannelProblem(untagged.channel));
    }
    const keys = projectKeys(settings.ROTATOR_PREFIX, deployment);
    const connection = await connectOneShot(deployment, "rotate", logger);
    const queue = createRotationQueue(keys, connection);
    queue.on("error", onceEvery(logger, "rotation queue error"));
    // QueueEvents blocks on its stream: it gets a connection of its own.
    const eventsConnection = values.wait ? createRedis(deployment, "rotate-events", logger) : undefined;
    const events = eventsConnection
      ? new QueueEvents(keys.rotationQueue, { connection: eventsConnection, prefix: keys.prefix })
      : undefined;
    try {
      await events?.waitUntilReady();
      await enqueueRotations(queue, rotations);
      if (!events) {
        for (const r of rotations) io.out(JSON.stringify({ enqueued: r.rotationId, group_id: r.groupId }));
        return 0;
      }
      const results = await Promise.all(
        rotations.map(async (rotation) => {
          const job = (await queue.getJob(rotation.rotationId)) as
            Job<RotationJobData, RotationJobResult> | undefined;
          if (!job) return fail(io, rotation, "the job vanished from the queue");
          try {
            const result = (await job.waitUntilFinished(events, timeoutMs)) as RotationJobResult;
            // A manual rotation of a suspended or deleted group is skipped (no Graph call): no rotation.
            if ("skipped" in result) return fail(io, rotation, `skipped: ${result.reason ?? result.skipped}`);
            io.out(serializeMessage(result));
            return true;
          } catch (error) {
            const text = error instanceof Error ? error.message : String(error);
            const timedOut = /timed out/i.test(text);
            return fail(
              io,
              rotation,
              timedOut
                ? `not done within ${values.timeout ?? "2m"}; rotation ${rotation.rotationId} continues`
                : text,
            );
          }
        }),
      );
      return results.every(Boolean) ? 0 : 1;
    } finally {
      await events?.close();
      await queue.close();
      connection.disconnect();
      eventsConnection?.disconnect();
    }
  },
};
export default command;

function fail(io: { err(line: string): void }, rotation: RotationJobData, reason: string): false {
  const text = reason.startsWith(`group ${rotation.groupId}:`)
    ? reason
    : `group ${rotation.groupId}: ${reason}`;
  io.err(`rotation failed: ${text}`);
  return false;
}

/** The contract's group-id rule (core/group-id.ts), as the policy file checks it, on the command line's. */
function badGroupIds(groups: readonly string[]): string[] {
  return groups.flatMap((id) => {
    const checked = checkGroupId(id);
    return typeof checked === "string" ? [] : [`group id ${JSON.stringify(id)}: ${checked.error}`];
  });
}

function parse(args: string[]) {
  return parseCommandArgs({
    args,
    allowPositionals: true,
    options: {
      wait: { type: "boolean", default: false },
      timeout: { type: "string" },
      account: { type: "string" },
      channel: { type: "string" },
    },
  });
}
