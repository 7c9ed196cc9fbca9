/**
 * The contract's group-id rule, defined once: 1 to 256 printable ASCII characters other than space,
 * and neither `.` nor `..` (which a URL resolver would turn into a path step). The policy file, the
 * `rotate` arguments, the groups Graph lists and the simulator all check it; the Graph client still
 * sends the id percent-encoded as one path segment.
 */

export const MAX_GROUP_ID = 256;

/** Anchored: printable ASCII without space, 1 to 256 characters. */
export const GROUP_ID_PATTERN = /^[\x21-\x7e]{1,256}$/;

/** Why `id` is not a group id (never echoing it: it may carry anything), or undefined when it is one. */
export function groupIdProblem(id: string): string | undefined {
  if (id === "") return "an empty group id";
  if (id.length > MAX_GROUP_ID) return `a group id longer than ${MAX_GROUP_ID} characters`;
  if (/\s/.test(id)) return "a group id that contains whitespace";
  if (!GROUP_ID_PATTERN.test(id)) return "a group id with characters other than printable ASCII";
  if (id === "." || id === "..") return `the group id "${id}" (a path step, not a group)`;
  return undefined;
}

export function isGroupId(id: unknown): id is string {
  return typeof id === "string" && groupIdProblem(id) === undefined;
}
