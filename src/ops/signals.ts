import type { Logger } from "../infra/logger.js";

/**
 * Two-stage shutdown: the first SIGTERM/SIGINT starts a graceful stop (stop intake, drain, close)
 * and exits 0 when it ends; a second signal forces the exit at once.
 */
export function handleShutdownSignals(stop: () => Promise<void>, logger: Logger): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, "second signal: exiting now");
        process.exit(130);
      }
      stopping = true;
      logger.info(
        { signal },
        "shutting down: finishing rotations in flight (send the signal again to force)",
      );
      stop().then(
        () => {
          logger.info("shutdown complete");
          resolve(0);
        },
        (error: unknown) => {
          logger.error({ err: error }, "shutdown failed");
          resolve(1);
        },
      );
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}
