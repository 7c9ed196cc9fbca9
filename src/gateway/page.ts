import { createHash } from "node:crypto";
import qrcode from "qrcode-generator";

/**
 * The join page a desktop browser gets: a QR code of the invite link (rendered here as SVG, so the
 * page loads nothing from anywhere: no script, no image, no font) and the link itself. Phones never
 * see it: they are redirected straight to WhatsApp (see `isPhone`).
 */

const STYLE = [
  "body{font-family:system-ui,sans-serif;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center;background:#f4f6f5;color:#111}",
  "main{background:#fff;padding:2rem 2.5rem;border-radius:12px;text-align:center;max-width:28rem}",
  "svg{width:256px;height:256px;display:block;margin:1rem auto}",
  "a{color:#075e54;word-break:break-all}",
  "a.open{display:inline-block;margin-top:1rem;padding:.6rem 1.2rem;background:#25d366;color:#fff;border-radius:6px;text-decoration:none}",
].join("");

/** The page's Content-Security-Policy: nothing but its own inline style (by hash). */
export const PAGE_CSP = [
  "default-src 'none'",
  `style-src 'sha256-${createHash("sha256").update(STYLE).digest("base64")}'`,
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** Headers sent with the page besides the CSP. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  "Content-Security-Policy": PAGE_CSP,
  "Referrer-Policy": "no-referrer",
  "X-Frame-Options": "DENY",
};

/** A QR code of `text` as one SVG path (dark modules), with a 4-module quiet zone. */
export function qrSvg(text: string): string {
  const qr = qrcode(0, "M");
  qr.addData(text, "Byte");
  qr.make();
  const count = qr.getModuleCount();
  const quiet = 4;
  const size = count + 2 * quiet;
  let path = "";
  for (let row = 0; row < count; row++) {
    for (let col = 0; col < count; col++) {
      // Runs of dark modules in a row become one rectangle: a third of the path's size.
      if (!qr.isDark(row, col)) continue;
      let end = col;
      while (end + 1 < count && qr.isDark(row, end + 1)) end++;
      path += `M${col + quiet} ${row + quiet}h${end - col + 1}v1h-${end - col + 1}z`;
      col = end;
    }
  }
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${size} ${size}" role="img" ` +
    `aria-label="QR code of the WhatsApp invite link" shape-rendering="crispEdges">` +
    `<rect width="${size}" height="${size}" fill="#fff"/><path fill="#000" d="${path}"/></svg>`
  );
}

/** Pages of the links served lately: a link changes only at a rotation, its QR code need not be redrawn per visit. */
const pages = new Map<string, string>();
const PAGES_KEPT = 256;

/** The desktop page for one invite link (already checked to be a `https://chat.whatsapp.com/` link). */
export function joinPage(inviteLink: string): string {
  let page = pages.get(inviteLink);
  if (page === undefined) {
    if (pages.size >= PAGES_KEPT) pages.delete(pages.keys().next().value!);
    page = renderPage(inviteLink);
    pages.set(inviteLink, page);
  }
  return page;
}

function renderPage(inviteLink: string): string {
  const link = escapeHtml(inviteLink);
  return [
    "<!doctype html>",
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width,initial-scale=1">',
    '<meta name="robots" content="noindex">',
    "<title>Join the WhatsApp group</title>",
    `<style>${STYLE}</style></head><body><main>`,
    "<h1>Join the WhatsApp group</h1>",
    "<p>Scan the code with your phone's camera, or open the link on this computer.</p>",
    qrSvg(inviteLink),
    `<p><a id="invite-link" href="${link}" rel="noreferrer">${link}</a></p>`,
    `<a class="open" href="${link}" rel="noreferrer">Open WhatsApp</a>`,
    "</main></body></html>",
  ].join("");
}

/** Whether the client prefers an HTML page over a bare redirect (a browser navigating). */
export function wantsHtml(accept: string | undefined): boolean {
  return accept !== undefined && /\btext\/html\b/i.test(accept);
}

/** Phones and tablets go straight to WhatsApp; the QR page is for screens that cannot open it. */
export function isPhone(userAgent: string | undefined): boolean {
  return userAgent !== undefined && /Android|iPhone|iPad|iPod|Mobile|Windows Phone/i.test(userAgent);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
