import type { ParseArgsConfig } from "node:util";

/**
 * What every CLI command module exports as default. Its name, usage line and help live in
 * `registry.ts`, so help never loads the module.
 */
export interface Command {
  /**
   * The options its parser accepts (node's `parseArgs` config). registry.ts documents the same
   * ones; test/unit/command-options.test.ts fails when the two differ.
   */
  readonly options: NonNullable<ParseArgsConfig["options"]>;
  /**
   * Runs the command with the arguments after its name. Returns the exit code. Throws UsageError
   * or ConfigError for exit 2; anything else thrown means exit 1.
   */
  run(args: string[], io: CommandIO): Promise<number>;
}

/** Where a command writes: stdout for results, stderr for messages to the operator. */
export interface CommandIO {
  readonly env: Record<string, string | undefined>;
  /** Values never to print (account tokens, once the policy file is loaded); the CLI redacts them. */
  readonly secrets?: Set<string>;
  out(line: string): void;
  err(line: string): void;
  /**
   * A transient status line (`3/10 rotated`), rewritten in place; "" clears it. Only where stderr
   * is a terminal: undefined elsewhere, and then commands show no progress.
   */
  progress?(line: string): void;
}
