import { describe, expect, it } from "vitest";
import { main } from "../../src/cli.js";
import { createValidateCommand } from "../../src/commands/validate.js";
import type { GraphCheckInput, GraphCheckResult } from "../../src/config/check-graph.js";
import { fakeIO, tempDir } from "../helpers/command-io.js";

const TOKEN = "validate-secret-token-7";

describe("validate", () => {
  const file = tempDir("rotator-validate-", {
    "valid.yaml": [
      "accounts:",
      "  main: { token_env: MAIN_TOKEN }",
      "  spare: { token_env: SPARE_TOKEN }",
      "policies:",
      "  - name: nightly",
      "    account: main",
      '    schedule: "0 3 * * *"',
      "    timezone: Europe/Berlin",
      "    jitter: 15m",
      '    groups: ["A", "B", "C"]',
    ].join("\n"),
    "bad-cron.yaml": 'policies:\n  - name: a\n    schedule: "0 0 3 * * * *"\n    groups: [g]\n',
    "bad.json": JSON.stringify({ policies: [{ name: "a", schedule: "0 3 * * *", groups: [] }] }),
    "token.yaml": `accounts:\n  main:\n    token_env: MAIN_TOKEN\n    token: ${TOKEN}\npolicies:\n  - name: a\n    account: main\n    schedule: "0 3 * * *"\n    groups: [g]\n`,
  });

  it("prints a summary and warnings for a valid file, exit 0", async () => {
    const io = fakeIO({ ROTATOR_CONFIG: file("valid.yaml"), MAIN_TOKEN: TOKEN });
    expect(await main(["validate"], io)).toBe(0);
    const out = io.stdout.join("\n");
    expect(out).toContain(`${file("valid.yaml")}: valid`);
    expect(out).toContain("2 accounts, 1 policy, 3 groups");
    expect(out).toContain('policy nightly: "0 3 * * *" Europe/Berlin, 3 groups, account main, jitter 15m');
    expect(io.stderr).toEqual([
      "warning: account spare: the environment variable SPARE_TOKEN is not set",
      "warning: account spare is not used by any policy",
    ]);
    expect(`${out}${io.stderr.join("")}`).not.toContain(TOKEN);
  });

  it("exits 2 when a policy's account has no token, naming the policy's path and the variable", async () => {
    const io = fakeIO({ ROTATOR_CONFIG: file("valid.yaml"), SPARE_TOKEN: TOKEN });
    expect(await main(["validate"], io)).toBe(2);
    const err = io.stderr.join("\n");
    expect(err).toContain(`invalid policy file ${file("valid.yaml")}:`);
    expect(err).toContain(
      "policies[0].account: account main has no token: the environment variable MAIN_TOKEN is not set",
    );
    expect(io.stdout).toEqual([]);
    expect(err).not.toContain(TOKEN);
  });

  it("with --allow-missing-tokens checks the file alone: a missing token only warns", async () => {
    const io = fakeIO({ ROTATOR_CONFIG: file("valid.yaml") });
    expect(await main(["validate", "--allow-missing-tokens"], io)).toBe(0);
    expect(io.stdout.join("\n")).toContain(`${file("valid.yaml")}: valid`);
    expect(io.stderr).toContain("warning: account main: the environment variable MAIN_TOKEN is not set");
  });

  it("exits 2 naming the file and the path for a bad schedule", async () => {
    const io = fakeIO({ ROTATOR_CONFIG: file("bad-cron.yaml") });
    expect(await main(["validate"], io)).toBe(2);
    const err = io.stderr.join("\n");
    expect(err).toContain(file("bad-cron.yaml"));
    expect(err).toContain("policies[0].schedule: ");
    expect(io.stdout).toEqual([]);
  });

  it("exits 2 for an invalid JSON file, a token in the file, and a missing file", async () => {
    const json = fakeIO({ ROTATOR_CONFIG: file("bad.json") });
    expect(await main(["validate"], json)).toBe(2);
    expect(json.stderr.join("\n")).toContain("policies[0].groups: ");

    const token = fakeIO({ ROTATOR_CONFIG: file("token.yaml") });
    expect(await main(["validate"], token)).toBe(2);
    expect(token.stderr.join("\n")).toContain("accounts.main.token: unknown key");
    expect(token.stderr.join("\n")).not.toContain(TOKEN);

    const missing = fakeIO({ ROTATOR_CONFIG: file("missing.yaml") });
    expect(await main(["validate"], missing)).toBe(2);
    expect(missing.stderr.join("\n")).toContain(`cannot read ${file("missing.yaml")}: not found`);
  });

  it("exits 2 on bad usage", async () => {
    const io = fakeIO({ ROTATOR_CONFIG: file("valid.yaml") });
    expect(await main(["validate", "--bogus"], io)).toBe(2);
  });

  it("runs the Graph check hook with --check-graph: a finding exits 2, else an unreachable Graph 1", async () => {
    const seen: GraphCheckInput[] = [];
    const answers: GraphCheckResult[] = [
      { findings: 0, unreachable: 0 },
      { findings: 1, unreachable: 0 },
      { findings: 0, unreachable: 3 },
      { findings: 2, unreachable: 3 },
    ];
    const command = createValidateCommand({
      checkGraph: (input) => {
        seen.push(input);
        return Promise.resolve(answers[seen.length - 1]!);
      },
    });
    const io = fakeIO({ ROTATOR_CONFIG: file("valid.yaml"), MAIN_TOKEN: TOKEN });
    expect(await command.run(["--check-graph"], io)).toBe(0);
    expect(await command.run(["--check-graph"], io)).toBe(2);
    expect(io.stderr.filter((l) => l.startsWith("error:"))).toEqual([]);
    expect(await command.run(["--check-graph"], io)).toBe(1);
    expect(io.stderr.filter((l) => l.startsWith("error:"))).toEqual([
      "error: the Graph check could not finish: 3 check(s) failed to reach Graph; the policy file itself is valid",
    ]);
    expect(await command.run(["--check-graph"], io)).toBe(2); // mixed: the finding wins
    expect(seen[0]!.config.policies[0]!.name).toBe("nightly");
    expect(await command.run([], io)).toBe(0);
    expect(seen).toHaveLength(4);
  });

  it("without a Graph check implementation, --check-graph fails with E_NOT_AVAILABLE", async () => {
    const io = fakeIO({ ROTATOR_CONFIG: file("valid.yaml"), MAIN_TOKEN: TOKEN });
    await expect(createValidateCommand().run(["--check-graph"], io)).rejects.toMatchObject({
      code: "E_NOT_AVAILABLE",
    });
  });
});
