import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { classifyGraphFailure } from "../../src/graph/classify.js";
import { createLogger } from "../../src/infra/logger.js";
import { accountTokens, createScrubber, redactSecrets, scrub } from "../../src/infra/redact.js";

const TOKEN = "EAAGm0PX4ZCpsBAKZCvWq9ZB7sEcReT0kEnVaLuE42";

it("redacts bearer tokens, secret-named variables and account tokens under any variable name", () => {
  const env = { WHATSAPP_ACCESS_TOKEN: "EAAtoken123456", WA_MAIN: "EAAmain987654", PATH: "/usr/bin" };
  const config = {
    accounts: new Map([
      ["main", { token: env.WA_MAIN }],
      ["other", { token: undefined }],
    ]),
  };
  const text = "failed: Authorization: Bearer EAAsomething / EAAtoken123456 / EAAmain987654 / /usr/bin";
  const out = redactSecrets(text, env, accountTokens(config));
  expect(out).toBe("failed: Authorization: Bearer [redacted] / [redacted] / [redacted] / /usr/bin");
  expect(redactSecrets("EAAmain987654", env)).toBe("EAAmain987654"); // without the config it cannot know
});

describe("the one scrubber", () => {
  it("redacts any run of 8 or more of a token's characters: an echo cut short leaks no part", () => {
    const out = scrub(`first ${TOKEN.slice(0, 12)}, middle ${TOKEN.slice(9, 30)}, end ${TOKEN.slice(-8)}.`, [
      TOKEN,
    ]);
    expect(out).toBe("first [redacted], middle [redacted], end [redacted].");
  });

  it("redacts the JSON-escaped form of a secret, as a log line carries it", () => {
    const secret = 'pa"ss\\word-long-enough';
    const line = JSON.stringify({ msg: `echo ${secret}` });
    expect(createScrubber([secret])(line)).toBe(JSON.stringify({ msg: "echo [redacted]" }));
  });

  it("redacts the userinfo of any URL, also of a mistyped one, and the Redis password everywhere", () => {
    const env = { REDIS_URL: "redis://:hunter2-password@cache:6379/0" };
    const s = createScrubber([], env);
    expect(s("cannot reach redis//:pw1234@host:6379")).toBe("cannot reach redis//[redacted]@host:6379");
    expect(s("rediss://user:secret@h:1/2")).toBe("rediss://[redacted]@h:1/2");
    expect(s("WRONGPASS for hunter2-password")).toBe("WRONGPASS for [redacted]");
    expect(s("https://chat.whatsapp.com/AbCdEfGhIj12")).toBe("https://chat.whatsapp.com/AbCdEfGhIj12");
  });

  it("keeps a JSON line JSON: an echoed header with escaped quotes loses no backslash", () => {
    const line = JSON.stringify({
      msg: `www-authenticate: Bearer error="${TOKEN}", access_token="${TOKEN}"`,
    });
    const out = createScrubber([TOKEN])(line);
    expect(() => JSON.parse(out) as unknown).not.toThrow();
    expect(out).not.toContain(TOKEN.slice(0, 8));
  });

  it("learns tokens later (a policy file loaded after the logger was made)", () => {
    const s = createScrubber();
    expect(s(`x ${TOKEN}`)).toBe(`x ${TOKEN}`);
    s.add([TOKEN]);
    expect(s(`x ${TOKEN}`)).toBe("x [redacted]");
  });

  it("leaves other text alone, secret-named variables redacted only whole", () => {
    const s = createScrubber([TOKEN], { SSH_AUTH_SOCK: "/tmp/ssh-agent.sock" });
    expect(s("read /tmp/ssh-agent.sock and /tmp/ssh-other")).toBe("read [redacted] and /tmp/ssh-other");
    expect(s("Graph create-invite-link for group 120363025246125486 failed: HTTP 500")).toBe(
      "Graph create-invite-link for group 120363025246125486 failed: HTTP 500",
    );
  });

  it("runs over every line the logger writes, whatever field carries the secret", () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const logger = createLogger("debug", sink, createScrubber([TOKEN]));
    logger.debug({ usage: { app: { note: TOKEN } }, fbtraceId: TOKEN.slice(3, 20) }, `msg ${TOKEN}`);
    logger.info({ err: new Error(`Bearer ${TOKEN}`) }, "x");
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).not.toContain(TOKEN.slice(0, 8));
      expect(line).not.toContain(TOKEN.slice(-8));
      expect(() => JSON.parse(line) as unknown).not.toThrow();
    }
  });
});

describe("Graph errors", () => {
  it("never carry the token, in whole or in part, not in fbtrace_id, the message or at the cut", () => {
    const padding = "x".repeat(280);
    const error = classifyGraphFailure({
      operation: "create-invite-link",
      groupId: "G1",
      account: "default",
      status: 400,
      body: {
        error: {
          message: `${padding} ${TOKEN}`,
          code: 100,
          fbtrace_id: TOKEN,
          error_user_msg: TOKEN.slice(5),
          error_data: { details: `token ${TOKEN.slice(0, 20)}` },
        },
      },
      secrets: [TOKEN],
    });
    const everything = JSON.stringify({ ...error, message: error.message });
    for (let i = 0; i + 8 <= TOKEN.length; i++) expect(everything).not.toContain(TOKEN.slice(i, i + 8));
    expect(error.fbtraceId).toBe("[redacted]");
  });
});
