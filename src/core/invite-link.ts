/**
 * The contract's invite-link form, defined once for the project: `https://chat.whatsapp.com/`
 * followed by 10 to 64 letters, digits, `-` and `_`, nothing else (no query, no fragment). The Graph
 * client treats any other answer as garbled, the publisher and the subscriber refuse it, the
 * simulator makes only such links, and the gateway redirects only to them.
 */

/** Every invite link starts with this. */
export const INVITE_LINK_PREFIX = "https://chat.whatsapp.com/";

/** The whole link, anchored. */
export const INVITE_LINK_PATTERN = /^https:\/\/chat\.whatsapp\.com\/[A-Za-z0-9_-]{10,64}$/;

/** Says what the contract allows, for error messages (never the offending text itself). */
export const INVITE_LINK_FORM = `${INVITE_LINK_PREFIX} followed by 10 to 64 of A-Z a-z 0-9 - _`;

/** True when `text` is an invite link of the contract's form. */
export function isInviteLink(text: unknown): text is string {
  return typeof text === "string" && text.length <= 90 && INVITE_LINK_PATTERN.test(text);
}

/**
 * Masks an invite link, as `status` and job return values show it: the origin and at most the first
 * 4 characters of its code (never more than half of it), then `…`. Whoever has a whole link can join
 * the group.
 */
export function maskLink(link: string): string {
  const prefix = link.startsWith(INVITE_LINK_PREFIX) ? INVITE_LINK_PREFIX : "";
  const code = link.slice(prefix.length);
  return `${prefix}${code.slice(0, Math.min(4, Math.floor(code.length / 2)))}…`;
}
