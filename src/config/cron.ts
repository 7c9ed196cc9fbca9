import { CronExpressionParser, type CronExpression } from "cron-parser";

/**
 * Cron schedules of policies: validation and fire computation in a time zone. A schedule has 5
 * fields (`minute hour day-of-month month day-of-week`) or 6 with leading seconds; fires are epoch
 * ms. Every function takes the expression and the zone as written in the policy file; validate
 * them once with `parseSchedule`.
 */

/** A schedule that parsed: use it with the functions below. */
export interface Schedule {
  readonly expression: string;
  readonly timezone: string;
  /** Whether the expression has the leading seconds field. */
  readonly hasSeconds: boolean;
}

const FIELDS_HELP = "a cron schedule has 5 fields (minute hour day month weekday) or 6 with leading seconds";

/** Whether `timezone` is an IANA zone this runtime knows. */
export function isValidTimeZone(timezone: string): boolean {
  if (timezone.trim() === "") return false;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: timezone });
    return true;
  } catch {
    return false;
  }
}

/** Validates a schedule in a zone; returns the schedule, or a message saying what is wrong. */
export function parseSchedule(
  expression: string,
  timezone: string,
): { ok: true; schedule: Schedule } | { ok: false; message: string } {
  const fields = expression.trim().split(/\s+/).filter(Boolean);
  if (fields.length !== 5 && fields.length !== 6) {
    return { ok: false, message: `${FIELDS_HELP}, got ${fields.length}: "${expression}"` };
  }
  if (fields.some((field) => field.startsWith("@"))) {
    return { ok: false, message: `${FIELDS_HELP}; macros such as @daily are not supported` };
  }
  if (!isValidTimeZone(timezone)) return { ok: false, message: `unknown time zone: ${timezone}` };
  // cron-parser draws a random value for each H on every parse unless seeded: replicas, plan and
  // catch-up would each see other fire times. Spreading is what `jitter` is for.
  if (fields.some((field) => /(^|[^a-z])h/i.test(field))) {
    return {
      ok: false,
      message: `H (hashed) values are not supported in "${expression}": use jitter to spread groups`,
    };
  }
  try {
    CronExpressionParser.parse(expression, { tz: timezone, currentDate: 0 });
  } catch (error) {
    return { ok: false, message: `not a valid cron schedule "${expression}": ${errorText(error)}` };
  }
  const schedule: Schedule = Object.freeze({ expression, timezone, hasSeconds: fields.length === 6 });
  // An expression can parse and still never fire (30 February), or the zone can be one cron-parser
  // cannot use; both show when asking for a fire.
  try {
    if (nextFires(expression, timezone, Date.now(), 1).length === 0) {
      return { ok: false, message: `the cron schedule "${expression}" never fires` };
    }
  } catch (error) {
    return { ok: false, message: `the cron schedule "${expression}" never fires: ${errorText(error)}` };
  }
  return { ok: true, schedule };
}

/** The next `count` fires strictly after `after`, ascending. */
export function nextFires(
  expression: string,
  timezone: string,
  after: Date | number,
  count: number,
): number[] {
  const from = toMs(after);
  const fires: number[] = [];
  if (count <= 0) return fires;
  const iterator = iterate(expression, timezone, safeStart(timezone, from));
  while (fires.length < count) {
    const fire = step(iterator);
    if (fire === undefined) break;
    if (fire > from) fires.push(fire);
  }
  return fires;
}

/**
 * Look-back windows for `previousFire`, growing by at most 60×: the first window that holds a fire
 * holds few (its predecessor held none), so walking it forward is cheap.
 */
const LOOK_BACK_MS = [60_000, 3_600_000, 86_400_000, 32 * 86_400_000, 400 * 86_400_000, 1500 * 86_400_000];
const LOOK_BACK_LIMIT = 1_000;

/**
 * The latest fire strictly before `before`, or undefined when there is none within about four
 * years. Defined by the forward sequence alone (`nextFires`), so it agrees with it on every DST day:
 * cron-parser's backward walk misses a fire that spring-forward moved (02:30 → 03:30) and can
 * offer the second copy of a fall-back fire that the forward sequence skips.
 */
