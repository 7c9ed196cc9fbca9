import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { COMMANDS, commandHelp, TOKENS, type CommandSpec } from "../../src/commands/registry.js";
import { settingsSchema } from "../../src/config/settings.js";

/**
 * Help is data in registry.ts, the parser is in each command's module: here the two must agree,
 * so `--help` cannot drift from what a command accepts. The README's commands table names every
 * command and every option too.
 */
interface Documented {
  readonly type: "string" | "boolean";
  readonly multiple: boolean;
  readonly default: string | undefined;
}

function documented(spec: CommandSpec): Record<string, Documented> {
  return Object.fromEntries(
    (spec.options ?? []).map((option) => {
      const [, name, value] = /^--([a-z][a-z-]*)(?: (.+))?$/.exec(option.flag) ?? [];
      if (name === undefined) throw new Error(`${spec.name}: flag ${option.flag} is not --name [VALUE]`);
      return [
        name,
        {
          type: value === undefined ? "boolean" : "string",
          multiple: option.text.includes("(repeatable)"),
          default: option.default,
        },
      ];
    }),
  );
}

const readme = readFileSync(fileURLToPath(new URL("../../README.md", import.meta.url)), "utf8");

/** The first cell of each row of the README's table under "### Commands". */
function readmeCommandCells(): string[] {
  const start = readme.indexOf("### Commands");
  const section = readme.slice(start, readme.indexOf("\n### ", start + 1));
  return section
    .split("\n")
    .filter((line) => line.startsWith("| `"))
    .map((line) => line.split("|")[1]!.trim());
}

describe.each(COMMANDS.map((spec) => [spec.name, spec] as const))("%s", (name, spec) => {
  it("documents exactly the options its parser accepts, with their kind, repeatability and default", async () => {
    const parser = (await spec.load()).default.options;
    const docs = documented(spec);
    expect(Object.keys(docs).sort(), "options in registry.ts vs the parser").toEqual(
      Object.keys(parser).sort(),
    );
    for (const [option, config] of Object.entries(parser)) {
      const doc = docs[option]!;
      expect(doc.type, `--${option}: a value or a switch`).toBe(config.type);
      expect(doc.multiple, `--${option}: "(repeatable)" in its help`).toBe(config.multiple === true);
      // A parser default is the documented one; a switch's false needs no mention.
      if (typeof config.default === "string") expect(doc.default, `--${option} default`).toBe(config.default);
      expect(spec.usage, `the usage line names --${option}`).toContain(`--${option}`);
    }
  });

  it("names in `reads` only variables the environment schema knows", () => {
    const known = new Set(Object.keys(settingsSchema.shape));
    for (const variable of spec.reads ?? []) {
      if (variable !== TOKENS) expect(known.has(variable), `${name} reads ${variable}`).toBe(true);
    }
  });

  it("has a row in the README's commands table naming each option", () => {
    const cell = readmeCommandCells().find((c) => c === `\`${name}\`` || c.startsWith(`\`${name} `));
    expect(cell, `README commands table: no row for ${name}`).toBeDefined();
    for (const option of Object.keys(documented(spec))) expect(cell).toContain(`--${option}`);
  });
});

it("the long-lived commands say which environment variables they read", () => {
  for (const name of ["start", "worker", "scheduler", "gateway"]) {
    const reads = COMMANDS.find((spec) => spec.name === name)?.reads ?? [];
    expect(reads, name).toEqual(expect.arrayContaining(["REDIS_URL", "ROTATOR_CONFIG", "LOG_LEVEL"]));
    const help = commandHelp(COMMANDS.find((spec) => spec.name === name)!);
    expect(help).toMatch(/^reads: REDIS_URL, /m);
    const readsLines = help.slice(help.indexOf("reads:")).split("\n").slice(0, 4);
    for (const line of readsLines) expect(line.length, line).toBeLessThanOrEqual(100);
  }
});
