/**
 * The simulator's hidden per-phone-number limit: Meta publishes no number for group operations and
 * answers 131208 (HTTP 429) once a phone number goes over it. Modelled as a token bucket per number
 * (`ratePerSec` tokens a second, at most `burst` banked); every invite-link call (DELETE, POST, GET)
 * of the number takes one token, and a call that finds none is refused without taking one.
 */

/** A hidden limit: for one phone number, or (no `phoneNumberId`) for every number, each its own bucket. */
export interface HiddenLimit {
  phoneNumberId?: string;
  /** Operations per second the number may make. */
  ratePerSec: number;
  /** Tokens the bucket holds when full (a burst after a quiet spell). Default 10. */
  burst?: number;
}

interface Bucket {
  tokens: number;
  at: number;
  ratePerSec: number;
  burst: number;
}

/** The hidden limits and their buckets. `now` is injectable so tests need no timing. */
export class HiddenLimits {
  private readonly limits = new Map<string, Required<Omit<HiddenLimit, "phoneNumberId">>>();
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  /**
   * Sets (or changes, mid-run) a limit. A changed limit keeps the tokens its buckets hold, capped
   * at the new burst, so halving or doubling a number's limit takes effect at once.
   */
  set(limit: HiddenLimit): void {
    if (!(limit.ratePerSec > 0) || !Number.isFinite(limit.ratePerSec))
      throw new Error("ratePerSec must be a positive number");
    const burst = limit.burst ?? 10;
    if (!(burst >= 1) || !Number.isFinite(burst)) throw new Error("burst must be a number of at least 1");
    const key = limit.phoneNumberId ?? "*";
    this.limits.set(key, { ratePerSec: limit.ratePerSec, burst });
    for (const [number, bucket] of this.buckets) {
      if (key !== "*" && number !== key) continue;
      if (key === "*" && this.limits.has(number)) continue;
      this.refill(bucket);
      bucket.ratePerSec = limit.ratePerSec;
      bucket.burst = burst;
      bucket.tokens = Math.min(bucket.tokens, burst);
    }
  }

  clear(): void {
    this.limits.clear();
    this.buckets.clear();
  }

  list(): HiddenLimit[] {
    return [...this.limits].map(([key, limit]) => ({
      ...(key !== "*" && { phoneNumberId: key }),
      ...limit,
    }));
  }

  /** Takes a token of the number's bucket; false when the number is over its limit. */
  take(phoneNumberId: string): boolean {
    const limit = this.limits.get(phoneNumberId) ?? this.limits.get("*");
    if (!limit) return true;
    let bucket = this.buckets.get(phoneNumberId);
    if (!bucket) {
      bucket = { tokens: limit.burst, at: this.now(), ...limit };
      this.buckets.set(phoneNumberId, bucket);
    }
    this.refill(bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  private refill(bucket: Bucket): void {
    const now = this.now();
    bucket.tokens = Math.min(bucket.burst, bucket.tokens + ((now - bucket.at) / 1000) * bucket.ratePerSec);
    bucket.at = now;
  }
}
