import type { ResolvedConfig } from "../config/config.js";
import { unsignableLinks } from "../config/links.js";
import { createConfigReloader } from "../config/reload.js";
import type { Settings } from "../config/settings.js";
import { ConfigError, toError } from "../core/errors.js";
import { createGateway } from "../gateway/gateway.js";
import { webhookRoutes } from "../gateway/webhook-receiver.js";
import { handleShutdownSignals } from "../ops/signals.js";
import { parseCommandArgs } from "./args.js";
import type { Command } from "./command.js";
import { loadPolicyFile, loadRuntime } from "./runtime.js";

const OPTIONS = {} as const;

/**
 * `gateway`: the public side (stable join URLs, probes, metrics) until SIGTERM/SIGINT. It needs
 * Redis and the policy file's `links:`, never a Graph token. SIGHUP (or a changed file) reloads
 * the policy file like the other roles: a valid one's links are served from then on. A signed link
 * without ROTATOR_LINK_SECRET is a configuration error: exit 2 at start, a rejected reload.
 */
const command: Command = {
  options: OPTIONS,
  async run(args, io) {
    parseCommandArgs({ args, options: OPTIONS });
    const { settings, logger, config } = await loadRuntime(io);
    servable(config, settings);
    if (config.links.length === 0)
      logger.warn({ config: config.file }, "the policy file has no links: every /join answers 404");
    const gateway = createGateway({ settings, config, logger, extraRoutes: webhookRoutes });
    // SIGHUP or a changed file, as for the other roles: validated first, then its links are live.
    const reloader = createConfigReloader({
      file: settings.ROTATOR_CONFIG,
      load: async () => servable(await loadPolicyFile(settings), settings),
      apply: (next) => {
        gateway
          .reload(next)
          .catch((error: unknown) => logger.error({ err: toError(error) }, "gateway reload failed"));
      },
      onResult: (result) => gateway.context.metrics.countReload(result),
      logger,
    });
    const exit = handleShutdownSignals(() => {
      reloader.stop();
      return gateway.stop();
    }, logger);
    reloader.start();
    try {
      await Promise.race([gateway.start(), exit]);
    } catch (error) {
      reloader.stop();
      await gateway.stop();
      setTimeout(() => process.exit(1), 500).unref();
      throw error;
    }
    const code = await exit;
    setTimeout(() => process.exit(code), 500).unref();
    return code;
  },
};
export default command;

/** The policy file, when the gateway can serve every link of it: a signed link needs ROTATOR_LINK_SECRET. */
function servable(config: ResolvedConfig, settings: Settings): ResolvedConfig {
  const issues = unsignableLinks(config.links, settings.ROTATOR_LINK_SECRET);
  if (issues.length > 0) throw new ConfigError(config.file, issues);
  return config;
}
