import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadSettings, settingsSchema } from "../../src/config/settings.js";

/** `KEY=value` lines of .env.example (comments and blank lines skipped). */
function readEnvExample(): Record<string, string> {
  const text = readFileSync(new URL("../../.env.example", import.meta.url), "utf8");
  const entries: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (match) entries[match[1]!] = match[2]!;
  }
  return entries;
}

describe(".env.example", () => {
  const example = readEnvExample();

  it("names every setting and the default account's token", () => {
    const documented = Object.keys(example);
    for (const key of [...Object.keys(settingsSchema.shape), "WHATSAPP_ACCESS_TOKEN"]) {
      expect(documented, `${key} missing from .env.example`).toContain(key);
    }
  });

  it("leaves secrets empty and states the real defaults", () => {
    expect(example.WHATSAPP_ACCESS_TOKEN).toBe("");
    expect(example.ROTATOR_SIGNING_SECRET).toBe("");
    const { env: _exampleEnv, ...fromExample } = loadSettings(example);
    const { env: _emptyEnv, ...defaults } = loadSettings({});
    expect(fromExample).toEqual(defaults);
  });
});
