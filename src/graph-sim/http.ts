import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Fault } from "./faults.js";

/** Small HTTP helpers of the Graph simulator: the call log entry, Graph-shaped errors, sending, reading. */

const MAX_REQUEST_BODY = 64 * 1024;

/** One Graph request as the simulator saw it. Never holds the token. */
export interface SimCall {
  method: string;
  /** Raw path and query as sent (still percent-encoded). */
  path: string;
  groupId?: string;
  phoneNumberId?: string;
  account?: string;
  tokenOk: boolean;
  headers: { "user-agent"?: string; "content-type"?: string; accept?: string };
  /** Parsed JSON body, the raw text when not JSON, undefined when empty. */
  body?: unknown;
  at: number;
  /** Undefined while unanswered (a hang), 0 for a reset. */
  status?: number;
  fault?: FaultKindName;
  /** Refused (131208) because the phone number went over its hidden limit. */
  limited?: true;
}

type FaultKindName = Fault["kind"];

export type Reply = (status: number, body: unknown, headers?: Record<string, string>) => void;

export interface GraphErrorBody {
  error: Record<string, unknown> & { message: string; code: number };
}

export function graphError(code: number, message: string, subcode?: number): GraphErrorBody {
  return {
    error: {
      message,
      type: "OAuthException",
      code,
      ...(subcode !== undefined && { error_subcode: subcode }),
      fbtrace_id: randomBytes(9).toString("base64url"),
    },
  };
}

export function groupUnknown(): GraphErrorBody {
  const body = graphError(131041, "Group not found");
  body.error.error_data = {
    messaging_product: "whatsapp",
    details: "The group does not exist or the number is not a member",
  };
  return body;
}

/** 131208: too many group operations from this phone number (Graph answers it with HTTP 429). */
export function groupRateLimited(): GraphErrorBody {
  const body = graphError(131208, "Rate limit hit");
  body.error.error_data = {
    messaging_product: "whatsapp",
    details: "Too many group operations from this phone number",
  };
  return body;
}

export const HTML_502 =
  "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>";

export function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  sendText(res, status, "application/json; charset=UTF-8", JSON.stringify(body), headers);
}

export function sendText(
  res: ServerResponse,
  status: number,
  contentType: string | undefined,
  text: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  const body = Buffer.from(text, "utf8");
  res.writeHead(status, {
    ...headers,
    ...(contentType && body.length > 0 && { "content-type": contentType }),
    "content-length": String(body.length),
  });
  res.end(body);
}

export async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size <= MAX_REQUEST_BODY) chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

export function parseJson(text: string): unknown {
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

export function decodeSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

export function pickHeaders(req: IncomingMessage): SimCall["headers"] {
  const headers: SimCall["headers"] = {};
  const { "user-agent": userAgent, "content-type": contentType, accept } = req.headers;
  if (userAgent !== undefined) headers["user-agent"] = userAgent;
  if (contentType !== undefined) headers["content-type"] = contentType;
  if (accept !== undefined) headers.accept = accept;
  return headers;
}
