import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * Signed join URLs: `/join/<slug>?exp=<epoch s>&uses=<N>&sig=<base64url HMAC-SHA256>`, made by the
 * `link` command with ROTATOR_LINK_SECRET and checked by the gateway in constant time. The MAC
 * covers the slug, the expiry and the visit limit, so none can be changed or moved to another slug.
 */

/** The limits a signed URL carries. */
export interface SignedTerms {
  readonly slug: string;
  /** Expiry, epoch seconds. */
  readonly exp: number;
  /** Visits admitted; undefined = no limit. */
  readonly uses?: number | undefined;
}

/** What the gateway makes of a request's signature parameters. */
export type SignatureCheck =
  | { readonly kind: "none" }
  | { readonly kind: "bad"; readonly reason: string }
  | { readonly kind: "expired"; readonly terms: SignedTerms; readonly sig: string }
  | { readonly kind: "valid"; readonly terms: SignedTerms; readonly sig: string };

const INTEGER = /^[1-9]\d{0,15}$/;
const SIG = /^[A-Za-z0-9_-]{43}$/;

/** The canonical text the MAC covers: versioned, one field per line (a slug holds no newline). */
function canonical(terms: SignedTerms): string {
  return `v1\n${terms.slug}\n${terms.exp}\n${terms.uses ?? ""}`;
}

export function signTerms(terms: SignedTerms, secret: string): string {
  return createHmac("sha256", secret).update(canonical(terms)).digest("base64url");
}

/** The query string of a signed URL (`exp=…&uses=…&sig=…`, `uses` only when limited). */
export function signedQuery(terms: SignedTerms, secret: string): string {
  const params = new URLSearchParams({ exp: String(terms.exp) });
  if (terms.uses !== undefined) params.set("uses", String(terms.uses));
  params.set("sig", signTerms(terms, secret));
  return params.toString();
}

/**
 * Checks the signature parameters of a visit. No `sig` and no `exp`: `none`. Anything else must
 * be a complete, well-formed, correctly signed set: otherwise `bad` (403). A good signature past
 * its expiry is `expired` (410). Without a secret every signature is `bad`.
 */
export function checkSignature(
  slug: string,
  params: URLSearchParams,
  secret: string | undefined,
  nowMs: number,
): SignatureCheck {
  const sig = params.get("sig");
  const exp = params.get("exp");
  const uses = params.get("uses");
  if (sig === null && exp === null && uses === null) return { kind: "none" };
  if (
    params.getAll("sig").length > 1 ||
    params.getAll("exp").length > 1 ||
    params.getAll("uses").length > 1
  ) {
    return { kind: "bad", reason: "repeated parameter" };
  }
  if (sig === null || exp === null) return { kind: "bad", reason: "missing sig or exp" };
  if (!SIG.test(sig) || !INTEGER.test(exp) || (uses !== null && !INTEGER.test(uses))) {
    return { kind: "bad", reason: "malformed" };
  }
  if (secret === undefined) return { kind: "bad", reason: "no ROTATOR_LINK_SECRET on the gateway" };
  const terms: SignedTerms = { slug, exp: Number(exp), uses: uses === null ? undefined : Number(uses) };
  const expected = Buffer.from(signTerms(terms, secret));
  const given = Buffer.from(sig);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
    return { kind: "bad", reason: "signature mismatch" };
  }
  if (terms.exp * 1000 <= nowMs) return { kind: "expired", terms, sig };
  return { kind: "valid", terms, sig };
}

/**
 * Counts one visit of a signed URL and returns the count, atomically: with `uses: 50`, 100
 * parallel visits get the counts 1 to 50 and fifty answers above 50, so exactly 50 are admitted.
 * A URL already used up (ARGV[2] visits) is not counted again: the count stays at its limit and
 * the answer is one above it. The counter expires with the URL (ARGV[1], ms).
 */
export const COUNT_VISIT = `local n = tonumber(redis.call("GET", KEYS[1]) or "0")
if n >= tonumber(ARGV[2]) then return n + 1 end
n = redis.call("INCR", KEYS[1])
if n == 1 then redis.call("PEXPIREAT", KEYS[1], ARGV[1]) end
return n`;
