import { z } from "zod";
import { EnvironmentError } from "../core/errors.js";
import { parseDuration } from "../core/durations.js";

/**
 * The process environment, parsed once at the edge. Nothing below the composition root reads
 * `process.env`; it receives a frozen `Settings`.
 */
/** A duration; with `max` (ms, written as `maxText`), one no longer than that. */
const durationString = (fallback: string, max?: { ms: number; text: string }) =>
  z
    .string()
    .default(fallback)
    .transform((text, ctx) => {
      const ms = parseDuration(text);
      if (ms === undefined) {
        ctx.addIssue({
          code: "custom",
          message: `not a duration (write 500ms, 30s, 15m, 2h, 1d or 1h30m): ${text}`,
        });
        return z.NEVER;
      }
      if (max !== undefined && ms > max.ms) {
        ctx.addIssue({ code: "custom", message: `at most ${max.text}, got ${text}` });
        return z.NEVER;
      }
      return ms;
    });

const intString = (fallback: number, min: number, max: number) =>
  z
    .string()
    .default(String(fallback))
    .transform((text, ctx) => {
      const n = Number(text);
      if (!Number.isInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: "custom", message: `must be an integer from ${min} to ${max}, got ${text}` });
        return z.NEVER;
      }
      return n;
    });

/** `host:port,host:port,…` (IPv6 hosts in brackets): the seed nodes of a Cluster, or the Sentinels. */
const hostPortList = z
  .string()
  .optional()
  .transform((text, ctx) => {
    if (text === undefined) return undefined;
    const nodes: { host: string; port: number }[] = [];
    for (const item of text
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean)) {
      const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(item);
      const port = Number(match?.[3]);
      if (!match || port < 1 || port > 65535) {
        ctx.addIssue({ code: "custom", message: `not host:port: ${JSON.stringify(item.slice(0, 80))}` });
        return z.NEVER;
      }
      nodes.push({ host: match[1] ?? match[2]!, port });
    }
    if (nodes.length === 0) {
      ctx.addIssue({ code: "custom", message: "names no host:port" });
      return z.NEVER;
    }
    return nodes;
  });

/**
 * `redis[s]://[user[:password]@]host[:port][/db]`, checked once here so that a mistyped one is a
 * usage error (exit 2) before anything connects. No message repeats the value: it may hold a
 * password (`redis//:pw@host` is a classic). Kept as written; ioredis reads it.
 */
const redisUrl = z
  .string()
  .default("redis://127.0.0.1:6379")
  .superRefine((text, ctx) => {
    const problem = redisUrlProblem(text);
    if (problem)
      ctx.addIssue({
        code: "custom",
        message: `${problem} (the value is not shown: it may hold a password)`,
      });
  });

