import { QueueEvents, type Job, type Queue } from "bullmq";
import { checkGroupId } from "../config/checks.js";
import { parseDuration } from "../core/durations.js";
import { UsageError } from "../core/errors.js";
import type { RotationJobData } from "../core/interfaces.js";
import { channelKeys, DEFAULT_CHANNEL, hashTag } from "../core/keys.js";
import { clusterChannelProblem } from "../config/config.js";
import { createRotationQueue, enqueueRotations, manualRotationId } from "../rotation/queue.js";
import { waitForJob } from "../rotation/wait.js";
import type { Logger } from "../infra/logger.js";
import {
  connectOneShot,
  createRedis,
  onceEvery,
  projectKeys,
  redisDeployment,
  type RedisClient,
} from "../infra/redis.js";
import { parseCommandArgs } from "./args.js";
import type { Command, CommandIO } from "./command.js";
import type { RotatedResult, RotationJobResult } from "../rotation/worker.js";
import { loadRuntime } from "./runtime.js";

const OPTIONS = {
  wait: { type: "boolean", default: false },
  timeout: { type: "string" },
  account: { type: "string" },
  channel: { type: "string" },
} as const;

/**
 * `rotate <group_id>... [--wait] [--timeout <duration>]`: enqueues an immediate rotation (trigger
 * `manual`) of each group. With `--wait`, prints each group's published message as one JSON line
 * once done, and exits 1 if any failed or did not finish in time.
 */
const command: Command = {
  options: OPTIONS,
  async run(args, io) {
    const { values, positionals } = parse(args);
    const groups = [...new Set(positionals)];
    if (groups.length === 0) throw new UsageError("rotate needs at least one group id");
    const bad = badGroupIds(groups);
    if (bad.length > 0) throw new UsageError(`rotate: ${bad.join("; ")}`);
    const timeoutText = values.timeout ?? "2m";
    const timeoutMs = parseDuration(timeoutText);
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
    // Without a listener BullMQ prints each error event's stack on stderr.
    events?.on("error", onceEvery(logger, "rotation events error"));
    try {
      await events?.waitUntilReady();
      await enqueueRotations(queue, rotations);
      if (!events) {
        for (const r of rotations) io.out(JSON.stringify({ enqueued: r.rotationId, group_id: r.groupId }));
        return 0;
      }
      await warnWithoutWorkers(queue, keys.prefix, timeoutText, io, logger);
      const progress = createProgress(io, rotations.length);
      const results = await Promise.all(
        rotations.map(async (rotation) => {
          const ok = await waitForRotation(rotation);
          progress.done(ok);
          return ok;
        }),
      );
      progress.end();
      return results.every(Boolean) ? 0 : 1;
    } finally {
      await events?.close();
      await queue.close();
      connection.disconnect();
      eventsConnection?.disconnect();
    }

    async function waitForRotation(rotation: RotationJobData): Promise<boolean> {
      const job = (await queue.getJob(rotation.rotationId)) as
        Job<RotationJobData, RotationJobResult> | undefined;
      if (!job) return fail(io, rotation, "the job vanished from the queue");
      try {
        // Not job.waitUntilFinished: it adds a listener to the queue per job (a warning past 10).
        const result = await waitForJob<RotationJobResult>(queue, events!, job.id!, timeoutMs);
        // A manual rotation of a suspended or deleted group is skipped (no Graph call): no rotation.
        if ("skipped" in result) return fail(io, rotation, `skipped: ${result.reason ?? result.skipped}`);
        // The job keeps only a masked link: the whole message is read from the channel.
        const message = await readPublished(connection, result);
        if (message === undefined) {
          return fail(io, rotation, `published, but its message is no longer in ${result.channel}:stream`);
        }
        io.out(message);
        return true;
      } catch (error) {
        const text = error instanceof Error ? error.message : String(error);
        const timedOut = /timed out/i.test(text);
        return fail(
          io,
          rotation,
          timedOut ? `not done within ${timeoutText}; rotation ${rotation.rotationId} continues` : text,
        );
      }
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
    options: OPTIONS,
  });
}

/**
 * Says at once when no worker consumes the queue (BullMQ lists them from CLIENT LIST), rather than
 * leave `--wait` silent until its timeout. A Redis that refuses CLIENT LIST (some managed ones)
 * leaves the question open: nothing is said.
 */
async function warnWithoutWorkers(
  queue: Queue,
  prefix: string,
  timeout: string,
  io: CommandIO,
  logger: Logger,
): Promise<void> {
  let workers: number;
  try {
    workers = (await queue.getWorkers()).length;
  } catch (error) {
    logger.debug({ err: error }, "could not list the queue's workers");
    return;
  }
  if (workers > 0) return;
  io.err(
    `warning: no worker is consuming the rotations queue (prefix ${prefix}): the rotations wait ` +
      `until \`wa-invite-rotator worker\` or \`start\` runs with this REDIS_URL and ROTATOR_PREFIX; ` +
      `waiting up to ${timeout}`,
  );
}

/** `3/10 rotated` on a terminal, rewritten in place as rotations finish; nothing elsewhere. */
function createProgress(io: CommandIO, total: number): { done(ok: boolean): void; end(): void } {
  let rotated = 0;
  let failed = 0;
  const show = () => io.progress?.(`${rotated}/${total} rotated${failed > 0 ? `, ${failed} failed` : ""}`);
  show();
  return {
    done(ok) {
      if (ok) rotated++;
      else failed++;
      show();
    },
    end: () => io.progress?.(""),
  };
}

/**
 * The published message a finished job names, as stored: the group's newest (`C:latest`) when it
 * is still that one, else found in `C:stream` (a newer rotation published meanwhile).
 */
async function readPublished(redis: RedisClient, result: RotatedResult): Promise<string | undefined> {
  const keys = channelKeys(result.channel);
  const matches = (raw: string | null | undefined): raw is string => {
    if (!raw) return false;
    try {
      return (JSON.parse(raw) as { rotation_id?: unknown }).rotation_id === result.published_rotation_id;
    } catch {
      return false;
    }
  };
  const latest = await redis.hget(keys.latest, result.group_id);
  if (matches(latest)) return latest;
  let end = "+";
  for (let page = 0; page < STREAM_PAGES; page++) {
    const entries = await redis.xrevrange(keys.stream, end, "-", "COUNT", STREAM_PAGE);
    for (const [, fields] of entries) {
      const raw = fields[fields.indexOf("message") + 1];
      if (matches(raw)) return raw;
    }
    if (entries.length < STREAM_PAGE) return undefined;
    end = `(${entries.at(-1)![0]}`;
  }
  return undefined;
}

const STREAM_PAGE = 500;
const STREAM_PAGES = 20;
