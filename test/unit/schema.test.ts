import { existsSync, readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments } from "yaml";
import { describe, expect, it } from "vitest";
import { parseConfigText } from "../../src/config/config.js";
import { renderPolicyFileJsonSchema, SCHEMA_ID } from "../../src/config/schema.js";

const configFile = (name: string) => fileURLToPath(new URL(`../../config/${name}`, import.meta.url));
const committed = readFileSync(configFile("rotation.schema.json"), "utf8");
const schema = JSON.parse(committed) as Schema;

type Schema = Record<string, unknown>;

const ANNOTATIONS = new Set(["$schema", "$id", "title", "description", "default"]);

/**
 * A small JSON Schema checker for exactly the keywords the generated schema uses. An unknown
 * keyword fails the test, so the schema cannot grow a rule this test silently ignores.
 */
function check(node: Schema, value: unknown, path = "$"): string[] {
  const errors: string[] = [];
  const fail = (message: string) => errors.push(`${path}: ${message}`);
  for (const [keyword, rule] of Object.entries(node)) {
    if (ANNOTATIONS.has(keyword)) continue;
    switch (keyword) {
      case "type": {
        const types = Array.isArray(rule) ? (rule as string[]) : [rule as string];
        if (!types.some((t) => typeOk(t, value))) fail(`not ${types.join("|")}`);
        break;
      }
      case "const":
        if (value !== rule) fail(`not ${JSON.stringify(rule)}`);
        break;
      case "pattern":
        if (typeof value === "string" && !new RegExp(rule as string, "u").test(value)) fail(`not /${rule}/`);
        break;
      case "minLength":
        if (typeof value === "string" && value.length < (rule as number)) fail("too short");
        break;
      case "maxLength":
        if (typeof value === "string" && value.length > (rule as number)) fail("too long");
        break;
      case "minimum":
        if (typeof value === "number" && value < (rule as number)) fail("too small");
        break;
      case "maximum":
        if (typeof value === "number" && value > (rule as number)) fail("too large");
        break;
      case "exclusiveMinimum":
        if (typeof value === "number" && value <= (rule as number)) fail("too small");
        break;
      case "minItems":
        if (Array.isArray(value) && value.length < (rule as number)) fail("too few items");
        break;
      case "items":
        if (Array.isArray(value))
          value.forEach((v, i) => errors.push(...check(rule as Schema, v, `${path}[${i}]`)));
        break;
      case "anyOf":
        if (!(rule as Schema[]).some((option) => check(option, value, path).length === 0))
          fail("matches no option");
        break;
      case "required":
        if (isObject(value)) for (const key of rule as string[]) if (!(key in value)) fail(`missing ${key}`);
        break;
      case "minProperties":
        if (isObject(value) && Object.keys(value).length < (rule as number)) fail("too few keys");
        break;
      case "propertyNames":
        if (isObject(value))
          for (const key of Object.keys(value)) errors.push(...check(rule as Schema, key, path));
        break;
      case "properties":
        if (isObject(value)) {
          for (const [key, sub] of Object.entries(rule as Record<string, Schema>)) {
            if (key in value) errors.push(...check(sub, value[key], `${path}.${key}`));
          }
        }
        break;
      case "additionalProperties":
        if (isObject(value)) {
          const known = Object.keys((node.properties as Schema | undefined) ?? {});
          for (const [key, v] of Object.entries(value)) {
            if (known.includes(key)) continue;
            if (rule === false) fail(`unknown key ${key}`);
            else errors.push(...check(rule as Schema, v, `${path}.${key}`));
          }
        }
        break;
      default:
        throw new Error(`the test's checker does not know the keyword ${keyword} (at ${path})`);
    }
  }
  return errors;
}

