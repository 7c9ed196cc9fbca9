import { createHmac, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import { RotatorError } from "../core/errors.js";
import { INVITE_LINK_FORM, isInviteLink } from "../core/invite-link.js";
import type { PublishInput, RotationMessage } from "../core/interfaces.js";

const nonEmpty = z.string().min(1);

/**
 * The published message as the contract's message table defines it. Every named field is checked;
 * an unknown field is accepted and dropped, because the contract welcomes extra message fields: a
 * newer rotator may add one, and an older subscriber must go on reading its messages. A v2
 * signature covers every field, unknown ones too, so verify the decoded fields
 * ({@link decodeMessage}), not the parsed message. What this project publishes is exactly the named
 * fields ({@link serializeMessage} writes nothing else).
 */
export const rotationMessageSchema = z.object({
  event: z.literal("invite_link.rotated"),
  schema: z.literal(1),
  rotation_id: nonEmpty,
  group_id: nonEmpty,
  invite_link: z.string().refine(isInviteLink, `invite_link must be ${INVITE_LINK_FORM}`),
  // YYYY-MM-DDTHH:mm:ss.sssZ: UTC, exactly three fraction digits.
  rotated_at: z.iso.datetime({ precision: 3 }).refine(isRealInstant, "not a real instant"),
  sequence: z.int().positive(),
  policy: z.string().nullable(),
  account: z.string(),
  // The contract lets `trigger` gain values: a subscriber accepts one it does not know.
  trigger: z.string().min(1),
  signature: z
    .string()
    .regex(/^v[12]=[0-9a-f]{64}$/, "signature must be v2= (or v1=) and 64 lowercase hex digits")
    .optional(),
});

/** The message as the schema infers it; assignable to {@link RotationMessage}. */
export type ParsedRotationMessage = z.infer<typeof rotationMessageSchema>;

// Compile-time proof that the schema and the interface agree.
const _assignable: (m: ParsedRotationMessage) => RotationMessage = (m) => m;

// Rejects calendar-impossible stamps such as 2026-02-30 that the ISO pattern lets through.
function isRealInstant(text: string): boolean {
  const time = Date.parse(text);
  return Number.isFinite(time) && new Date(time).toISOString() === text;
}

/** A message before it is signed. */
export type UnsignedRotationMessage = Omit<RotationMessage, "signature">;

/** The message that publishes `input` as the group's `sequence`-th on its channel, not yet signed. */
export function rotationMessage(input: PublishInput, sequence: number): UnsignedRotationMessage {
  return {
    event: "invite_link.rotated",
    schema: 1,
    rotation_id: input.rotationId,
    group_id: input.groupId,
    invite_link: input.inviteLink,
    rotated_at: new Date(input.createdAt).toISOString(),
    sequence,
    policy: input.policy,
    account: input.account,
    trigger: input.trigger,
  };
}

/** An invalid message text (not JSON, or not the contract's shape). */
export class MessageError extends RotatorError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("E_MESSAGE_INVALID", message, options);
  }
}

/** The versions of `signature`: `v2=` is what the rotator writes; `v1=` is read only on request. */
export type SignatureVersion = "v1" | "v2";

/** What a signature check needs besides the message and the secret. */
export interface VerifyOptions {
  /** The channel C the message was read from: v2 covers it, so a message cannot be moved. */
  readonly channel: string;
  /**
   * Accept `v1=` signatures too (the dot-joined form of earlier versions, ambiguous for a group id
   * containing `.` and blind to `account`, `policy`, `trigger` and the channel). Only to read old
   * stream entries. Default false.
   */
  readonly acceptV1?: boolean;
}

/**
 * The bytes v2 signs: the message without `signature`, plus `channel`, as JSON with keys sorted by
 * code point at every level, no whitespace, strings as JSON.stringify writes them. Python's
 * `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` writes the same
 * text. Every field is covered, extra ones too, so no field can be changed, added or re-split.
 */