export function previousFire(
  expression: string,
  timezone: string,
  before: Date | number,
): number | undefined {
  const end = toMs(before) - 1;
  for (const window of LOOK_BACK_MS) {
    const fires = firesBetween(expression, timezone, end - window, end, LOOK_BACK_LIMIT);
    if (fires.length > 0) return fires[fires.length - 1];
  }
  return undefined;
}

/** Fires in `(fromExclusive, toInclusive]`, ascending, at most `limit` of them. */
export function firesBetween(
  expression: string,
  timezone: string,
  fromExclusive: Date | number,
  toInclusive: Date | number,
  limit: number,
): number[] {
  const from = toMs(fromExclusive);
  const to = toMs(toInclusive);
  const fires: number[] = [];
  if (limit <= 0 || to <= from) return fires;
  const iterator = iterate(expression, timezone, safeStart(timezone, from));
  while (fires.length < limit) {
    const fire = step(iterator);
    if (fire === undefined || fire > to) break;
    if (fire > from) fires.push(fire);
  }
  return fires;
}

/** The shortest gap between consecutive fires among the next `count` fires after `after`. */
export function shortestGap(
  expression: string,
  timezone: string,
  after: Date | number,
  count: number,
): number | undefined {
  const fires = nextFires(expression, timezone, after, count);
  let shortest: number | undefined;
  for (let i = 1; i < fires.length; i++) {
    const gap = fires[i]! - fires[i - 1]!;
    if (shortest === undefined || gap < shortest) shortest = gap;
  }
  return shortest;
}

function iterate(expression: string, timezone: string, from: number): CronExpression {
  return CronExpressionParser.parse(expression, { tz: timezone, currentDate: from });
}

function step(iterator: CronExpression): number | undefined {
  try {
    return iterator.next().getTime();
  } catch {
    return undefined;
  }
}

/*
 * DST: cron-parser walks wall-clock time. On a spring-forward day a fire inside the skipped hour
 * moves to the first instant after the gap (02:30 → 03:30), so it fires once. On a fall-back day,
 * iterating from before the repeated hour yields a fixed wall-clock time (`30 2 * * *`) once,
 * while hour-wildcard schedules (`0 * * * *`) fire in both copies of the hour. Started from an
 * instant inside the repeated hour, however, cron-parser would offer the second copy of a fire it
 * already gave; so every computation here starts from `safeStart`, before that hour, which makes
 * the fires a single sequence no matter where a caller starts asking.
 */

/**
 * An instant at or before `at` that is not inside a repeated (fall-back) hour: if `at` is in the
 * second copy of a wall-clock hour, the same wall-clock time in the first copy.
 */
function safeStart(timezone: string, at: number): number {
  const offset = offsetMs(timezone, at);
  // Transitions are months apart, so three hours back is before any transition near `at`.
  const earlier = offsetMs(timezone, at - 3 * 3_600_000);
  if (earlier <= offset) return at;
  const shifted = at - (earlier - offset);
  return offsetMs(timezone, shifted) === earlier ? shifted : at;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The zone's UTC offset at `at`, in ms (Berlin in summer: +7,200,000). */
export function offsetMs(timezone: string, at: number): number {
  let format = formatters.get(timezone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: timezone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(timezone, format);
  }
  const parts: Record<string, number> = {};
  for (const part of format.formatToParts(at)) {
    if (part.type !== "literal") parts[part.type] = Number(part.value);
  }
  const wall = Date.UTC(
    parts["year"]!,
    parts["month"]! - 1,
    parts["day"]!,
    parts["hour"]!,
    parts["minute"]!,
    parts["second"]!,
  );
  const wholeSeconds = at - (((at % 1000) + 1000) % 1000);
  return wall - wholeSeconds;
}

function toMs(value: Date | number): number {
  return typeof value === "number" ? value : value.getTime();
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
