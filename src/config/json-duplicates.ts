import type { IssuePath } from "../core/errors.js";

/**
 * Duplicate keys in JSON text. JSON.parse keeps the last of two equal keys without a word, so a
 * policy file in JSON gets this check instead: a single pass over the text, no parse tree.
 */

/** One JSON string token, quotes included (sticky: set `lastIndex` first). */
// eslint-disable-next-line no-control-regex -- JSON forbids raw control characters in strings
export const JSON_STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

/** A key written twice in one JSON object: its path, and the offsets of both copies. */
export interface DuplicateKey {
  readonly path: IssuePath;
  readonly at: number;
  readonly firstAt: number;
}

/** Duplicates reported at most, in file order. */
const DUPLICATE_LIMIT = 20;

/**
 * Keys written twice in one object of `text`, which must be valid JSON (JSON.parse accepted it).
 * One linear pass without recursion: only keys are decoded, so a 100,000-group file stays fast.
 */
export function jsonDuplicateKeys(text: string): DuplicateKey[] {
  type Frame =
    | { readonly keys: Map<string, number>; key: string; expectKey: boolean }
    | { readonly keys?: undefined; index: number };
  const stack: Frame[] = [];
  const found: DuplicateKey[] = [];
  let i = 0;
  while (i < text.length && found.length < DUPLICATE_LIMIT) {
    const c = text[i]!;
    const top = stack[stack.length - 1];
    if (c === '"') {
      JSON_STRING.lastIndex = i;
      if (!JSON_STRING.test(text)) return found; // not valid JSON after all: JSON.parse's call
      const end = JSON_STRING.lastIndex;
      if (top?.keys && top.expectKey) {
        const key = JSON.parse(text.slice(i, end)) as string;
        const first = top.keys.get(key);
        if (first === undefined) top.keys.set(key, i);
        else {
          const parents = stack.slice(0, -1).map((frame) => (frame.keys ? frame.key : frame.index));
          found.push({ path: [...parents, key], at: i, firstAt: first });
        }
        top.key = key;
        top.expectKey = false;
      }
      i = end;
      continue;
    }
    if (c === "{") stack.push({ keys: new Map(), key: "", expectKey: true });
    else if (c === "[") stack.push({ index: 0 });
    else if (c === "}" || c === "]") stack.pop();
    else if (c === "," && top) {
      if (top.keys) top.expectKey = true;
      else top.index++;
    }
    i++;
  }
  return found;
}
