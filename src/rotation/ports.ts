import type { AccountContext, Step } from "../core/interfaces.js";
import type { GraphError } from "../graph/errors.js";

/**
 * What the rotation worker asks of the account gate (accounts/gate.ts implements it): the worker
 * reports throttles and token failures and holds rotations of a failing account.
 */
export interface RotationGate {
  /**
   * Records a throttle answer; returns how long the rotation should wait. `groupId`: the group
   * whose call was refused (a refused POST goes first in its number's line).
   */
  throttled(account: AccountContext, error: GraphError, groupId?: string): Promise<number>;
  /** Records a token failure: the account is failing until a new token or a probe succeeds. */
  failed(account: AccountContext, error: GraphError, groupId: string): Promise<void>;
  /** Records a rotation held for the failing account; true when it was not held yet. */
  hold(accountName: string, rotationId: string): Promise<boolean>;
  /** How long a rotation that waits for a failing account sleeps between checks. */
  readonly recheckMs: number;
}

/**
 * The gate's check before a Graph call, as parts another script runs inside its own call: the saga
 * takes its lock and checks its DELETE, and records its DELETE and checks its POST, in one round
 * trip each (rotation/state.ts) instead of two.
 */
export interface GateCheckCall {
  /** Lua statements (the check's body): they read `KEYS` and `ARGV` and `return` the reply. */
  readonly lua: string;
  readonly keys: readonly string[];
  readonly args: readonly string[];
  /** What the reply means, as `beforeGraphCall` returns it (it may sleep a short slot, or throw). */
  done(reply: unknown): Promise<number | undefined>;
  /** The script had no use for the check and did not run it: gives back what building it took. */
  unused?(): void;
}

/** Builds the gate's check of one call for `GateCheckCall`. */
export type GateCheck = (account: AccountContext, step: Step, groupId: string) => GateCheckCall;
