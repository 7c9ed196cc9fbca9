import { AccountFailingError, LockLostError, toError } from "../core/errors.js";
import { isGraphError, isTokenFailure, type GraphError } from "../graph/errors.js";

/**
 * What a failed attempt means for its job, decided from the error alone:
 * - `throttled`: Graph throttled the account; the job waits (delayed) without using an attempt;
 * - `lock-lost`: the attempt lost its group's lock and wrote nothing; like a busy group, try again
 *   soon, no attempt used;
 * - `held`: the account is failing and the rotation stopped before DELETE; it waits (no attempt
 *   used, the group keeps its link) until the account recovers;
 * - `retry` / `fail`: an attempt is used; `fail` ends the job (for good with `stop`). With
 *   `tokenFailed` the account's token was rejected: the account is marked failing, and a rotation
 *   that already deleted the group's link is held instead.
 */
export type Disposition =
  | { readonly action: "throttled"; readonly error: GraphError }
  | { readonly action: "lock-lost"; readonly error: Error }
  | { readonly action: "held"; readonly error: AccountFailingError }
  | {
      readonly action: "retry" | "fail";
      readonly error: Error;
      readonly code: string;
      readonly stop: boolean;
      readonly tokenFailed: boolean;
    };

/**
 * Classifies a failed attempt. `gate`: an account gate runs (without one, a failing account is not
 * held and a rejected token is an ordinary failure); `finalAttempt`: this was the job's last try.
 */
export function disposition(
  thrown: unknown,
  options: { readonly gate: boolean; readonly finalAttempt: boolean },
): Disposition {
  const error = toError(thrown);
  if (isGraphError(error) && error.action === "throttle") return { action: "throttled", error };
  if (error instanceof LockLostError || (error as { code?: unknown }).code === "E_LOCK_LOST") {
    return { action: "lock-lost", error };
  }
  if (error instanceof AccountFailingError && options.gate) return { action: "held", error };
  const code = isGraphError(error)
    ? error.code
    : ((error as { code?: unknown }).code?.toString() ?? "E_ROTATION");
  const stop = isGraphError(error) ? error.action === "stop" : (error as { retry?: boolean }).retry === false;
  const tokenFailed = options.gate && isGraphError(error) && isTokenFailure(error);
  return { action: stop || options.finalAttempt ? "fail" : "retry", error, code, stop, tokenFailed };
}
