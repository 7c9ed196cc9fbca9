import { watchFile, unwatchFile, type Stats } from "node:fs";
import type { ResolvedConfig } from "./config.js";
import { ConfigError, toError } from "../core/errors.js";
import type { Logger } from "../infra/logger.js";
import type { ReloadResult } from "../infra/metrics.js";

/**
 * Reloads the policy file on SIGHUP and when the file changes. The new file is validated first:
 * a valid one is applied at once (`apply` swaps the live config and re-arms the scheduler); an
 * invalid one is rejected with a log line naming the fault, and the running policies stay.
 *
 * The file is watched by polling its stat (fs.watchFile): that survives editors that replace the
 * file by rename and volumes where inotify does not reach (Kubernetes ConfigMaps).
 */
export interface ConfigReloader {
  start(): void;
  stop(): void;
  /** Loads, validates and applies the file now. Resolves true when the new config was applied. */
  reload(reason: string): Promise<boolean>;
}

export interface ConfigReloaderOptions {
  readonly file: string;
  /** Loads and validates the file; throws ConfigError when invalid. */
  readonly load: () => Promise<ResolvedConfig>;
  /** Makes the new config live. */
  readonly apply: (config: ResolvedConfig) => void;
  readonly logger: Logger;
  /** How often the file's stat is polled. Default 2 s. */
  readonly pollMs?: number;
  /** Changes within this window become one reload. Default 250 ms. */
  readonly debounceMs?: number;
  /** Listen for SIGHUP. Default true. */
  readonly sighup?: boolean;
  /** Told how each reload ended (the `wa_rotator_config_reloads_total` counter). */
  readonly onResult?: (result: ReloadResult) => void;
}

export function createConfigReloader(options: ConfigReloaderOptions): ConfigReloader {
  const log = options.logger.child({ config: options.file });
  let debounce: ReturnType<typeof setTimeout> | undefined;
  let queue: Promise<unknown> = Promise.resolve();
  let started = false;

  const reload = (reason: string): Promise<boolean> => {
    // One reload at a time, in order: the last one read the newest file.
    const run = queue.then(async () => {
      const result = await reloadOnce(reason);
      options.onResult?.(result);
      return result === "applied";
    });
    queue = run;
    return run;
  };

  const reloadOnce = async (reason: string): Promise<ReloadResult> => {
    let config: ResolvedConfig;
    try {
      config = await options.load();
    } catch (error) {
      const err = toError(error);
      const issues = err instanceof ConfigError ? err.issues : undefined;
      log.error({ reason, issues }, `policy file rejected, the running policies stay: ${err.message}`);
      return "rejected";
    }
    try {
      options.apply(config);
    } catch (error) {
      log.error({ reason, err: toError(error) }, "applying the reloaded policy file failed");
      return "failed";
    }
    log.info({ reason, policies: config.policies.length }, "policy file reloaded");
    for (const warning of config.warnings) log.warn(`policy file: ${warning}`);
    return "applied";
  };

  const onSighup = () => void reload("SIGHUP");
  const onChange = (current: Stats, previous: Stats) => {
    if (
      current.mtimeMs === previous.mtimeMs &&
      current.size === previous.size &&
      current.ino === previous.ino
    ) {
      return;
    }
    if (debounce) clearTimeout(debounce);
    debounce = setTimeout(() => {
      debounce = undefined;
      void reload("file changed");
    }, options.debounceMs ?? 250);
  };

  return {
    start() {
      if (started) return;
      started = true;
      if (options.sighup ?? true) process.on("SIGHUP", onSighup);
      watchFile(options.file, { interval: options.pollMs ?? 2_000, persistent: false }, onChange);
    },
    stop() {
      if (!started) return;
      started = false;
      process.off("SIGHUP", onSighup);
      unwatchFile(options.file, onChange);
      if (debounce) clearTimeout(debounce);
      debounce = undefined;
    },
    reload,
  };
}
