import type { AccountContext } from "../core/interfaces.js";
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
