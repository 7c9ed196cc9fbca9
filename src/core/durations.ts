/**
 * Durations as the policy file, the environment and the CLI write them: `500ms`, `30s`, `15m`,
 * `2h`, `1d`, compound ones from the largest unit down (`1h30m`, `1d12h`, `2m30s`, `1s500ms`), or `0`.
 */
const UNITS = [
  ["d", 86_400_000],
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1_000],
  ["ms", 1],
] as const;

const TERM = "\\d+(?:\\.\\d+)?";
const COMPOUND = UNITS.map(([unit]) => `(?:(${TERM})${unit})?`).join("");

/** The grammar as a pattern (also the JSON Schema's), surrounding whitespace allowed. */
export const DURATION_PATTERN = `^\\s*(?:0|(?=\\d)${COMPOUND})\\s*$`;
const DURATION = new RegExp(DURATION_PATTERN);

/** Parses a duration to milliseconds, or returns undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text);
  if (!match) return undefined;
  let ms = 0;
  UNITS.forEach(([, size], i) => {
    const value = match[i + 1];
    if (value !== undefined) ms += Number(value) * size;
  });
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

/** Formats milliseconds from the largest unit down: `90m` reads `1h30m`, `1500` reads `1s500ms`. */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0ms";
  let rest = Math.round(ms);
  let text = "";
  for (const [unit, size] of UNITS) {
    const whole = Math.floor(rest / size);
    if (whole > 0) {
      text += `${whole}${unit}`;
      rest -= whole * size;
    }
  }
  return text;
}