/** What is wrong with a REDIS_URL, in words that never quote it; undefined when it is fine. */
export function redisUrlProblem(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return "not a URL: write redis://host:port/db (rediss:// for TLS; user:password@ before the host)";
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:")
    return "the scheme must be redis:// or rediss://";
  if (url.hostname === "") return "names no host";
  if (url.port !== "" && Number(url.port) < 1) return "the port must be from 1 to 65535";
  const db = url.pathname.replace(/^\//, "");
  if (db !== "" && !/^\d{1,9}$/.test(db))
    return "the database index (the path) must be a whole number, such as /0";
  return undefined;
}

export const settingsSchema = z.object({
  REDIS_URL: redisUrl,
  /** Cluster mode: seed nodes (credentials and TLS still come from REDIS_URL). */
  REDIS_CLUSTER_NODES: hostPortList,
  /** Sentinel mode: the Sentinels, and the name of the master they watch. */
  REDIS_SENTINELS: hostPortList,
  REDIS_SENTINEL_MASTER: z.string().regex(/^\S+$/, "a master name without whitespace").optional(),
  ROTATOR_CONFIG: z.string().default("config/rotation.yaml"),
  ROTATOR_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.\-{}]+$/, "letters, digits, _ . - { } only")
    .default("wa-rotator"),
  GRAPH_API_BASE_URL: z.url().default("https://graph.facebook.com"),
  GRAPH_API_VERSION: z
    .string()
    .regex(/^v\d+\.\d+$/, "a Graph API version such as v23.0")
    .default("v23.0"),
  ROTATOR_SIGNING_SECRET: z.string().min(1).optional(),
  ROTATOR_CONCURRENCY: intString(32, 1, 1000),
  HEALTH_PORT: intString(8080, 0, 65535),
  /** Address the health server binds: 0.0.0.0 (every IPv4 interface), 127.0.0.1, ::, a pod IP. */
  HEALTH_HOST: z.string().min(1).default("0.0.0.0"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  /** How long shutdown waits for in-flight rotations before it forces the exit. */
  ROTATOR_SHUTDOWN_TIMEOUT: durationString("30s"),
  /** Graph call timeouts. */
  GRAPH_CONNECT_TIMEOUT: durationString("5s"),
  GRAPH_REQUEST_TIMEOUT: durationString("15s"),
  /**
   * How long a DELETE or POST that failed without a clear answer may still be carried out by Graph:
   * the next rotation of its group waits this long before it reads the link back. Keep it at least
   * GRAPH_REQUEST_TIMEOUT.
   */
  ROTATOR_UNSURE_SETTLE: durationString("15s"),
  /**
   * Crash recovery: a killed worker's rotation is taken over after at most job lock + stalled
   * check interval; the group lock (heartbeat every third of it) expires meanwhile. Lower them in
   * tests; keep the group lock above the Graph timeouts' granularity, the job lock above it.
   */
  ROTATOR_JOB_LOCK: durationString("20s"),
  ROTATOR_STALLED_INTERVAL: durationString("10s"),
  ROTATOR_GROUP_LOCK_TTL: durationString("15s"),
  /** How often failing accounts are probed (read-only) and groups without link re-driven. */
  ROTATOR_ACCOUNT_PROBE_INTERVAL: durationString("60s"),
  /** First throttle back-off when Graph names no wait; each further throttle waits 4× longer. */
  ROTATOR_THROTTLE_BASE: durationString("1s"),
  ROTATOR_THROTTLE_MAX: durationString("15m"),
  /** The Meta app secret: verifies `X-Hub-Signature-256` of webhook deliveries. Never logged. */
  WHATSAPP_APP_SECRET: z.string().min(1).optional(),
  /** Answers Meta's webhook verification handshake. Never logged. */
  WHATSAPP_VERIFY_TOKEN: z.string().min(1).optional(),
  /** The `gateway` command: its port and interface, and its public origin (for signed join URLs). */
  GATEWAY_PORT: intString(8090, 0, 65535),
  GATEWAY_HOST: z.string().default("0.0.0.0"),
  GATEWAY_PUBLIC_URL: z
    .url({ protocol: /^https?$/ })
    .default("http://localhost:8090")
    .transform((url) => url.replace(/\/+$/, "")),
  /** HMAC key of signed join URLs (`link`); without it the gateway admits no signed URL. */
  ROTATOR_LINK_SECRET: z.string().min(16, "use at least 16 characters").optional(),
  /** Visits per client on `/join`: `N/duration` (e.g. `60/1m`), or `0` for no limit. */
  GATEWAY_RATE_LIMIT: z
    .string()
    .default("60/1m")
    .refine((text) => text.trim() === "0" || /^\d+\/\d+(\.\d+)?(ms|s|m|h|d)$/.test(text.trim()), {
      message: "write N/duration, such as 60/1m, or 0 for no limit",
    }),
  /** Proxies in front of the gateway whose X-Forwarded-For it trusts for the client address. */
  GATEWAY_TRUSTED_PROXIES: intString(0, 0, 10),
  /**
   * How long a visit may wait for a rotating group's new link before 503: a bounded moment (a
   * rotation takes seconds; a visitor and a proxy in front of the gateway wait no longer).
   */
  GATEWAY_ROTATION_WAIT: durationString("2s", { ms: 10_000, text: "10s" }),
});

export type Settings = Readonly<z.infer<typeof settingsSchema>> & {
  /** The environment itself, for resolving account tokens by env var name. */
  readonly env: Readonly<Record<string, string | undefined>>;
};

/** Parses the environment. Empty strings count as unset. Throws EnvironmentError (exit 2). */
export function loadSettings(env: Record<string, string | undefined> = process.env): Settings {
  const cleaned: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== "") cleaned[key] = value;
  }
  const result = settingsSchema
    .superRefine((s, ctx) => {
      if (s.REDIS_CLUSTER_NODES && (s.REDIS_SENTINELS || s.REDIS_SENTINEL_MASTER)) {
        ctx.addIssue({
          code: "custom",
          path: ["REDIS_CLUSTER_NODES"],
          message: "set either REDIS_CLUSTER_NODES (Cluster) or REDIS_SENTINELS (Sentinel), not both",
        });
      }
      if (!s.REDIS_SENTINELS !== !s.REDIS_SENTINEL_MASTER) {
        ctx.addIssue({
          code: "custom",
          path: [s.REDIS_SENTINELS ? "REDIS_SENTINEL_MASTER" : "REDIS_SENTINELS"],
          message: "Sentinel mode needs both REDIS_SENTINELS and REDIS_SENTINEL_MASTER",
        });
      }
    })
    .safeParse(cleaned);
  if (!result.success) {
    throw new EnvironmentError(
      result.error.issues.map((issue) => ({ path: issue.path.join("."), message: issue.message })),
    );
  }
  return Object.freeze({ ...result.data, env: Object.freeze({ ...env }) });
}
