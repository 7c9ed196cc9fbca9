import { createGateway } from "../gateway/gateway.js";
import { webhookRoutes } from "../gateway/webhook-receiver.js";
import { handleShutdownSignals } from "../ops/signals.js";
import { parseCommandArgs } from "./args.js";
import type { Command } from "./command.js";
import { loadRuntime } from "./runtime.js";

/**
 * `gateway`: the public side (stable join URLs, probes, metrics) until SIGTERM/SIGINT. It needs
 * Redis and the policy file's `links:`, never a Graph token.
 */
const command: Command = {
  async run(args, io) {
    parseCommandArgs({ args, options: {} });
    const { settings, logger, config } = await loadRuntime(io);
    if (config.links.length === 0)
      logger.warn({ config: config.file }, "the policy file has no links: every /join answers 404");
    const gateway = createGateway({ settings, config, logger, extraRoutes: webhookRoutes });
    const exit = handleShutdownSignals(() => gateway.stop(), logger);
    try {
      await Promise.race([gateway.start(), exit]);
    } catch (error) {
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
