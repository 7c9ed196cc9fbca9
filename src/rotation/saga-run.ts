import type {
  AccountContext,
  Clock,
  GraphPort,
  PublisherPort,
  RotationJobData,
  RotationMessage,
  Step,
} from "../core/interfaces.js";
import type { Logger } from "../infra/logger.js";
import type { GroupLock } from "./group-lock.js";
import type { GateCheck, GateCheckCall } from "./ports.js";
import type { GroupLinkState, RotationStateStore } from "./state.js";

/** The rotation saga's ports, its outcomes, and what one attempt carries from step to step. */
export interface RotateGroupDeps {
  readonly graph: GraphPort;
  readonly publisher: PublisherPort;
  readonly state: RotationStateStore;
  readonly lock: GroupLock;
  /** Resolves an account by name; throws a `stop` error when it is unknown or has no token. */
  readonly resolveAccount: (name: string) => AccountContext;
  /**
   * Optional gate consulted before any Graph call of an account (throttle pauses, failing tokens).
   * Returns how long to wait, or throws a stop error; undefined means go.
   */
  readonly beforeGraphCall?: (
    account: AccountContext,
    step: Step,
    groupId: string,
  ) => Promise<number | undefined>;
  /**
   * The same gate's check as parts of another script: with it, the DELETE's record and the POST's
   * check are one call.
   */
  readonly gateCheck?: GateCheck;
  readonly clock: Clock;
  readonly logger: Logger;
  /**
   * How long after an unsure DELETE or POST Graph may still carry it out, ms (the app passes
   * ROTATOR_UNSURE_SETTLE). Default 15 s.
   */
  readonly unsureSettleMs?: number;
}

export const DEFAULT_UNSURE_SETTLE_MS = 15_000;

export type RotationOutcome =
  | {
      readonly kind: "published";
      readonly message: RotationMessage;
      readonly resumedAt: Step;
      /** DELETE success to POST success, when known: how long the group had no link. */
      readonly linkGapMs?: number;
      /**
       * The publish finished the rotation in the same call (failure record cleared, pending mark
       * settled, lock released): nothing is left to record.
       */
      readonly finished?: boolean;
    }
  /**
   * This rotation stopped half-way, and meanwhile another rotation of the group changed its link at
   * Graph and published a newer one: finishing this one would replace a good published link, so it
   * ends here. `message` is the group's newest published message.
   */
  | { readonly kind: "superseded"; readonly message: RotationMessage | undefined; readonly by: string }
  /** Another rotation of the group holds its lock: try again shortly. */
  | { readonly kind: "busy" }
  /**
   * Try again after `waitMs`, at the same step, without using an attempt: the account is paused
   * (throttled), or (`code` E_UNSURE_SETTLE) an unsure call of the group may still land.
   */
  | { readonly kind: "paused"; readonly waitMs: number; readonly step: Step; readonly code?: string }
  /**
   * The rotation is no longer wanted (`RotationContext.notWanted`), or WhatsApp suspended or deleted
   * the group (`code`), and it had not touched Graph.
   */
  | {
      readonly kind: "skipped";
      readonly reason: string;
      readonly code?: "E_GROUP_SUSPENDED" | "E_GROUP_DELETED";
    };

export interface RotationContext {
  /** Identifies this attempt as the lock owner (unique per delivery of the job). */
  readonly owner: string;
  /** Aborts when the worker shuts down hard. */
  readonly signal?: AbortSignal;
  /**
   * Why this rotation is no longer wanted (a reload took its group out of its policy), or
   * undefined. Asked under the group's lock, and only while the rotation has not touched Graph:
   * one that may have changed the group's link finishes.
   */
  readonly notWanted?: () => string | undefined;
}

/** One attempt of the saga under the group's lock: what it knows, and what its steps change. */
export interface SagaRun {
  readonly data: RotationJobData;
  readonly deps: RotateGroupDeps;
  readonly context: RotationContext;
  readonly log: Logger;
  /** Aborts when the lock is lost or the worker shuts down hard. */
  readonly signal: AbortSignal;
  /** The group as this attempt found it under the lock. */
  readonly group: GroupLinkState;
  /** Where this attempt started, for the outcome and the log. */
  resumedAt: Step;
  deletedAt: number | undefined;
  /** The group's published sequence when this rotation's DELETE was confirmed. */
  readonly sequenceAtDelete: number | undefined;
  inviteLink: string | undefined;
  createdAt: number | undefined;
  /** The group's message count on the rotation's channel, read under the lock. */
  readonly channelSequence: number;
  /** The DELETE's gate check, run already with the lock's taking: its call and reply. */
  deleteChecked?: { readonly call: GateCheckCall; readonly reply: unknown };
  /** The POST's gate check, done already with the DELETE's record: its wait (undefined: go). */
  createChecked?: { readonly wait: number | undefined };
  /** The POST's record, sent and not yet answered: the publish, sent behind it, awaits it too. */
  recording?: Promise<void>;
}

/** A step returns an outcome to end the attempt with, or undefined to go on to the next one. */
export type SagaStep = (run: SagaRun) => Promise<RotationOutcome | undefined>;
