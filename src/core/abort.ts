/**
 * One attempt's signal: aborts when any source does. Not `AbortSignal.any`: on Node 20 a
 * long-lived source (the worker's shutdown signal) keeps a reference to every signal ever derived
 * from it, which grows by one per attempt; these listeners are removed when the attempt ends.
 */
export function linkSignals(sources: readonly AbortSignal[]): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onAbort = (event: Event) => controller.abort((event.target as AbortSignal).reason);
  for (const source of sources) {
    if (source.aborted) {
      controller.abort(source.reason);
      break;
    }
    source.addEventListener("abort", onAbort, { once: true });
  }
  return {
    signal: controller.signal,
    dispose: () => sources.forEach((source) => source.removeEventListener("abort", onAbort)),
  };
}

/**
 * One stop switch for many concurrent attempts (a worker's forced shutdown). Each attempt takes a
 * signal of its own (`child`) and gives it back when it ends; `abort` aborts every live one. Unlike
 * one shared AbortSignal with a listener per attempt in flight, nothing is added to a shared
 * target, so any concurrency stays below Node's 10-listener warning and nothing outlives an attempt.
 */
export interface AbortFanout {
  readonly aborted: boolean;
  abort(reason: unknown): void;
  child(): { signal: AbortSignal; dispose(): void };
}

export function createAbortFanout(): AbortFanout {
  const live = new Set<AbortController>();
  let reason: { value: unknown } | undefined;
  return {
    get aborted() {
      return reason !== undefined;
    },
    abort(value) {
      if (reason) return;
      reason = { value };
      for (const controller of live) controller.abort(value);
      live.clear();
    },
    child() {
      const controller = new AbortController();
      if (reason) controller.abort(reason.value);
      else live.add(controller);
      return { signal: controller.signal, dispose: () => void live.delete(controller) };
    },
  };
}
