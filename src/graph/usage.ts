/**
 * Graph's rate-limit headers: `Retry-After` (seconds or HTTP-date; not documented by Meta but
 * honoured when it comes), `X-App-Usage` and `X-Business-Use-Case-Usage` (percentages of the
 * rolling allowance; `estimated_time_to_regain_access` is in MINUTES). All optional.
 */

/** Response headers as undici and node:http give them: lower-case names. */
export type ResponseHeaders = Readonly<Record<string, string | string[] | undefined>>;

/** The usage headers of one response, parsed; absent when Graph did not send them. */
export interface GraphUsage {
  /** `X-App-Usage`: `{call_count, total_cputime, total_time}` percentages. */
  appUsage?: Record<string, unknown>;
  /** `X-Business-Use-Case-Usage`: `{<business id>: [{type, call_count, ..., estimated_time_to_regain_access}]}`. */
  businessUseCase?: Record<string, unknown>;
}

export function headerValue(headers: ResponseHeaders | undefined, name: string): string | undefined {
  const value = headers?.[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

export function parseUsage(headers: ResponseHeaders | undefined): GraphUsage | undefined {
  const appUsage = jsonObject(headerValue(headers, "x-app-usage"));
  const businessUseCase = jsonObject(headerValue(headers, "x-business-use-case-usage"));
  if (!appUsage && !businessUseCase) return undefined;
  return { ...(appUsage && { appUsage }), ...(businessUseCase && { businessUseCase }) };
}

/**
 * How long Graph asks us to wait, in ms: the larger of `Retry-After` and the largest
 * `estimated_time_to_regain_access` (minutes) in `X-Business-Use-Case-Usage`. Undefined when neither says.
 */
export function retryAfterMs(headers: ResponseHeaders | undefined, now = Date.now()): number | undefined {
  const found: number[] = [];
  const retryAfter = headerValue(headers, "retry-after")?.trim();
  if (retryAfter) {
    if (/^\d+(\.\d+)?$/.test(retryAfter)) found.push(Number(retryAfter) * 1000);
    else {
      const at = Date.parse(retryAfter);
      if (Number.isFinite(at)) found.push(Math.max(0, at - now));
    }
  }
  const buc = jsonObject(headerValue(headers, "x-business-use-case-usage"));
  for (const entries of Object.values(buc ?? {})) {
    for (const entry of Array.isArray(entries) ? entries : [entries]) {
      const minutes = Number(
        (entry as { estimated_time_to_regain_access?: unknown } | null)?.estimated_time_to_regain_access,
      );
      if (Number.isFinite(minutes) && minutes > 0) found.push(minutes * 60_000);
    }
  }
  return found.length > 0 ? Math.round(Math.max(...found)) : undefined;
}

function jsonObject(text: string | undefined): Record<string, unknown> | undefined {
  if (!text) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
