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
