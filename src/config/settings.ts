import { z } from "zod";
import { ConfigError } from "../core/errors.js";
import { parseDuration } from "../core/durations.js";

/**
 * The process environment, parsed once at the edge. Nothing below the composition root reads
 * `process.env`; it receives a frozen `Settings`.
 */
const durationString = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((text, ctx) => {
      const ms = parseDuration(text);
      if (ms === undefined) {
        ctx.addIssue({
          code: "custom",
          message: `not a duration (write 500ms, 30s, 15m, 2h or 1d): ${text}`,
        });
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

export const settingsSchema = z.object({
  REDIS_URL: z.string().default("redis://127.0.0.1:6379"),
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
});

export type Settings = Readonly<z.infer<typeof settingsSchema>> & {
  /** The environment itself, for resolving account tokens by env var name. */
  readonly env: Readonly<Record<string, string | undefined>>;
};

/** Parses the environment. Empty strings count as unset. Throws ConfigError (exit 2). */
export function loadSettings(env: Record<string, string | undefined> = process.env): Settings {
  const cleaned: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== "") cleaned[key] = value;
  }
  const result = settingsSchema.safeParse(cleaned);
  if (!result.success) {
    throw new ConfigError(
      "environment",
      result.error.issues.map((issue) => ({ path: issue.path.join("."), message: issue.message })),
    );
  }
  return Object.freeze({ ...result.data, env: Object.freeze({ ...env }) });
}
