import { createApp, type AppRoles } from "../app.js";
import { createConfigReloader } from "../config-reload.js";
import { handleShutdownSignals } from "../signals.js";
import { parseCommandArgs } from "./args.js";
import type { CommandIO } from "./command.js";
import { loadPolicyFile, loadRuntime } from "./runtime.js";

/** Runs the long-lived roles (`start`, `worker`, `scheduler`) until SIGTERM/SIGINT. */
export async function serve(args: string[], io: CommandIO, roles: AppRoles): Promise<number> {
  parseCommandArgs({ args, options: {} });
  const { settings, logger, config } = await loadRuntime(io);
  const app = createApp({ settings, logger, config, roles });
  // SIGHUP or a changed file: validate the new file first, then make it live.
  const reloader = createConfigReloader({
    file: settings.ROTATOR_CONFIG,
    load: () => loadPolicyFile(settings),
    apply: (next) => app.reload(next),
    logger,
  });
  const exit = handleShutdownSignals(() => (reloader.stop(), app.stop()), logger);
  logger.info(
    {
      roles: Object.entries(roles)
        .filter(([, on]) => on)
        .map(([name]) => name),
      config: config.file,
      policies: config.policies.length,
      concurrency: settings.ROTATOR_CONCURRENCY,
    },
    "wa-invite-rotator starting",
  );
  reloader.start();
  await app.start();
  return exit;
}
