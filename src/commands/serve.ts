import { createApp, type AppRoles } from "../app.js";
import type { ResolvedConfig } from "../config/config.js";
import type { Logger } from "../infra/logger.js";
import { createConfigReloader } from "../config/reload.js";
import { handleShutdownSignals } from "../ops/signals.js";
import { parseCommandArgs } from "./args.js";
import type { CommandIO } from "./command.js";
import { learnTokens, loadPolicyFile, loadRuntime } from "./runtime.js";

/**
 * After a complete stop nothing should hold the event loop, but a client stuck reconnecting to a
 * Redis that never came up can: give normal exit half a second, then exit regardless (unref'd, so
 * it never delays an exit that happens by itself). With the app's forced-stop margin this keeps the
 * whole shutdown within ROTATOR_SHUTDOWN_TIMEOUT + 2 s.
 */
function exitSoon(code: number): void {
  setTimeout(() => process.exit(code), 500).unref();
}

/** The options of `start`, `worker` and `scheduler`: none (the environment configures them). */
export const SERVE_OPTIONS = {} as const;

/** Runs the long-lived roles (`start`, `worker`, `scheduler`) until SIGTERM/SIGINT. */
export async function serve(args: string[], io: CommandIO, roles: AppRoles): Promise<number> {
  parseCommandArgs({ args, options: SERVE_OPTIONS });
  const { settings, logger, config, scrub } = await loadRuntime(io);
  const app = createApp({ settings, logger, config, roles });
  // SIGHUP or a changed file: validate the new file first, then make it live.
  const reloader = createConfigReloader({
    file: settings.ROTATOR_CONFIG,
    load: async () => {
      const next = await loadPolicyFile(settings);
      learnTokens(next, scrub, io);
      return next;
    },
    apply: (next) => {
      app.reload(next);
      // A reload that adds an account (or a policy to one) without its token: say so now too.
      warnMissingTokens(next, logger);
    },
    onResult: (result) => app.metrics.countReload(result),
    logger,
  });
  let signalled = false;
  const exit = handleShutdownSignals(() => {
    signalled = true;
    reloader.stop();
    return app.stop();
  }, logger);
  // Before the start line: once it is logged, SIGHUP reloads (until a listener is installed, SIGHUP
  // would end the process) and the file's first stat is taken, so a change after it is seen.
  reloader.start();
  logger.info(
    {
      roles: app.roles,
      config: config.file,
      policies: config.policies.length,
      concurrency: settings.ROTATOR_CONCURRENCY,
    },
    "wa-invite-rotator starting",
  );
  warnMissingTokens(config, logger);
  try {
    // A signal during a start that waits (for Redis, say) ends the wait: shutdown goes on regardless.
    await Promise.race([app.start(), exit]);
  } catch (error) {
    if (!signalled) {
      // A start that fails (a port in use, say) stops what did start, then the process exits 1.
      reloader.stop();
      await app.stop();
      exitSoon(1);
      throw error;
    }
  }
  const code = await exit;
  exitSoon(code);
  return code;
}

/**
 * An account without its token fails every rotation: say so at start and after each applied
 * reload, not at the first rotation.
 */
function warnMissingTokens(config: ResolvedConfig, logger: Logger): void {
  for (const account of config.accounts.values()) {
    if (account.tokenPresent) continue;
    const policies = config.policies.filter((p) => p.account === account.name).map((p) => p.name);
    logger.warn(
      { account: account.name, tokenEnv: account.tokenEnv, policies },
      `account ${account.name} has no token: the environment variable ${account.tokenEnv} is not set; ` +
        (policies.length > 0 ? "its rotations will fail until it is" : "no policy uses it"),
    );
  }
}
