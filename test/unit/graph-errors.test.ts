import { describe, expect, it } from "vitest";
import { classifyGraphFailure } from "../../src/graph/classify.js";
import { GraphError, isGraphError, type GraphErrorCode } from "../../src/graph/errors.js";
import { parseDeleteResponse, parseGroupsPage, parseInviteLinkResponse } from "../../src/graph/response.js";
import type { FailureScope, RetryAction } from "../../src/core/interfaces.js";

const TOKEN = "EAAGsecretTOKENvalue1234567890";

function graphBody(code: number, extra: Record<string, unknown> = {}) {
  return {
    error: { message: `failure ${code}`, type: "OAuthException", code, fbtrace_id: "AbCdEf", ...extra },
  };
}

function classify(status: number, body: unknown, headers: Record<string, string> = {}) {
  return classifyGraphFailure({
    operation: "create-invite-link",
    groupId: "G1",
    account: "default",
    status,
    headers,
    body,
    secrets: [TOKEN],
  });
}

// The facts table, row by row: code → [error code, action, scope]. HTTP status is deliberately
// misleading (200) to prove the Graph code wins.
type Row = readonly [number, GraphErrorCode, RetryAction, FailureScope];
const TABLE: Row[] = [
  ...[1, 2, 131000, 131016, 131057].map((c): Row => [c, "GRAPH_TRANSIENT", "retry", "request"]),
  ...[4, 17, 32, 613, 80007, 80008, 130429].map((c): Row => [c, "GRAPH_THROTTLED", "throttle", "account"]),
  [131208, "GRAPH_THROTTLED", "throttle", "number"],
  [0, "GRAPH_AUTH", "stop", "account"],
  [190, "GRAPH_AUTH", "stop", "account"],
  ...[10, 200, 250, 299].map((c): Row => [c, "GRAPH_PERMISSION", "stop", "account"]),
  ...[100, 131008, 131009].map((c): Row => [c, "GRAPH_INVALID_REQUEST", "stop", "request"]),
  [131041, "GRAPH_GROUP_UNKNOWN", "stop", "group"],
  [131207, "GRAPH_GROUP_SUSPENDED", "stop", "group"],
  [131215, "GRAPH_NOT_ELIGIBLE", "stop", "number"],
  [368, "GRAPH_BLOCKED", "stop", "account"],
  [131031, "GRAPH_BLOCKED", "stop", "account"],
];

describe("classifyGraphFailure: the facts table", () => {
  it.each(TABLE)("code %i → %s / %s / %s", (code, errorCode, action, scope) => {
    for (const status of [400, 500, 200]) {
      const error = classify(status, graphBody(code));
      expect(error).toBeInstanceOf(GraphError);
      expect({
        code: error.code,
        action: error.action,
        scope: error.scope,
        graphCode: error.graphCode,
      }).toEqual({
        code: errorCode,
        action,
        scope,
        graphCode: code,
      });
      expect(error.status).toBe(status);
      expect(error.fbtraceId).toBe("AbCdEf");
    }
  });

  it("301 and 300 are not in the permission range", () => {
    expect(classify(400, graphBody(300)).code).toBe("GRAPH_UNKNOWN");
    expect(classify(400, graphBody(199)).code).toBe("GRAPH_UNKNOWN");
  });

  it("accepts a code sent as a numeric string", () => {
    expect(classify(400, graphBody("131041" as unknown as number)).code).toBe("GRAPH_GROUP_UNKNOWN");
  });
});

