import { statSync, type Stats } from "node:fs";
import { stat } from "node:fs/promises";
import type { ResolvedConfig } from "./config.js";
import { ConfigError, toError } from "../core/errors.js";
import type { Logger } from "../infra/logger.js";
import type { ReloadResult } from "../infra/metrics.js";

/**
 * Reloads the policy file on SIGHUP and when the file changes. The new file is validated first:
 * a valid one is applied at once (`apply` swaps the live config and re-arms the scheduler); an
 * invalid one is rejected with a log line naming the fault, and the running policies stay.
 *
 * The file is watched by polling its stat: that survives editors that replace the file by rename
 * and volumes where inotify does not reach (Kubernetes ConfigMaps). The first stat is taken
 * synchronously in start(), so a change made right after start() is seen: fs.watchFile took its
 * first look asynchronously and, when that look came after the change, never reported it.
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
  let last: Stats | undefined;
  let poller: ReturnType<typeof setInterval> | undefined;
  let polling = false;
  const same = (a: Stats | undefined, b: Stats | undefined) =>
    a?.mtimeMs === b?.mtimeMs && a?.size === b?.size && a?.ino === b?.ino;
  const look = (): Stats | undefined => {
    try {
      return statSync(options.file);
    } catch {
      return undefined; // gone for now (mid-replace): the next look that finds it compares
    }
  };
  const poll = async () => {
    if (polling) return;
    polling = true;
    try {
      const current = await stat(options.file).catch(() => undefined);
      if (!started || current === undefined || same(current, last)) return;
      last = current;
      if (debounce) clearTimeout(debounce);
      debounce = setTimeout(() => {
        debounce = undefined;
        void reload("file changed");
      }, options.debounceMs ?? 250);
    } finally {
      polling = false;
    }
  };

  return {
    start() {
      if (started) return;
      started = true;
      if (options.sighup ?? true) process.on("SIGHUP", onSighup);
      last = look();
      poller = setInterval(() => void poll(), options.pollMs ?? 2_000);
      poller.unref();
    },
    stop() {
      if (!started) return;
      started = false;
      process.off("SIGHUP", onSighup);
      if (poller) clearInterval(poller);
      poller = undefined;
      if (debounce) clearTimeout(debounce);
      debounce = undefined;
    },
    reload,
  };
}
