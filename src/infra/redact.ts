/**
 * The one secret scrubber of the project. Every string that comes from outside (a Graph answer, a
 * response header, a Redis error, the policy file's text) passes it before it reaches a log line,
 * an error message, `status`, a metric label or a BullMQ job: the logger runs it over every line,
 * the Graph client over every error it builds, the CLI over every message it prints.
 */

export const REDACTED = "[redacted]";

/** Environment variable names whose values are treated as secrets (whole values only). */
const SECRET_NAME = /TOKEN|SECRET|PASSWORD|PASSWD|AUTH|KEY/i;
/** The project's own secret settings: these are redacted also in part. */
export const SECRET_SETTINGS = [
  "WHATSAPP_ACCESS_TOKEN",
  "ROTATOR_SIGNING_SECRET",
  "ROTATOR_LINK_SECRET",
  "WHATSAPP_APP_SECRET",
  "WHATSAPP_VERIFY_TOKEN",
] as const;
/** Shorter values are too likely to be ordinary words to be replaced wherever they appear. */
const MIN_SECRET = 6;
/** The shortest run of a secret's characters that is redacted on its own. */
const FRAGMENT = 8;

/** Replaced wherever they appear: `Bearer <anything>`, `access_token=<anything>`, a URL's userinfo. */
const PATTERNS: readonly [RegExp, string][] = [
  [/(Bearer\s+)[^\s"',;\\]+/gi, `$1${REDACTED}`],
  [/(access_token["']?\s*[=:]\s*["']?)[^\s"'&,;\\]+/gi, `$1${REDACTED}`],
  // The userinfo of a URL, also of a mistyped one (`redis//:pw@host`).
  [/(\/\/)[^\s/@"'<>]+@/g, `$1${REDACTED}@`],
];

/** Replaces secrets in text; `add` teaches it more (account tokens once the policy file is loaded). */
export interface Scrubber {
  (text: string): string;
  /** Secrets redacted whole and in part (tokens, secret settings, passwords). */
  add(values: Iterable<string | undefined>): void;
}

/**
 * A scrubber for the given strong secrets (redacted whole and in part) and an environment (its
 * secret-named values redacted whole; the project's own secret settings and the password of
 * `REDIS_URL` whole and in part). "In part": every run of `FRAGMENT` or more of a secret's
 * characters, so a token Graph echoes back cut short, or a message truncated in the middle of one,
 * leaks no part of it; also their JSON-escaped forms (log lines are JSON).
 */
export function createScrubber(
  secrets: Iterable<string | undefined> = [],
  env: Readonly<Record<string, string | undefined>> = {},
): Scrubber {
  const strong = new Set<string>();
  const loose = new Set<string>();
  let index: Index | undefined;
  const addTo = (set: Set<string>, values: Iterable<string | undefined>) => {
    for (const value of values) {
      if (value === undefined || value.length < MIN_SECRET) continue;
      set.add(value);
      const escaped = JSON.stringify(value).slice(1, -1);
      if (escaped !== value) set.add(escaped);
    }
    index = undefined;
  };
  addTo(strong, [...secrets, ...strongEnvSecrets(env)]);
  addTo(loose, secretValues(env));
  const scrubber = ((text: string) => {
    index ??= buildIndex(strong, loose);
    return scrubWith(index, text);
  }) as Scrubber;
  scrubber.add = (values) => addTo(strong, values);
  return scrubber;
}

/** One-shot scrub of `text` with the given strong secrets (see createScrubber). */
export function scrub(text: string, secrets: Iterable<string | undefined> = []): string {
  return createScrubber(secrets)(text);
}

/**
 * Scrubs, then cuts to `max` characters (whitespace runs made one space). In this order, so a cut
 * can never leave the start of a secret the scrubber would no longer recognise.
 */
export function scrubAndCut(text: string, max: number, scrubber: (text: string) => string): string {
  // Bounded work for a huge body: only the start is ever shown.
  const head = text.length > max * 4 + 4096 ? text.slice(0, max * 4 + 4096) : text;
  const flat = scrubber(head).replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** Values of secret-named environment variables (whole-value redaction). */
export function secretValues(env: Readonly<Record<string, string | undefined>>): string[] {
  return Object.entries(env)
    .filter(([name, value]) => SECRET_NAME.test(name) && value !== undefined && value.length >= MIN_SECRET)
    .map(([, value]) => value as string);
}

/** The project's secret settings and the Redis password: redacted whole and in part. */
function strongEnvSecrets(env: Readonly<Record<string, string | undefined>>): string[] {
  const values: (string | undefined)[] = SECRET_SETTINGS.map((name) => env[name]);
  const redisUrl = env.REDIS_URL;
  if (redisUrl !== undefined) values.push(...urlCredentials(redisUrl));
  return values.filter((v): v is string => v !== undefined);
}

/** The user and password of a URL (also of one that does not parse), decoded and as written. */
export function urlCredentials(url: string): string[] {
  const userinfo = /\/\/([^/@\s]*)@/.exec(url)?.[1] ?? /^[a-z][a-z0-9+.-]*:([^/@\s]*)@/i.exec(url)?.[1];
  if (userinfo === undefined) return [];
  const out: string[] = [];
  for (const part of [userinfo, ...userinfo.split(":")]) {
    if (part === "") continue;
    out.push(part);
    try {
      out.push(decodeURIComponent(part));
    } catch {
      // a stray % is kept as written
    }
  }
  return out;
}

/** The tokens of a policy file's accounts, for a scrubber. */
export function accountTokens(config: {
  accounts: ReadonlyMap<string, { token: string | undefined }>;
}): string[] {
  return [...config.accounts.values()].flatMap((account) => (account.token ? [account.token] : []));
}

/**
 * Redacts bearer tokens, secret-named environment variables, and `extra` values (the tokens of the
 * policy file's accounts, whatever their variables are called).
 */
export function redactSecrets(
  text: string,
  env: Readonly<Record<string, string | undefined>>,
  extra: Iterable<string | undefined> = [],
): string {
  return createScrubber(extra, env)(text);
}

interface Index {
  /** Whole values, longest first. */
  readonly whole: readonly string[];
  /** Every FRAGMENT-long run of a strong secret. */
  readonly fragments: ReadonlySet<string>;
}

function buildIndex(strong: ReadonlySet<string>, loose: ReadonlySet<string>): Index {
  const whole = [...new Set([...strong, ...loose])].sort((a, b) => b.length - a.length);
  const fragments = new Set<string>();
  for (const value of strong) {
    for (let i = 0; i + FRAGMENT <= value.length; i++) fragments.add(value.slice(i, i + FRAGMENT));
  }
  return { whole, fragments };
}

function scrubWith(index: Index, text: string): string {
  let out = text;
  for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement);
  for (const value of index.whole) if (out.includes(value)) out = out.split(value).join(REDACTED);
  if (index.fragments.size === 0 || out.length < FRAGMENT) return out;
  // Mark every character covered by a run of a secret, then replace each marked stretch once.
  let result = "";
  let copied = 0;
  let coveredUntil = -1;
  let start = -1;
  for (let i = 0; i + FRAGMENT <= out.length; i++) {
    if (!index.fragments.has(out.slice(i, i + FRAGMENT))) continue;
    if (i > coveredUntil) {
      if (start >= 0) {
        result += out.slice(copied, start) + REDACTED;
        copied = coveredUntil;
      }
      start = i;
    }
    coveredUntil = i + FRAGMENT;
  }
  if (start >= 0) {
    result += out.slice(copied, start) + REDACTED;
    copied = coveredUntil;
  }
  return result + out.slice(copied);
}
