import { expect, it } from "vitest";
import { accountTokens, redactSecrets } from "../../src/infra/redact.js";

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
