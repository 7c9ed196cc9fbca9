import { createHmac, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import { RotatorError } from "../core/errors.js";
import type { RotationMessage } from "../core/interfaces.js";

/** Every invite link the contract allows starts with this. */
export const INVITE_LINK_PREFIX = "https://chat.whatsapp.com/";

const nonEmpty = z.string().min(1);

/**
 * The published message as the contract's message table defines it. Every named field is checked;
 * an unknown field is accepted and dropped, because the contract welcomes extra message fields: a
 * newer rotator may add one, and an older subscriber must go on reading its messages. The signature
 * covers only named fields, so dropping the rest never breaks a verification. What this project
 * publishes is exactly the named fields ({@link serializeMessage} writes nothing else).
 */
export const rotationMessageSchema = z.object({
  event: z.literal("invite_link.rotated"),
  schema: z.literal(1),
  rotation_id: nonEmpty,
  group_id: nonEmpty,
  invite_link: z
    .string()
    .startsWith(INVITE_LINK_PREFIX)
    .refine((link) => link.length > INVITE_LINK_PREFIX.length, "invite link has no code"),
  // YYYY-MM-DDTHH:mm:ss.sssZ: UTC, exactly three fraction digits.
  rotated_at: z.iso.datetime({ precision: 3 }).refine(isRealInstant, "not a real instant"),
  sequence: z.int().positive(),
  policy: z.string().nullable(),
  account: z.string(),
  trigger: z.enum(["schedule", "manual", "catch-up"]),
  signature: z
    .string()
    .regex(/^v1=[0-9a-f]{64}$/, "signature must be v1= and 64 lowercase hex digits")
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

/** An invalid message text (not JSON, or not the contract's shape). */
export class MessageError extends RotatorError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("E_MESSAGE_INVALID", message, options);
  }
}

/** The signed bytes: `rotation_id.group_id.invite_link.rotated_at.sequence`. */
export function signaturePayload(msg: UnsignedRotationMessage): string {
  return [msg.rotation_id, msg.group_id, msg.invite_link, msg.rotated_at, String(msg.sequence)].join(".");
}

/** `v1=` + lowercase hex HMAC-SHA256 of the signature payload. */
export function signMessage(msg: UnsignedRotationMessage, secret: string): string {
  return `v1=${createHmac("sha256", secret).update(signaturePayload(msg), "utf8").digest("hex")}`;
}

/** True when the message carries a valid signature for this secret (constant-time compare). */
export function verifySignature(msg: RotationMessage, secret: string): boolean {
  if (typeof msg.signature !== "string") return false;
  const expected = Buffer.from(signMessage(msg, secret), "utf8");
  const actual = Buffer.from(msg.signature, "utf8");
  return expected.length === actual.length && timingSafeEqual(expected, actual);
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
  return result.data;
}
