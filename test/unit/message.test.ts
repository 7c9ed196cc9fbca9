import { describe, expect, it } from "vitest";
import type { RotationMessage } from "../../src/core/interfaces.js";
import {
  canonicalPayload,
  decodeMessage,
  MessageError,
  parseMessage,
  rotationMessageSchema,
  serializeMessage,
  signaturePayloadV1,
  signMessage,
  signMessageV1,
  verifySignature,
} from "../../src/publish/message.js";

const SECRET = "test-secret";
// Derived independently with:
// printf '%s' 'rot-1.120363025246125486.https://chat.whatsapp.com/AbC123dEfG.2026-01-02T03:04:05.678Z.7' \
//   | openssl dgst -sha256 -hmac 'test-secret'
const KNOWN_SIGNATURE = "v1=76180bd09ec142104620501effe23e3c598f2e693c63028f52fe8061de2abdf0";

const base: RotationMessage = {
  event: "invite_link.rotated",
  schema: 1,
  rotation_id: "rot-1",
  group_id: "120363025246125486",
  invite_link: "https://chat.whatsapp.com/AbC123dEfG",
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
    expect(rotationMessageSchema.safeParse({ ...base, signature: `v2=${"0".repeat(64)}` }).success).toBe(
      true,
    );
    expect(rotationMessageSchema.safeParse({ ...base, policy: null, trigger: "manual" }).success).toBe(true);
    expect(rotationMessageSchema.safeParse({ ...base, trigger: "catch-up" }).success).toBe(true);
    // The contract: `trigger` may gain values, and subscribers accept those they do not know.
    expect(rotationMessageSchema.safeParse({ ...base, trigger: "reaction" }).success).toBe(true);
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
    ["invite_link http", { invite_link: "http://chat.whatsapp.com/AbC123dEfG" }],
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
    ["trigger empty", { trigger: "" }],
    ["trigger not a string", { trigger: 3 }],
    ["signature uppercase hex", { signature: KNOWN_SIGNATURE.toUpperCase().replace("V1=", "v1=") }],
    ["signature short", { signature: "v1=abc" }],
    ["signature without v1=", { signature: KNOWN_SIGNATURE.slice(3) }],
    ["signature of an unknown version", { signature: `v3=${KNOWN_SIGNATURE.slice(3)}` }],
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

describe("signature v2", () => {
  const CHANNEL = "whatsapp:invite-links";
  const dotted: RotationMessage = {
    ...base,
    group_id: "team.sales",
    invite_link: "https://chat.whatsapp.com/AbCdEfGh12345",
  };
  // Derived independently with:
  // printf '%s' '{"account":"default","channel":"whatsapp:invite-links","event":"invite_link.rotated",
  //   "group_id":"team.sales","invite_link":"https://chat.whatsapp.com/AbCdEfGh12345","policy":"nightly",
  //   "rotated_at":"2026-01-02T03:04:05.678Z","rotation_id":"rot-1","schema":1,"sequence":7,
  //   "trigger":"schedule"}' | openssl dgst -sha256 -hmac 'test-secret'      (one line, no spaces)
  const KNOWN_V2 = "v2=37339e9bf121b31412a6e597afa7527e0e2bbde06b913e5338c40b0d1c7700da";

  it("signs the canonical form: every field and the channel, keys sorted, no whitespace (known vector)", () => {
    expect(canonicalPayload(dotted, CHANNEL)).toBe(
      '{"account":"default","channel":"whatsapp:invite-links","event":"invite_link.rotated",' +
        '"group_id":"team.sales","invite_link":"https://chat.whatsapp.com/AbCdEfGh12345","policy":"nightly",' +
        '"rotated_at":"2026-01-02T03:04:05.678Z","rotation_id":"rot-1","schema":1,"sequence":7,"trigger":"schedule"}',
    );
    expect(signMessage(dotted, SECRET, CHANNEL)).toBe(KNOWN_V2);
    // The signature itself is never part of what is signed.
    expect(canonicalPayload({ ...dotted, signature: KNOWN_V2 }, CHANNEL)).toBe(
      canonicalPayload(dotted, CHANNEL),
    );
  });

  it("covers every field, the channel and extra fields: none can be changed, moved or re-split", () => {
    const signed = { ...dotted, signature: KNOWN_V2 };
    const opts = { channel: CHANNEL };
    expect(verifySignature(signed, SECRET, opts)).toBe(true);
    const changes: Partial<Record<keyof RotationMessage | "extra", unknown>>[] = [
      { invite_link: "https://chat.whatsapp.com/EvilEvilEvil1" },
      { sequence: 8 },
      { group_id: "sales", rotation_id: "rot-1.team" }, // the v1 re-split
      { rotated_at: "2026-01-02T03:04:05.679Z" },
      { policy: "other" },
      { policy: null },
      { account: "other" },
      { trigger: "manual" },
      { extra: 1 },
    ];
    for (const change of changes) expect(verifySignature({ ...signed, ...change }, SECRET, opts)).toBe(false);
    expect(verifySignature(signed, SECRET, { channel: "other:channel" })).toBe(false);
    expect(verifySignature(signed, "other-secret", opts)).toBe(false);
    expect(verifySignature(dotted, SECRET, opts)).toBe(false);
    expect(verifySignature({ ...signed, signature: "v2=00" }, SECRET, opts)).toBe(false);
  });

  it("covers fields this version does not know, when given the decoded fields", () => {
    const extended = { ...dotted, expires_at: "2026-02-01T00:00:00.000Z", meta: { b: 1, a: [2, "x"] } };
    const text = JSON.stringify({ ...extended, signature: signMessage(extended, SECRET, CHANNEL) });
    const { message, fields } = decodeMessage(text);
    expect(verifySignature(fields, SECRET, { channel: CHANNEL })).toBe(true);
    expect(verifySignature({ ...fields, meta: { b: 2, a: [2, "x"] } }, SECRET, { channel: CHANNEL })).toBe(
      false,
    );
    // The parsed message dropped them, so it no longer carries what was signed.
    expect(verifySignature(message, SECRET, { channel: CHANNEL })).toBe(false);
  });

  it("sorts keys by code point, as Python's sort_keys does (astral before U+FFFD differs by UTF-16 unit)", () => {
    const payload = canonicalPayload({ "\u{1F600}": 1, "\uFFFD": 2 }, "c");
    expect(payload).toBe('{"channel":"c","\uFFFD":2,"\u{1F600}":1}');
  });

  it("reads v1 only when asked to", () => {
    // Derived independently with:
    // printf '%s' 'rot-1.120363025246125486.https://chat.whatsapp.com/AbC123dEfG.2026-01-02T03:04:05.678Z.7' \
    //   | openssl dgst -sha256 -hmac 'test-secret'
    expect(signaturePayloadV1(base)).toBe(
      "rot-1.120363025246125486.https://chat.whatsapp.com/AbC123dEfG.2026-01-02T03:04:05.678Z.7",
    );
    expect(signMessageV1(base, SECRET)).toBe(KNOWN_SIGNATURE);
    const v1 = { ...base, signature: KNOWN_SIGNATURE };
    expect(verifySignature(v1, SECRET, { channel: CHANNEL })).toBe(false);
    expect(verifySignature(v1, SECRET, { channel: CHANNEL, acceptV1: true })).toBe(true);
    expect(verifySignature({ ...v1, sequence: 8 }, SECRET, { channel: CHANNEL, acceptV1: true })).toBe(false);
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

  it("parses a message with extra fields, still verifies its v1 signature, and never writes them back", () => {
    const text = JSON.stringify({ ...base, signature: KNOWN_SIGNATURE, added_in_v2: 42 });
    const parsed = parseMessage(text);
    expect(parsed).toEqual({ ...base, signature: KNOWN_SIGNATURE });
    expect(verifySignature(parsed, SECRET, { channel: "c", acceptV1: true })).toBe(true);
    expect(serializeMessage({ ...parsed, added_in_v2: 42 } as RotationMessage)).not.toContain("added_in_v2");
  });

  it("round-trips and rejects non-JSON or invalid messages with a clear error", () => {
    expect(parseMessage(serializeMessage(base))).toEqual(base);
    expect(() => parseMessage("{nope")).toThrow(MessageError);
    expect(() => parseMessage("{nope")).toThrow(/not JSON/);
    const bad = JSON.stringify({ ...base, sequence: 0, trigger: "" });
    expect(() => parseMessage(bad)).toThrow(/sequence: .*; trigger: /);
    try {
      parseMessage(bad);
    } catch (error) {
      expect((error as MessageError).code).toBe("E_MESSAGE_INVALID");
    }
  });
});
