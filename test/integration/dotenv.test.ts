import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CLI } from "../helpers/cli.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Runs `validate` in a fresh directory holding a policy file and the given `.env`. */
function validateIn(dotEnv: string | undefined, env: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), "wa-rotator-dotenv-"));
  dirs.push(dir);
  writeFileSync(
    join(dir, "policy.yaml"),
    'policies:\n  - name: p\n    schedule: "0 3 * * *"\n    groups: ["G1"]\n',
  );
  if (dotEnv !== undefined) writeFileSync(join(dir, ".env"), dotEnv);
  return spawnSync(process.execPath, [CLI, "validate"], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? "", ...env },
    encoding: "utf8",
  });
}

describe(".env", () => {
  it("is read from the working directory: its policy file and token are used", () => {
    const run = validateIn("ROTATOR_CONFIG=policy.yaml\nWHATSAPP_ACCESS_TOKEN=from-dotenv-token\n");
    expect(run.stderr).toBe("");
    expect(run.stdout).toContain("policy.yaml: valid");
    expect(run.status).toBe(0);
  });

  it("loses to the real environment, even to a variable set empty", () => {
    const dotEnv =
      "ROTATOR_CONFIG=policy.yaml\nWHATSAPP_ACCESS_TOKEN=t0ken-t0ken\nHEALTH_PORT=not-a-port\nLOG_LEVEL=loud\n";
    const run = validateIn(dotEnv, { HEALTH_PORT: "9000", LOG_LEVEL: "" });
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    const without = validateIn(dotEnv);
    expect(without.status).toBe(2);
    expect(without.stderr).toContain("HEALTH_PORT");
  });

  it("is optional", () => {
    const run = validateIn(undefined, {
      ROTATOR_CONFIG: "policy.yaml",
      WHATSAPP_ACCESS_TOKEN: "t0ken-t0ken",
    });
    expect(run.status).toBe(0);
  });
});