export function canonicalPayload(fields: object, channel: string): string {
  const { signature: _signature, ...rest } = fields as Record<string, unknown>;
  return canonicalJson({ ...rest, channel });
}

/** `v2=` + lowercase hex HMAC-SHA256 of {@link canonicalPayload}. */
export function signMessage(msg: object, secret: string, channel: string): string {
  return `v2=${hmacHex(secret, canonicalPayload(msg, channel))}`;
}

/** The v1 signed bytes: `rotation_id.group_id.invite_link.rotated_at.sequence` (legacy, ambiguous). */
export function signaturePayloadV1(msg: UnsignedRotationMessage): string {
  return [msg.rotation_id, msg.group_id, msg.invite_link, msg.rotated_at, String(msg.sequence)].join(".");
}

/** `v1=` + lowercase hex HMAC-SHA256 of {@link signaturePayloadV1}. Only to read or test old entries. */
export function signMessageV1(msg: UnsignedRotationMessage, secret: string): string {
  return `v1=${hmacHex(secret, signaturePayloadV1(msg))}`;
}

/**
 * True when the message carries a valid signature for this secret and channel (constant-time
 * compare). Pass the message as it was decoded (every field, {@link decodeMessage}'s `fields`), so
 * fields this version does not know are covered too. A `v1=` signature counts only with
 * `acceptV1`.
 */
export function verifySignature(msg: object, secret: string, options: VerifyOptions): boolean {
  const fields = msg as Record<string, unknown>;
  const signature = fields.signature;
  if (typeof signature !== "string") return false;
  let expected: string;
  if (signature.startsWith("v2=")) {
    expected = signMessage(fields, secret, options.channel);
  } else if (signature.startsWith("v1=") && options.acceptV1 === true) {
    const parsed = rotationMessageSchema.safeParse(fields);
    if (!parsed.success) return false;
    expected = signMessageV1(parsed.data, secret);
  } else {
    return false;
  }
  const a = Buffer.from(expected, "utf8");
  const b = Buffer.from(signature, "utf8");
  return a.length === b.length && timingSafeEqual(a, b);
}

function hmacHex(secret: string, payload: string): string {
  return createHmac("sha256", secret).update(payload, "utf8").digest("hex");
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v ?? null)).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record)
      .filter((k) => record[k] !== undefined)
      .sort(byCodePoint);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(record[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

// Sort by Unicode code point as Python does, not by UTF-16 unit (they differ above U+FFFF).
function byCodePoint(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/**
 * The message as JSON with a stable field order (the contract table's, signature last), so the same
 * message always serializes to the same bytes.
 */
export function serializeMessage(msg: RotationMessage): string {
  const ordered: RotationMessage = {
    event: msg.event,
    schema: msg.schema,
    rotation_id: msg.rotation_id,
    group_id: msg.group_id,
    invite_link: msg.invite_link,
    rotated_at: msg.rotated_at,
    sequence: msg.sequence,
    policy: msg.policy,
    account: msg.account,
    trigger: msg.trigger,
    ...(msg.signature === undefined ? {} : { signature: msg.signature }),
  };
  return JSON.stringify(ordered);
}

/**
 * Parses and validates a message text (unknown fields dropped); throws {@link MessageError} naming
 * every bad field.
 */
export function parseMessage(text: string): RotationMessage {
  return decodeMessage(text).message;
}

/**
 * Like {@link parseMessage}, and also returns every field of the text as decoded (unknown ones
 * included): what {@link verifySignature} needs, since v2 covers every field.
 */
export function decodeMessage(text: string): { message: RotationMessage; fields: Record<string, unknown> } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new MessageError("invalid rotation message: not JSON", { cause: error });
  }
  const result = rotationMessageSchema.safeParse(value);
  if (!result.success) {
    const issues = result.error.issues.map((i) => `${i.path.join(".") || "(message)"}: ${i.message}`);
    throw new MessageError(`invalid rotation message: ${issues.join("; ")}`, { cause: result.error });
  }
  return { message: result.data, fields: value as Record<string, unknown> };
}
