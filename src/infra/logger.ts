import { pino, type Logger, type DestinationStream } from "pino";
import { printable } from "../core/printable.js";
import { createScrubber } from "./redact.js";

export type { Logger };

/**
 * Paths pino replaces with "[redacted]" wherever they appear in a log line's objects. Secrets are
 * redacted here, once, not at each call site.
 */
export const REDACT_PATHS = [
  "token",
  "*.token",
  "accessToken",
  "*.accessToken",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "*.headers.authorization",
  "secret",
  "*.secret",
  "signingSecret",
  "*.signingSecret",
  "ROTATOR_SIGNING_SECRET",
  "WHATSAPP_ACCESS_TOKEN",
  "env",
  "*.env",
];

/**
 * The one root logger: JSON lines on stdout (or the given stream). Every line passes `scrub` (the
 * process's scrubber, which learns the account tokens) as it is written, so text from outside that
 * reached any field, at any level, cannot carry a secret out; without one, the patterns still apply
 * (`Bearer …`, `access_token=…`, URL userinfo).
 */
export function createLogger(
  level: string,
  destination?: DestinationStream,
  scrub: (line: string) => string = createScrubber(),
): Logger {
  return pino(
    {
      // Scrubbed, and the control and bidi characters JSON leaves raw escaped (still the same JSON).
      hooks: { streamWrite: (line) => printable(scrub(line), { keepNewlines: true }) },
      name: "wa-invite-rotator",
      level,
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