function typeOk(type: string, value: unknown): boolean {
  if (type === "integer") return Number.isInteger(value);
  if (type === "array") return Array.isArray(value);
  if (type === "object") return isObject(value);
  if (type === "null") return value === null;
  return typeof value === type;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Whether the rotator's own loader accepts the document (same env for every case). */
function loads(document: unknown): boolean {
  try {
    parseConfigText(JSON.stringify(document), "case.json", {}, { graphApiVersion: "v23.0" });
    return true;
  } catch {
    return false;
  }
}

describe("config/rotation.schema.json", () => {
  it("is exactly what npm run schema generates from the zod schema (run it after changing policy-file.ts)", () => {
    expect(committed).toBe(renderPolicyFileJsonSchema());
    expect(schema).toMatchObject({
      $schema: "https://json-schema.org/draft/2020-12/schema",
      $id: SCHEMA_ID,
      title: expect.any(String),
      required: ["policies"],
      additionalProperties: false,
    });
  });

  // Every policy file the repo ships: each config/*.yaml, and the one a Kubernetes ConfigMap carries.
  // (config/local.yaml is an operator's own copy, git-ignored: not the repo's to check.)
  const configFiles = readdirSync(configFile(".")).filter(
    (name) => /\.ya?ml$/.test(name) && name !== "local.yaml",
  );
  const configMapPolicies = (): string[] => {
    const text = readFileSync(
      fileURLToPath(new URL("../../deploy/kubernetes.yaml", import.meta.url)),
      "utf8",
    );
    return parseAllDocuments(text)
      .map((doc) => doc.toJS() as { kind?: string; data?: Record<string, string> })
      .filter((doc) => doc.kind === "ConfigMap")
      .flatMap((doc) => Object.values(doc.data ?? {}));
  };
  const schemaLine = /^# yaml-language-server: \$schema=\.\/rotation\.schema\.json\n/;

  it("finds the policy files it checks", () => {
    expect(configFiles).toEqual(
      expect.arrayContaining(["rotation.example.yaml", "demo.yaml", "rotation.yaml"]),
    );
    expect(configMapPolicies()).toHaveLength(1);
  });

  it.each(configFiles)("accepts config/%s, which names the schema on its first line", (name) => {
    const text = readFileSync(configFile(name), "utf8");
    expect(text).toMatch(schemaLine);
    expect(check(schema, parse(text))).toEqual([]);
    expect(loads(parse(text))).toBe(true);
  });

  it("names a schema that exists where the line applies: beside the file in config/", () => {
    for (const text of [
      ...configFiles.map((name) => readFileSync(configFile(name), "utf8")),
      ...configMapPolicies(),
    ]) {
      const path = /^# yaml-language-server: \$schema=(\S+)$/m.exec(text)?.[1];
      expect(path).toBeDefined();
      expect(existsSync(configFile(path!)), path).toBe(true);
    }
    // The ConfigMap's copy applies once kept in config/: the manifest says so, and how to make the
    // ConfigMap from such a file.
    const manifest = readFileSync(
      fileURLToPath(new URL("../../deploy/kubernetes.yaml", import.meta.url)),
      "utf8",
    );
    expect(manifest).toMatch(
      /^ {2}# +kubectl create configmap wa-invite-rotator-policy --from-file=rotation\.yaml=config\/<name>\.yaml/m,
    );
    expect(manifest).toMatch(/^ {2}# .*no editor applies it inside this manifest/m);
  });

  it("accepts the policy file of deploy/kubernetes.yaml's ConfigMap, which names the schema too", () => {
    for (const text of configMapPolicies()) {
      expect(text).toMatch(schemaLine);
      expect(check(schema, parse(text))).toEqual([]);
      expect(loads(parse(text))).toBe(true);
    }
  });

  const policy = { name: "p", schedule: "0 3 * * *", groups: ["G1"] };
  it.each<[string, unknown]>([
    ["no policies", { accounts: { a: { token_env: "A_TOKEN" } } }],
    ["an empty policies list", { policies: [] }],
    ["a policy without a schedule", { policies: [{ name: "p", groups: ["G1"] }] }],
    ["a policy without groups", { policies: [{ name: "p", schedule: "0 3 * * *" }] }],
    ["an unknown top-level key", { policies: [policy], extra: 1 }],
    ["an unknown policy key", { policies: [{ ...policy, cron: "0 3 * * *" }] }],
    ["a token in the file", { accounts: { a: { token_env: "A_TOKEN", token: "x" } }, policies: [policy] }],
    ["an account without token_env", { accounts: { a: {} }, policies: [policy] }],
    ["a bad policy name", { policies: [{ ...policy, name: "no spaces" }] }],
    ["a duration without a unit", { policies: [{ ...policy, jitter: 15 }] }],
    ["a duration in words", { policies: [{ ...policy, jitter: "15 minutes" }] }],
    ["a compound duration with its units out of order", { policies: [{ ...policy, jitter: "30m1h" }] }],
    ["an empty group list", { policies: [{ ...policy, groups: [] }] }],
    ["groups neither a list nor all", { policies: [{ ...policy, groups: "some" }] }],
    ["a group id with whitespace", { policies: [{ ...policy, groups: ["a b"] }] }],
    [
      "a non-numeric phone number id",
      { accounts: { a: { token_env: "A", phone_number_id: "x1" } }, policies: [policy] },
    ],
  ])("rejects %s, as the rotator does", (_name, document) => {
    expect(check(schema, document)).not.toEqual([]);
    expect(loads(document)).toBe(false);
  });

  it("accepts what the rotator accepts: durations, numeric ids, groups: all", () => {
    const document = {
      accounts: { main: { token_env: "MAIN_TOKEN", phone_number_id: 1234567890, rate_limit: 2.5 } },
      policies: [
        { ...policy, account: "main", jitter: "1.5m", catch_up: 0, groups: [120363025246125, "Y2Fw"] },
        { ...policy, name: "all", account: "main", groups: "all", catch_up: "0", channel: "x:links" },
        { ...policy, name: "compound", account: "main", groups: ["G2"], catch_up: "1h30m" },
      ],
    };
    expect(check(schema, document)).toEqual([]);
    expect(loads(document)).toBe(true);
  });
});
