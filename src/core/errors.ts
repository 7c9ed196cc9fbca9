/**
 * Error classes with a stable string `code`. Graph failures live in `graph/errors.ts`.
 */

/** Base of every error the project throws on purpose. */
export class RotatorError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A failure no retry can fix: the worker fails the rotation at once with this reason. */
export class StopError extends RotatorError {
  readonly retry = false;
}

/**
 * The account's token is failing, so the rotation stopped before DELETE: the group keeps its link.
 * The worker holds the rotation until the account recovers rather than fail it.
 */
export class AccountFailingError extends StopError {
  readonly account: string;
  constructor(account: string, failingCode: string, groupId: string) {
    super(
      "E_ACCOUNT_FAILING",
      `account ${account} is failing (${failingCode}); the rotation of group ${groupId} ` +
        "is held before DELETE until the account recovers, so the group keeps its current link",
    );
    this.account = account;
  }
}

/**
 * This attempt no longer holds (or can no longer be sure it holds) its group's lock, so it wrote
 * nothing: another rotation of the group may be running. Retryable: a later attempt takes the lock
 * again and resumes from the persisted state.
 */
export class LockLostError extends RotatorError {
  constructor(groupId: string, detail = "lost the lock") {
    super("E_LOCK_LOST", `group ${groupId}: ${detail}; nothing was written`);
  }
}

/** Bad command line usage: exit code 2. */
export class UsageError extends RotatorError {
  constructor(message: string) {
    super("E_USAGE", message);
  }
}

/** Where an issue is, before formatting: path segments as in the document (keys and array indexes). */
export type IssuePath = readonly (string | number)[];

/** One fault in a policy file. */
export interface ConfigIssue {
  /** Path inside the file, for example `policies[2].schedule`; empty for the file as a whole. */
  readonly path: string;
  readonly message: string;
}

/** An invalid policy file or environment: exit code 2. The message names file, path and fault. */
export class ConfigError extends RotatorError {
  readonly file: string;
  readonly issues: readonly ConfigIssue[];
  constructor(file: string, issues: readonly ConfigIssue[], heading = `invalid policy file ${file}`) {
    const lines = issues.map((i) => `  ${i.path ? `${i.path}: ` : ""}${i.message}`);
    super("E_CONFIG", `${heading}:\n${lines.join("\n")}`);
    this.file = file;
    this.issues = issues;
  }
}

/** An invalid environment variable: exit code 2. Each issue's path is the variable's name. */
export class EnvironmentError extends ConfigError {
  constructor(issues: readonly ConfigIssue[]) {
    super("environment", issues, "invalid environment");
  }
}

/** Turns any throwable into an Error, keeping the original as `cause`. */
export function toError(value: unknown): Error {
  if (value instanceof Error) return value;
  return new Error(typeof value === "string" ? value : `non-error thrown: ${safeString(value)}`, {
    cause: value,
  });
}

function safeString(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
