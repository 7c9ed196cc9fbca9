import type { EventEmitter } from "node:events";
import type { Queue, QueueEvents } from "bullmq";

/**
 * Waits until the job `jobId` of `queue` has finished: resolves with its return value, rejects with
 * its failure reason, or with a timeout error after `timeoutMs` (none when undefined).
 *
 * BullMQ's `job.waitUntilFinished` adds a `closing` listener to the queue per call, so waiting for
 * more than 10 jobs at once prints MaxListenersExceededWarning. This listens only to the job's own
 * events (`completed:<id>`, `failed:<id>`), and checks the job once after listening, so a job that
 * finished before the events were heard is not missed.
 */
export async function waitForJob<T>(
  queue: Queue,
  events: QueueEvents,
  jobId: string,
  timeoutMs: number | undefined,
): Promise<T> {
  await events.waitUntilReady();
  // Per-job event names are emitted by QueueEvents but not in its typed listener map.
  const emitter = events as unknown as EventEmitter;
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const finish = (settle: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      emitter.off(`completed:${jobId}`, onCompleted);
      emitter.off(`failed:${jobId}`, onFailed);
      settle();
    };
    const onCompleted = (args: { returnvalue: unknown }) => finish(() => resolve(args.returnvalue as T));
    const onFailed = (args: { failedReason?: string }) =>
      finish(() => reject(new Error(args.failedReason || `job ${jobId} failed`)));
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(
            () =>
              finish(() => reject(new Error(`job ${jobId} timed out: not finished after ${timeoutMs} ms`))),
            timeoutMs,
          );
    emitter.on(`completed:${jobId}`, onCompleted);
    emitter.on(`failed:${jobId}`, onFailed);
    const check = async () => {
      // State first: a finished job's values are final, so the job read after it is current.
      const state = await queue.getJobState(jobId);
      if (state === "unknown") return finish(() => reject(new Error(`job ${jobId} is not in the queue`)));
      if (state !== "completed" && state !== "failed") return;
      const job = await queue.getJob(jobId);
      if (state === "completed") onCompleted({ returnvalue: job?.returnvalue });
      else onFailed({ failedReason: job?.failedReason });
    };
    check().catch((error: unknown) =>
      finish(() => reject(error instanceof Error ? error : new Error(String(error)))),
    );
  });
}
