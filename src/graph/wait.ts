/** The longest wait a Graph answer may impose unless ROTATOR_THROTTLE_MAX says otherwise (15 min). */
export const DEFAULT_THROTTLE_MAX_MS = 15 * 60_000;

/** A wait Graph asked for, bounded. */
export interface BoundedWait {
  /** Whole milliseconds, 0 ≤ ms ≤ the maximum. */
  readonly ms: number;
  /** The ask was longer than the maximum (or not a number at all) and was cut to it. */
  readonly clamped: boolean;
}

/**
 * Bounds a wait asked by Graph (Retry-After, `estimated_time_to_regain_access`, a back-off) to
 * `maxMs` in integer milliseconds: an absurd ask (`Retry-After: 99999999999999`, a year, Infinity,
 * NaN) becomes `maxMs`, so no Redis script ever sees a number it cannot store as an integer.
 */
export function boundWait(askedMs: number, maxMs: number): BoundedWait {
  const max = Math.max(0, Math.floor(Number.isFinite(maxMs) ? maxMs : DEFAULT_THROTTLE_MAX_MS));
  if (Number.isNaN(askedMs)) return { ms: max, clamped: true };
  if (askedMs > max) return { ms: max, clamped: true };
  return { ms: Math.max(0, Math.ceil(askedMs)), clamped: false };
}
