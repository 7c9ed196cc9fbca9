/**
 * Text a printer did not make (a link, a group id, a failure reason from Redis or Graph) may carry
 * control characters that move the cursor, recolour or clear a terminal, or bidi controls that
 * reorder what an operator reads. Every printer (the CLI's stdout and stderr, the log lines) passes
 * its output through `printable`: those characters become `\uXXXX`, which is visible on a terminal
 * and, inside a JSON string, the very same character, so JSON output stays the same JSON.
 */

// C0 and C1 controls, DEL, and the bidi and invisible format characters (ALM, zero-width ones,
// LRM/RLM, line and paragraph separators, LRE…RLO, word joiner…PDI, BOM).
const FORMAT = "\\u061c\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u2069\\ufeff";
const UNSAFE = new RegExp(`[\\u0000-\\u001f\\u007f-\\u009f${FORMAT}]`, "g");
const UNSAFE_BUT_NEWLINE = new RegExp(`[\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f${FORMAT}]`, "g");

const escape = (ch: string) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`;

/** `text` with every control and bidi character escaped (newlines too, unless `keepNewlines`). */
export function printable(text: string, options: { keepNewlines?: boolean } = {}): string {
  return text.replace(options.keepNewlines ? UNSAFE_BUT_NEWLINE : UNSAFE, escape);
}