describe("classifyGraphFailure: unknown codes and odd bodies", () => {
  it("is_transient with an unknown code → retry", () => {
    const error = classify(400, graphBody(999999, { is_transient: true }));
    expect([error.code, error.action, error.scope, error.isTransient]).toEqual([
      "GRAPH_TRANSIENT",
      "retry",
      "request",
      true,
    ]);
  });

  it("unknown code: 5xx → retry, 429 → throttle/account, other 4xx → stop GRAPH_UNKNOWN", () => {
    expect(classify(503, graphBody(424242)).action).toBe("retry");
    const throttled = classify(429, graphBody(424242));
    expect([throttled.action, throttled.scope]).toEqual(["throttle", "account"]);
    const other = classify(404, graphBody(424242));
    expect([other.code, other.action, other.scope]).toEqual(["GRAPH_UNKNOWN", "stop", "request"]);
  });

  it("reads error_data as an object and as a JSON string", () => {
    const asObject = classify(
      400,
      graphBody(131041, { error_data: { messaging_product: "whatsapp", details: "not a member" } }),
    );
    const asString = classify(
      400,
      graphBody(131041, { error_data: JSON.stringify({ details: "not a member" }) }),
    );
    const asText = classify(400, graphBody(131041, { error_data: "plain words" }));
    for (const error of [asObject, asString]) {
      expect(error.code).toBe("GRAPH_GROUP_UNKNOWN");
      expect(error.message).toContain("not a member");
    }
    expect(asText.message).toContain("plain words");
  });

  it("takes a raw JSON string body and a subcode", () => {
    const error = classify(401, JSON.stringify(graphBody(190, { error_subcode: 463 })));
    expect([error.code, error.subcode]).toEqual(["GRAPH_AUTH", 463]);
  });

  it("HTML 502 from a proxy → GRAPH_TRANSIENT retry", () => {
    const html = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
    const error = classify(502, html);
    expect([error.code, error.action, error.status]).toEqual(["GRAPH_TRANSIENT", "retry", 502]);
    expect(error.message).toContain("HTML");
    expect(error.message).toContain("502 Bad Gateway");
  });

  it("empty, HTML and non-JSON bodies → retry whatever the status (a proxy answered); 429 → throttle", () => {
    for (const status of [500, 502, 503, 504]) {
      expect(classify(status, "").action).toBe("retry");
      expect(classify(status, undefined).action).toBe("retry");
      expect(classify(status, "upstream connect error").action).toBe("retry");
    }
    for (const status of [400, 401, 403, 404]) {
      for (const body of [
        "",
        undefined,
        "<html><head><title>403 Forbidden</title></head></html>",
        "denied",
      ]) {
        expect(classify(status, body).code, `${status} ${String(body)}`).toBe("GRAPH_TRANSIENT");
      }
    }
    expect(classify(403, "<html><title>Request blocked</title></html>").message).toContain(
      '"Request blocked"',
    );
    // JSON from something that is not Graph (no error object) is not a proxy hiccup.
    expect(classify(404, '{"detail":"no such route"}').code).toBe("GRAPH_UNKNOWN");
    expect(classify(429, "").action).toBe("throttle");
    expect(classify(429, "<html>slow down</html>").action).toBe("throttle");
  });

  it("a 2xx of the wrong shape → GRAPH_BAD_RESPONSE retry/request", () => {
    const error = classifyGraphFailure({
      operation: "delete-invite-link",
      groupId: "G1",
      status: 200,
      body: '{"success":false}',
      badResponse: "success is false",
    });
    expect([error.code, error.action, error.scope]).toEqual(["GRAPH_BAD_RESPONSE", "retry", "request"]);
    expect(error.message).toBe(
      "Graph delete-invite-link for group G1 failed: HTTP 200: unexpected response: success is false",
    );
  });

  it("network errors: resets and DNS → GRAPH_NETWORK, timeouts → GRAPH_TIMEOUT, all retry", () => {
    const net = (code: string) =>
      classifyGraphFailure({
        operation: "list-groups",
        account: "a",
        networkError: Object.assign(new Error(code), { code }),
      });
    for (const code of ["ECONNRESET", "ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "UND_ERR_SOCKET"]) {
      expect([net(code).code, net(code).action]).toEqual(["GRAPH_NETWORK", "retry"]);
    }
    for (const code of [
      "UND_ERR_HEADERS_TIMEOUT",
      "UND_ERR_BODY_TIMEOUT",
      "UND_ERR_CONNECT_TIMEOUT",
      "ETIMEDOUT",
    ]) {
      expect([net(code).code, net(code).action]).toEqual(["GRAPH_TIMEOUT", "retry"]);
    }
    const wrapped = classifyGraphFailure({
      operation: "get-group",
      networkError: new TypeError("fetch failed", {
        cause: Object.assign(new Error("x"), { code: "ECONNRESET" }),
      }),
    });
    expect(wrapped.code).toBe("GRAPH_NETWORK");
    expect(net("ECONNRESET").message).toBe(
      "Graph list-groups for account a failed: network error (ECONNRESET): ECONNRESET",
    );
  });
});

describe("retryAfterMs", () => {
  it("reads Retry-After seconds", () => {
    expect(classify(429, graphBody(4), { "retry-after": "30" }).retryAfterMs).toBe(30_000);
  });

  it("reads Retry-After as an HTTP date", () => {
    const at = new Date(Date.now() + 120_000).toUTCString();
    const ms = classify(503, "", { "retry-after": at }).retryAfterMs!;
    expect(ms).toBeGreaterThan(110_000);
    expect(ms).toBeLessThanOrEqual(120_000);
  });

  it("reads estimated_time_to_regain_access in MINUTES and takes the max", () => {
    const buc = JSON.stringify({
      "123": [{ type: "whatsapp", call_count: 100, estimated_time_to_regain_access: 5 }],
      "456": [{ type: "whatsapp", call_count: 100, estimated_time_to_regain_access: 2 }],
    });
    expect(classify(400, graphBody(80007), { "x-business-use-case-usage": buc }).retryAfterMs).toBe(300_000);
    expect(
      classify(400, graphBody(80007), { "x-business-use-case-usage": buc, "retry-after": "900" })
        .retryAfterMs,
    ).toBe(900_000);
    expect(
      classify(400, graphBody(80007), { "x-business-use-case-usage": "not json" }).retryAfterMs,
    ).toBeUndefined();
  });
});

describe("messages", () => {
  it("read the same for every error", () => {
    const error = classify(401, graphBody(190, { message: "Error validating access token" }));
    expect(error.message).toBe(
      "Graph create-invite-link for group G1 failed: HTTP 401, code 190: Error validating access token",
    );
    expect(isGraphError(error)).toBe(true);
    expect(isGraphError(new Error("x"))).toBe(false);
  });

  it("never contain the token, a Bearer value or an access_token query", () => {
    const message = `bad token ${TOKEN} in Authorization: Bearer ${TOKEN}x; url ?access_token=ZZZsecret&x=1`;
    const error = classify(400, graphBody(190, { message }));
    expect(error.message).not.toContain(TOKEN);
    expect(error.message).not.toContain("ZZZsecret");
    expect(error.message).toContain("[redacted]");
  });

  it("truncate Graph's message to 300 characters", () => {
    const error = classify(400, graphBody(100, { message: "x".repeat(5000) }));
    const detail = error.message.split("code 100: ")[1]!;
    expect(detail.length).toBeLessThanOrEqual(300);
  });
});

describe("success bodies", () => {
  it('DELETE: true, "true" and the reference page\'s mangled sample pass; false and missing do not', () => {
    expect(parseDeleteResponse({ messaging_product: "whatsapp", success: true }).ok).toBe(true);
    expect(parseDeleteResponse({ messaging_product: "whatsapp", success: "true" }).ok).toBe(true);
    const mangled: unknown = JSON.parse('{"messaging_product": "\\"whatsapp\\"", "success": "\\"true\\""}');
    expect(parseDeleteResponse(mangled).ok).toBe(true);
    expect(parseDeleteResponse({ success: false }).ok).toBe(false);
    expect(parseDeleteResponse({ success: "false" }).ok).toBe(false);
    expect(parseDeleteResponse({ messaging_product: "whatsapp" }).ok).toBe(false);
    expect(parseDeleteResponse(null).ok).toBe(false);
  });

  it("POST: a chat.whatsapp.com link, also from the mangled sample; missing or wrong prefix is bad", () => {
    expect(parseInviteLinkResponse({ invite_link: "https://chat.whatsapp.com/AbC123dEfG" })).toEqual({
      ok: true,
      value: "https://chat.whatsapp.com/AbC123dEfG",
    });
    const mangled: unknown = JSON.parse(
      '{"messaging_product": "\\"whatsapp\\"", "invite_link": "\\"https:\\\\/\\\\/chat.whatsapp.com\\\\/LINK_ID_abc\\""}',
    );
    expect(parseInviteLinkResponse(mangled)).toEqual({
      ok: true,
      value: "https://chat.whatsapp.com/LINK_ID_abc",
    });
    expect(parseInviteLinkResponse({ messaging_product: "whatsapp" }).ok).toBe(false);
    expect(parseInviteLinkResponse({ invite_link: "https://evil.example/AbC" }).ok).toBe(false);
    expect(parseInviteLinkResponse({ invite_link: "https://chat.whatsapp.com/" }).ok).toBe(false);
    expect(parseInviteLinkResponse({ invite_link: 42 }).ok).toBe(false);
  });

  it("POST: only the contract's form is a link; anything else is garbled, and the problem never echoes it", () => {
    const garbled = [
      "https://chat.whatsapp.com/short",
      `https://chat.whatsapp.com/${"A".repeat(65)}`,
      `https://chat.whatsapp.com/${"A".repeat(900_000)}`,
      "https://chat.whatsapp.com/AbCdEfGhIj12?x=1",
      "https://chat.whatsapp.com/AbCdEfGhIj12#frag",
      "https://chat.whatsapp.com/AbCd\u0000EfGhIj12",
      "https://chat.whatsapp.com/AbCd\u001b[31mEfGhIj12",
      "https://chat.whatsapp.com/AbCd\u202eEfGhIj12",
      "http://chat.whatsapp.com/AbCdEfGhIj12",
      "https://chat.whatsapp.com.evil.example/AbCdEfGhIj12",
    ];
    for (const link of garbled) {
      const parsed = parseInviteLinkResponse({ invite_link: link });
      expect(parsed.ok, JSON.stringify(link.slice(0, 60))).toBe(false);
      if (!parsed.ok) expect(parsed.problem.length).toBeLessThan(150);
    }
    for (const link of [
      `https://chat.whatsapp.com/${"a".repeat(10)}`,
      `https://chat.whatsapp.com/${"Z_-9".repeat(16)}`,
    ])
      expect(parseInviteLinkResponse({ invite_link: link })).toEqual({ ok: true, value: link });
    // Classified like every other garbled answer: GRAPH_BAD_RESPONSE, retried.
    const error = classifyGraphFailure({
      operation: "create-invite-link",
      groupId: "G1",
      status: 200,
      body: "{}",
      badResponse: "x",
    });
    expect([error.code, error.action]).toEqual(["GRAPH_BAD_RESPONSE", "retry"]);
  });

  it("groups page: next page only with paging.next; cursor from cursors.after or next's query", () => {
    const last = parseGroupsPage({
      data: { groups: [{ id: "a", subject: "A" }] },
      paging: { cursors: { after: "X" } },
    });
    expect(last).toEqual({ ok: true, value: { groups: [{ id: "a", subject: "A" }] } });
    const more = parseGroupsPage({
      data: { groups: [{ id: "b" }] },
      paging: { next: "https://g/v23.0/1/groups?after=QQ" },
    });
    expect(more).toEqual({ ok: true, value: { groups: [{ id: "b" }], after: "QQ" } });
    expect(parseGroupsPage({ data: [{ id: "c" }] }).ok).toBe(true);
    expect(parseGroupsPage({ data: {} }).ok).toBe(false);
  });
});
