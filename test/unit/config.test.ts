import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { accountContext, loadConfig, parseConfigText, type ResolvedConfig } from "../../src/config/config.js";
import { ConfigError, RotatorError } from "../../src/core/errors.js";
import { DEFAULT_CHANNEL } from "../../src/core/keys.js";

const TOKEN = "secret-token-value-42";
const env = { WHATSAPP_ACCESS_TOKEN: TOKEN };
const defaults = { graphApiVersion: "v23.0", now: Date.parse("2026-01-05T00:00:00Z") };

function parse(
  yaml: string,
  file = "test.yaml",
  environment: Record<string, string | undefined> = env,
): ResolvedConfig {
  return parseConfigText(yaml, file, environment, defaults);
}

/** The ConfigError the text raises. */
function failure(text: string, file = "test.yaml"): ConfigError {
  try {
    parse(text, file);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).not.toContain(TOKEN);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

function issueAt(text: string, path: string): string {
  const error = failure(text);
  const issue = error.issues.find((i) => i.path === path);
  expect(issue, `issue at ${path} in ${JSON.stringify(error.issues)}`).toBeDefined();
  expect(error.message).toContain(`${path}: `);
  return issue!.message;
}

const policy = (fields: string, name = "p") =>
  `  - name: ${name}\n    schedule: "0 3 * * *"\n    groups: ["G-${name}"]\n${fields}`;

describe("a valid policy file", () => {
  it("resolves with defaults applied and is deeply frozen", () => {
    const config = parse(`policies:\n  - name: nightly\n    schedule: "0  3 * * *"\n    groups: ["A", 42]\n`);
    expect(config.file).toBe("test.yaml");
    expect([...config.accounts.values()]).toEqual([
      {
        name: "default",
        tokenEnv: "WHATSAPP_ACCESS_TOKEN",
        token: TOKEN,
        tokenPresent: true,
        graphApiVersion: "v23.0",
        phoneNumberId: undefined,
        rateLimit: undefined,
      },
    ]);
    expect(config.policies).toEqual([
      {
        name: "nightly",
        account: "default",
        schedule: "0 3 * * *",
        timezone: "UTC",
        jitterMs: 0,
        catchUpMs: 3_600_000,
        channel: DEFAULT_CHANNEL,
        groups: ["A", "42"],
      },
    ]);
    expect(config.policyByGroup.get("42")?.name).toBe("nightly");
    expect(config.warnings).toEqual([]);
    expect(Object.isFrozen(config.policies[0])).toBe(true);
    expect(Object.isFrozen(config.policies[0]!.groups)).toBe(true);
    expect(() => (config.accounts as Map<string, unknown>).set("x", {})).toThrow(TypeError);
  });

  it("resolves accounts, durations, zones and groups: all", () => {
    const config = parse(
      [
        "$schema: ./rotation.schema.json",
        "accounts:",
        "  main:",
        "    token_env: MAIN_TOKEN",
        "    graph_api_version: v22.0",
        "    phone_number_id: 1234567890",
        "    rate_limit: 2.5",
        "policies:",
        "  - name: all-main",
        "    account: main",
        "    schedule: '0 30 6 * * 1'",
        "    timezone: Europe/Berlin",
        "    jitter: 15m",
        "    catch_up: 0",
        "    channel: main:links",
        "    groups: all",
      ].join("\n"),
      "test.yaml",
      { MAIN_TOKEN: "" },
    );
    expect(config.accounts.get("main")).toMatchObject({
      token: undefined,
      tokenPresent: false,
      graphApiVersion: "v22.0",
      phoneNumberId: "1234567890",
      rateLimit: 2.5,
    });
    expect(config.policies[0]).toMatchObject({
      jitterMs: 900_000,
      catchUpMs: 0,
      groups: "all",
      timezone: "Europe/Berlin",
    });
    expect(config.warnings).toEqual(["account main: the environment variable MAIN_TOKEN is not set"]);
    expect(() => accountContext(config.accounts.get("main")!)).toThrow(
      expect.objectContaining({ code: "E_NO_TOKEN", message: expect.stringContaining("MAIN_TOKEN") }),
    );
  });

  it("accountContext carries the token without putting it in any message", () => {
    const account = parse(`policies:\n${policy("")}`).accounts.get("default")!;
    expect(accountContext(account)).toEqual({
      name: "default",
      token: TOKEN,
      graphApiVersion: "v23.0",
      phoneNumberId: undefined,
    });
    const missing = parse(`policies:\n${policy("")}`, "t.yaml", {}).accounts.get("default")!;
    try {
      accountContext(missing);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(RotatorError);
      expect((error as RotatorError).code).toBe("E_NO_TOKEN");
    }
  });

  it("reads JSON by extension", () => {
    const json = JSON.stringify({ policies: [{ name: "j", schedule: "*/5 * * * *", groups: ["x"] }] });
    expect(parse(json, "rotation.json").policies[0]!.name).toBe("j");
  });

  it("parses a file of 100,000 groups", () => {
    const ids = Array.from({ length: 100_000 }, (_, i) => `1203630${String(i).padStart(11, "0")}`);
    const text = `policies:\n  - name: big\n    schedule: "0 3 * * *"\n    groups:\n${ids.map((id) => `      - "${id}"`).join("\n")}\n`;
    const config = parse(text);
    expect(config.policies[0]!.groups).toHaveLength(100_000);
    expect(config.policyByGroup.size).toBe(100_000);
    expect(config.policyByGroup.get(ids[99_999]!)?.name).toBe("big");
  });
});

describe("an invalid policy file names the path of each fault", () => {
  it("bad cron", () => {
    expect(
      issueAt(
        `policies:\n  - name: a\n    schedule: "0 25 * * *"\n    groups: [g]\n`,
        "policies[0].schedule",
      ),
    ).toMatch(/cron/);
  });

  it("a 7-field cron", () => {
    const text = `policies:\n  - name: a\n    schedule: "0 0 3 * * * 2026"\n    groups: [g]\n`;
    expect(issueAt(text, "policies[0].schedule")).toContain("5 fields");
  });

  it("an unknown time zone", () => {
    expect(
      issueAt(`policies:\n${policy("    timezone: Europe/Atlantis\n")}`, "policies[0].timezone"),
    ).toContain("Europe/Atlantis");
  });

  it("an unknown account", () => {
    const text = `accounts:\n  main:\n    token_env: MAIN\npolicies:\n${policy("    account: other\n")}`;
    expect(issueAt(text, "policies[0].account")).toContain('"other"');
    // Without accounts, `default` is the only account.
    expect(issueAt(`policies:\n${policy("    account: main\n")}`, "policies[0].account")).toContain(
      "default",
    );
    // With accounts but without default, a policy naming none refers to a missing default.
    expect(
      issueAt(`accounts:\n  main:\n    token_env: MAIN\npolicies:\n${policy("")}`, "policies[0].account"),
    ).toContain('"default"');
  });

  it("duplicate policy names", () => {
    const text = `policies:\n${policy("", "a")}  - name: a\n    schedule: "0 4 * * *"\n    groups: [other]\n`;
    expect(issueAt(text, "policies[1].name")).toContain("policies[0].name");
  });

  it("a group in two policies, or twice in one", () => {
    const text = `policies:\n${policy("", "a")}  - name: b\n    schedule: "0 4 * * *"\n    groups: [x, G-a, x]\n`;
    expect(issueAt(text, "policies[1].groups[1]")).toContain("already in policy a");
    expect(issueAt(text, "policies[1].groups[2]")).toContain("listed twice");
  });

  it("unknown keys, and token written into the file", () => {
    const text = `accounts:\n  main:\n    token_env: MAIN\n    token: "${TOKEN}"\npolicies:\n${policy("    account: main\n    cron: x\n")}extra: 1\n`;
    expect(issueAt(text, "accounts.main.token")).toContain("tokens come from the environment: use token_env");
    expect(issueAt(text, "policies[0].cron")).toContain('unknown key "cron"');
    expect(issueAt(text, "extra")).toContain("unknown key");
  });

  it("bad durations", () => {
    const text = `policies:\n${policy("    jitter: 5 minutes\n    catch_up: 30\n")}`;
    expect(issueAt(text, "policies[0].jitter")).toContain("not a duration");
    expect(issueAt(text, "policies[0].catch_up")).toContain("unit");
  });

  it("jitter longer than the shortest gap between fires", () => {
    const text = `policies:\n  - name: a\n    schedule: "0 * * * *"\n    jitter: 90m\n    groups: [g]\n`;
    expect(issueAt(text, "policies[0].jitter")).toContain("shortest gap");
  });

  it("an unquoted long numeric group id", () => {
    const text = `policies:\n  - name: a\n    schedule: "0 3 * * *"\n    groups:\n      - "ok"\n      - 120363025246125486\n`;
    const message = issueAt(text, "policies[0].groups[1]");
    expect(message).toContain("quote long group ids: YAML turns them into imprecise numbers");
    expect(message).toContain("line 6");
  });

  it("group ids that break the contract's rule: `.`, `..`, non-ASCII, control characters", () => {
    const ids = [".", "..", "caf\u00e9", "a\u0007b", "x".repeat(257)];
    const text = `policies:\n  - name: a\n    schedule: "0 3 * * *"\n    groups: ${JSON.stringify(["ok.1", ...ids])}\n`;
    const error = failure(text);
    expect(error.issues.map((i) => i.path)).toEqual(ids.map((_, j) => `policies[0].groups[${j + 1}]`));
    expect(error.issues[0]!.message).toContain("a path step");
    expect(error.issues[2]!.message).toContain("printable ASCII");
  });

  it("a YAML syntax error, with its line", () => {
    const error = failure(`policies:\n  - name: a\n    groups: [a, b\n  - name: c\n`);
    expect(error.issues[0]!.path).toBe("");
    expect(error.issues[0]!.message).toMatch(/YAML syntax error at line 4, column \d+/);
  });

  it("a JSON syntax error, with its position", () => {
    const error = failure(`{"policies": [\n  {"name": "x",, }]}`, "rotation.json");
    expect(error.issues[0]!.message).toMatch(/^JSON syntax error at line 2, column 16/);
  });

  it("a JSON syntax error never quotes the file: a token pasted there stays out of the message", () => {
    const pasted = "EAAGpastedTokenNotInAnyEnv0123456789";
    for (const [text, reason] of [
      [`{"policies": [\n  {"name": ${pasted}}]}`, "not a JSON value"],
      [`{"policies": [\n  {"name": "x", "token": "${pasted}\u0001"}]}`, "string that is not closed"],
      [`{"policies": [\n  {"name": "x",, "t": "${pasted}"}]}`, "a comma"],
      [`{"policies": [\n  {"name": "${pasted}"`, "ends before"],
    ] as const) {
      const error = failure(text, "rotation.json");
      expect(error.issues).toHaveLength(1);
      expect(error.issues[0]!.message).toMatch(/^JSON syntax error at line 2, column \d+: /);
      expect(error.issues[0]!.message).toContain(reason);
      expect(error.message).toContain("rotation.json");
      for (let i = 0; i + 4 <= pasted.length; i++)
        expect(error.message).not.toContain(pasted.slice(i, i + 4));
    }
  });

  it("a missing file", async () => {
    const error = await loadConfig("/nonexistent/rotation.yaml", env, defaults).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).issues).toEqual([
      { path: "", message: "cannot read /nonexistent/rotation.yaml: not found" },
    ]);
  });

  it("groups: all without phone_number_id", () => {
    const text = `policies:\n  - name: a\n    schedule: "0 3 * * *"\n    groups: all\n`;
    expect(issueAt(text, "policies[0].groups")).toContain("phone_number_id");
  });

  it("bad account fields and an empty policy list", () => {
    const text = `accounts:\n  main:\n    token_env: lower\n    graph_api_version: "23"\npolicies: []\n`;
    issueAt(text, "accounts.main.token_env");
    issueAt(text, "accounts.main.graph_api_version");
    issueAt(text, "policies");
  });

  it("collects every issue at once", () => {
    const text = `policies:\n  - name: a\n    schedule: "x"\n    timezone: Nowhere/Zone\n    groups: []\n  - name: "bad name"\n    groups: [1.5]\n`;
    const paths = failure(text).issues.map((i) => i.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        "policies[0].schedule",
        "policies[0].timezone",
        "policies[0].groups",
        "policies[1].name",
        "policies[1].schedule",
        "policies[1].groups[0]",
      ]),
    );
  });
});

