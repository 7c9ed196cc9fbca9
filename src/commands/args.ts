import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../core/errors.js";

/**
 * node's `parseArgs` (strict: unknown options and, unless allowed, positionals are errors), with
 * every fault turned into a UsageError, so the CLI exits 2 and prints the command's usage.
 */
export function parseCommandArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}
