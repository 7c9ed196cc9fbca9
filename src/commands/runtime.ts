import { loadConfig, type ResolvedConfig } from "../config/config.js";
import { createLogger, type Logger } from "../infra/logger.js";
import { loadSettings, type Settings } from "../config/settings.js";
import { accountTokens } from "../infra/redact.js";
import type { CommandIO } from "./command.js";

/** What every long-running or Redis-using command starts from: env, logger, policy file. */
export interface Runtime {
  readonly settings: Settings;
  readonly logger: Logger;
  readonly config: ResolvedConfig;
}

/** Parses the environment and the policy file once; both throw ConfigError (exit 2) when invalid. */
export async function loadRuntime(io: CommandIO, options: { logLevel?: string } = {}): Promise<Runtime> {
  const settings = loadSettings(io.env);
  const logger = createLogger(options.logLevel ?? settings.LOG_LEVEL);
  const config = await loadPolicyFile(settings);
  for (const token of accountTokens(config)) io.secrets?.add(token);
  return { settings, logger, config };
}

/** Loads and validates the policy file the settings name (also what a reload calls). */
export function loadPolicyFile(settings: Settings): Promise<ResolvedConfig> {
  return loadConfig(settings.ROTATOR_CONFIG, settings.env, { graphApiVersion: settings.GRAPH_API_VERSION });
}
