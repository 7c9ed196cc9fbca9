import { createHash } from "node:crypto";

/**
 * Jitter: a fire's groups start spread over the policy's `jitter` window instead of all at once.
 *
 * Each group keeps a stable place in the window: the same fraction of it at every fire, derived
 * from a hash of (policy, group), so a group's link changes at about the same time every day and
 * a restart or another replica computes the same delay. The window is clamped to `GAP_SHARE` of
 * the gap to the next fire: a group started just before the next fire would still be pending
 * then and be skipped as busy, every other fire. The rest of the gap is left for the rotations.
 */

/** The share of the gap to the next fire that a jitter window may fill at most. */
export const GAP_SHARE = 0.9;

/** The longest jitter window a gap between fires allows (run time clamps to it). */
export function maxJitterWindow(gapMs: number): number {
  return Math.floor(gapMs * GAP_SHARE);
}

/** The group's stable place in any jitter window, in [0, 1). */
export function jitterFraction(policy: string, groupId: string): number {
  const digest = createHash("sha256").update(`${policy}\u0000${groupId}`).digest();
  // 48 bits are exact in a double and plenty for millisecond offsets.
  return digest.readUIntBE(0, 6) / 2 ** 48;
}

/**
 * The group's offset from the fire, in ms: in [0, jitterMs) and below `GAP_SHARE` of `gapMs` (the
 * time from the fire to the policy's next fire). 0 when there is no jitter.
 */
export function jitterOffset(policy: string, groupId: string, jitterMs: number, gapMs = Infinity): number {
  const window = Math.min(jitterMs, maxJitterWindow(gapMs));
  if (!(window > 0)) return 0;
  return Math.min(Math.floor(jitterFraction(policy, groupId) * window), Math.ceil(window) - 1);
}