describe("loadConfig", () => {
  let dir = "";
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "rotator-config-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("loads YAML and JSON files", async () => {
    await writeFile(join(dir, "a.yaml"), `policies:\n${policy("")}`);
    await writeFile(
      join(dir, "b.json"),
      JSON.stringify({ policies: [{ name: "b", schedule: "0 3 * * *", groups: ["g"] }] }),
    );
    expect((await loadConfig(join(dir, "a.yaml"), env, defaults)).policies[0]!.name).toBe("p");
    expect((await loadConfig(join(dir, "b.json"), env, defaults)).policies[0]!.name).toBe("b");
  });

  it("loads the shipped config files", async () => {
    for (const file of ["config/rotation.yaml", "config/rotation.example.yaml", "config/demo.yaml"]) {
      const config = await loadConfig(file, {}, defaults);
      expect(config.policies.length, file).toBeGreaterThan(0);
    }
    const demo = await loadConfig("config/demo.yaml", {}, defaults);
    expect(demo.policies[0]).toMatchObject({
      name: "demo",
      schedule: "*/10 * * * * *",
      groups: ["DEMO-GROUP-1", "DEMO-GROUP-2", "DEMO-GROUP-3"],
    });
  });
});

describe("a token pasted into the policy file never reaches an error", () => {
  const partners = "EAAGpartnersTokenValue0123456789";
  const environment = { ...env, PARTNERS_CRED: partners };
  const reject = (text: string, file = "test.yaml"): ConfigError => {
    try {
      parseConfigText(text, file, environment, defaults);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return error as ConfigError;
    }
    throw new Error("expected a ConfigError");
  };
  const shown = (error: ConfigError) => `${error.message} ${JSON.stringify(error.issues)}`;

  it("in a value that repeats it (phone_number_id, account), in a key, and in a file that does not parse", () => {
    const cases = [
      `accounts:\n  main:\n    token_env: WHATSAPP_ACCESS_TOKEN\n    phone_number_id: "${TOKEN}"\npolicies:\n  - name: a\n    account: main\n    schedule: "0 3 * * *"\n    groups: all\n`,
      `accounts:\n  p:\n    token_env: PARTNERS_CRED\npolicies:\n  - name: a\n    account: "${partners}"\n    schedule: "0 3 * * *"\n    groups: ["1"]\n`,
      `accounts:\n  p:\n    token_env: PARTNERS_CRED\n    ${partners}: x\npolicies:\n  - name: a\n    account: p\n    schedule: "0 3 * * *"\n    groups: ["1"]\n`,
      `accounts:\n  p:\n    token_env: PARTNERS_CRED\npolicies:\n  - name: a\n    groups: [${partners}\n   x: [\n`,
    ];
    for (const [index, text] of cases.entries()) {
      const error = reject(text);
      expect(shown(error)).not.toContain(TOKEN);
      expect(shown(error)).not.toContain(partners);
      // The first three messages quote the offending value; the syntax error quotes none.
      if (index < 3) expect(error.message).toContain("[redacted]");
    }
  });

  it("in a JSON file", () => {
    const text = JSON.stringify({ policies: [{ name: "a", schedule: TOKEN, groups: ["1"] }] });
    const error = reject(text, "test.json");
    expect(shown(error)).not.toContain(TOKEN);
    expect(error.issues[0]?.path).toBe("policies[0].schedule");
  });
});

