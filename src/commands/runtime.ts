import { loadConfig, type ResolvedConfig } from "../config/config.js";
import { createLogger, type Logger } from "../infra/logger.js";
import { loadSettings, type Settings } from "../config/settings.js";
import { accountTokens, createScrubber, type Scrubber } from "../infra/redact.js";
import type { CommandIO } from "./command.js";

/** What every long-running or Redis-using command starts from: env, logger, policy file. */
export interface Runtime {
  readonly settings: Settings;
  readonly logger: Logger;
  readonly config: ResolvedConfig;
  /** The process's one scrubber (the logger's too); it knows the account tokens. */
  readonly scrub: Scrubber;
}

/** Parses the environment and the policy file once; both throw ConfigError (exit 2) when invalid. */
export async function loadRuntime(io: CommandIO, options: { logLevel?: string } = {}): Promise<Runtime> {
  const settings = loadSettings(io.env);
  const scrub = createScrubber([], settings.env);
  const logger = createLogger(options.logLevel ?? settings.LOG_LEVEL, undefined, scrub);
  const config = await loadPolicyFile(settings);
  learnTokens(config, scrub, io);
  return { settings, logger, config, scrub };
}

/** Teaches the scrubber and the CLI's last line of defence a (re)loaded policy file's tokens. */
export function learnTokens(config: ResolvedConfig, scrub: Scrubber, io: CommandIO): void {
  const tokens = accountTokens(config);
  scrub.add(tokens);
  for (const token of tokens) io.secrets?.add(token);
}

/** Loads and validates the policy file the settings name (also what a reload calls). */
export function loadPolicyFile(settings: Settings): Promise<ResolvedConfig> {
  return loadConfig(settings.ROTATOR_CONFIG, settings.env, {
    graphApiVersion: settings.GRAPH_API_VERSION,
    cluster: settings.REDIS_CLUSTER_NODES !== undefined,
  });
}
