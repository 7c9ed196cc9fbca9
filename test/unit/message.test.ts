import { describe, expect, it } from "vitest";
import type { RotationMessage } from "../../src/core/interfaces.js";
import {
  MessageError,
  parseMessage,
  rotationMessageSchema,
  serializeMessage,
  signaturePayload,
  signMessage,
  verifySignature,
} from "../../src/publish/message.js";

const SECRET = "test-secret";
// Derived independently with:
// printf '%s' 'rot-1.120363025246125486.https://chat.whatsapp.com/AbC123.2026-01-02T03:04:05.678Z.7' \
//   | openssl dgst -sha256 -hmac 'test-secret'
const KNOWN_SIGNATURE = "v1=b810b7f7820498bacdd968cd6faf82a85014a17e8d57a3fa7ab7785b6fbee8f4";

const base: RotationMessage = {
  event: "invite_link.rotated",
  schema: 1,
  rotation_id: "rot-1",
  group_id: "120363025246125486",
  invite_link: "https://chat.whatsapp.com/AbC123",
  rotated_at: "2026-01-02T03:04:05.678Z",
  sequence: 7,
  policy: "nightly",
  account: "default",
  trigger: "schedule",
};

describe("rotationMessageSchema", () => {
  it("accepts a valid message, signed or not, with a null policy", () => {
    expect(rotationMessageSchema.parse(base)).toEqual(base);
    expect(rotationMessageSchema.safeParse({ ...base, signature: KNOWN_SIGNATURE }).success).toBe(true);
    expect(rotationMessageSchema.safeParse({ ...base, policy: null, trigger: "manual" }).success).toBe(true);
    expect(rotationMessageSchema.safeParse({ ...base, trigger: "catch-up" }).success).toBe(true);
  });

  const wrong: [string, Record<string, unknown>][] = [
    ["event", { event: "invite_link.created" }],
    ["schema", { schema: 2 }],
    ["schema as string", { schema: "1" }],
    ["rotation_id empty", { rotation_id: "" }],
    ["rotation_id missing", { rotation_id: undefined }],
    ["group_id empty", { group_id: "" }],
    ["group_id number", { group_id: 12036302 }],
    ["invite_link other host", { invite_link: "https://example.com/AbC123" }],
    ["invite_link http", { invite_link: "http://chat.whatsapp.com/AbC123" }],
    ["invite_link without code", { invite_link: "https://chat.whatsapp.com/" }],
    ["rotated_at without ms", { rotated_at: "2026-01-02T03:04:05Z" }],
    ["rotated_at with offset", { rotated_at: "2026-01-02T03:04:05.678+01:00" }],
    ["rotated_at not a date", { rotated_at: "yesterday" }],
    ["rotated_at impossible day", { rotated_at: "2026-02-30T03:04:05.678Z" }],
    ["sequence zero", { sequence: 0 }],
    ["sequence fractional", { sequence: 1.5 }],
    ["sequence string", { sequence: "7" }],
    ["policy number", { policy: 3 }],
    ["policy missing", { policy: undefined }],
    ["account missing", { account: undefined }],
    ["trigger", { trigger: "cron" }],
    ["signature uppercase hex", { signature: KNOWN_SIGNATURE.toUpperCase().replace("V1=", "v1=") }],
    ["signature short", { signature: "v1=abc" }],
    ["signature without v1=", { signature: KNOWN_SIGNATURE.slice(3) }],
  ];
  it("accepts and drops unknown fields (the contract welcomes extra ones)", () => {
    const extended = { ...base, signature: KNOWN_SIGNATURE, priority: "high", meta: { region: "eu" } };
    expect(rotationMessageSchema.parse(extended)).toEqual({ ...base, signature: KNOWN_SIGNATURE });
    // A bad named field is still an error when unknown ones come with it.
    expect(rotationMessageSchema.safeParse({ ...extended, sequence: 0 }).success).toBe(false);
  });

  it.each(wrong)("rejects %s", (_name, patch) => {
    const candidate: Record<string, unknown> = { ...base, ...patch };
    for (const [key, value] of Object.entries(patch)) if (value === undefined) delete candidate[key];
    expect(rotationMessageSchema.safeParse(candidate).success).toBe(false);
  });
});

describe("signature", () => {
  it("signs the dot-joined payload with HMAC-SHA256 (known vector)", () => {
    expect(signaturePayload(base)).toBe(
      "rot-1.120363025246125486.https://chat.whatsapp.com/AbC123.2026-01-02T03:04:05.678Z.7",
    );
    expect(signMessage(base, SECRET)).toBe(KNOWN_SIGNATURE);
  });

  it("verifies a valid signature and rejects a tampered field, a wrong secret or none", () => {
    const signed = { ...base, signature: KNOWN_SIGNATURE };
    expect(verifySignature(signed, SECRET)).toBe(true);
    expect(verifySignature({ ...signed, invite_link: "https://chat.whatsapp.com/Evil" }, SECRET)).toBe(false);
    expect(verifySignature({ ...signed, sequence: 8 }, SECRET)).toBe(false);
    expect(verifySignature({ ...signed, group_id: "other" }, SECRET)).toBe(false);
    expect(verifySignature({ ...signed, rotated_at: "2026-01-02T03:04:05.679Z" }, SECRET)).toBe(false);
    expect(verifySignature({ ...signed, rotation_id: "rot-2" }, SECRET)).toBe(false);
    expect(verifySignature(signed, "other-secret")).toBe(false);
    expect(verifySignature(base, SECRET)).toBe(false);
    expect(verifySignature({ ...signed, signature: "v1=00" }, SECRET)).toBe(false);
  });
});

describe("serializeMessage / parseMessage", () => {
  it("writes the contract's field order, signature last, whatever the input order", () => {
    const shuffled = Object.fromEntries(
      Object.entries({ ...base, signature: KNOWN_SIGNATURE }).reverse(),
    ) as unknown as RotationMessage;
    const text = serializeMessage(shuffled);
    expect(Object.keys(JSON.parse(text) as object)).toEqual([
      "event",
      "schema",
      "rotation_id",
      "group_id",
      "invite_link",
      "rotated_at",
      "sequence",
      "policy",
      "account",
      "trigger",
      "signature",
    ]);
    expect(text).toBe(serializeMessage({ ...base, signature: KNOWN_SIGNATURE }));
    expect(serializeMessage(base)).not.toContain("signature");
  });

  it("parses a message with extra fields, still verifies its signature, and never writes them back", () => {
    const text = JSON.stringify({ ...base, signature: KNOWN_SIGNATURE, added_in_v2: 42 });
    const parsed = parseMessage(text);
    expect(parsed).toEqual({ ...base, signature: KNOWN_SIGNATURE });
    expect(verifySignature(parsed, SECRET)).toBe(true);
    expect(serializeMessage({ ...parsed, added_in_v2: 42 } as RotationMessage)).not.toContain("added_in_v2");
  });

  it("round-trips and rejects non-JSON or invalid messages with a clear error", () => {
    expect(parseMessage(serializeMessage(base))).toEqual(base);
    expect(() => parseMessage("{nope")).toThrow(MessageError);
    expect(() => parseMessage("{nope")).toThrow(/not JSON/);
    const bad = JSON.stringify({ ...base, sequence: 0, trigger: "cron" });
    expect(() => parseMessage(bad)).toThrow(/sequence: .*; trigger: /);
    try {
      parseMessage(bad);
    } catch (error) {
      expect((error as MessageError).code).toBe("E_MESSAGE_INVALID");
    }
  });
});