describe("jitter against the gap between fires", () => {
  const withJitter = (jitter: string, schedule = "0 * * * *") =>
    `policies:\n  - name: a\n    schedule: "${schedule}"\n    jitter: ${jitter}\n    groups: [g]\n`;

  it("a jitter as long as the gap is an error that names the longest jitter allowed", () => {
    const message = issueAt(withJitter("1h"), "policies[0].jitter");
    expect(message).toContain("not shorter than the shortest gap");
    expect(message).toContain("(1h)");
    expect(message).toContain("use at most 54m (90% of the gap");
    expect(message).toMatch(/\(line 4, column \d+\)$/);
    // Every 10 seconds: at most 9 s.
    expect(issueAt(withJitter("10s", "*/10 * * * * *"), "policies[0].jitter")).toContain("at most 9s");
  });

  it("a jitter shorter than the gap stays valid (the run time spreads over at most 90% of it)", () => {
    expect(parse(withJitter("59m")).policies[0]!.jitterMs).toBe(59 * 60_000);
    expect(parse(withJitter("54m")).policies[0]!.jitterMs).toBe(54 * 60_000);
  });
});

describe("a JSON policy file with a key written twice", () => {
  it("is an error naming the path and both lines, as YAML rejects it too", () => {
    const text = [
      "{",
      '  "policies": [',
      '    { "name": "a", "schedule": "0 3 * * *", "groups": ["g"], "name": "b" },',
      '    { "name": "c", "schedule": "0 4 * * *", "groups": ["h"], "schedule": "0 5 * * *" }',
      "  ],",
      '  "accounts": { "default": { "token_env": "WHATSAPP_ACCESS_TOKEN" } },',
      '  "acc\\u006funts": {}',
      "}",
    ].join("\n");
    const error = failure(text, "rotation.json");
    expect(error.issues).toEqual([
      {
        path: "policies[0].name",
        message:
          'duplicate key "name": a key may appear once in an object (first at line 3, column 7) (line 3, column 62)',
      },
      {
        path: "policies[1].schedule",
        message: expect.stringContaining("(first at line 4, column 20) (line 4, column 62)"),
      },
      {
        path: "accounts",
        message: expect.stringContaining("(first at line 6, column 3) (line 7, column 3)"),
      },
    ]);
    expect(error.message).toContain("policies[0].name: duplicate key");
    // The same file as YAML is rejected too.
    expect(failure(text, "rotation.yaml").issues[0]!.message).toContain("Map keys must be unique");
  });

  it("keys that repeat only across objects, and values that look like keys, are fine", () => {
    const text = JSON.stringify({
      policies: [
        { name: "a", schedule: "0 3 * * *", groups: ["name", "schedule"] },
        { name: "b", schedule: "0 4 * * *", channel: "name", groups: ["x"] },
      ],
    });
    expect(parse(text, "rotation.json").policies.map((p) => p.name)).toEqual(["a", "b"]);
  });
});

describe("rotate_after_joins", () => {
  const policy = (value: string) =>
    `policies:\n  - name: p\n    schedule: "0 3 * * *"\n    groups: ["G1"]\n    rotate_after_joins: ${value}\n`;

  it("resolves a whole number of joins, and stays unset without it", () => {
    expect(parse(policy("3")).policies[0]!.rotateAfterJoins).toBe(3);
    expect(
      parse(`policies:\n  - name: p\n    schedule: "0 3 * * *"\n    groups: ["G1"]\n`).policies[0]!
        .rotateAfterJoins,
    ).toBeUndefined();
  });

  it("refuses 0, fractions and text, naming the path", () => {
    expect(issueAt(policy("0"), "policies[0].rotate_after_joins")).toMatch(/at least 1/);
    expect(issueAt(policy("2.5"), "policies[0].rotate_after_joins")).toMatch(/whole number/);
    expect(issueAt(policy('"three"'), "policies[0].rotate_after_joins")).toBeTruthy();
  });
});
