import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { runCliWhile } from "../helpers/cli.js";
import { freePort } from "../../scripts/redis-server.js";
import { uniquePrefix } from "../helpers/redis.js";

/** A worker's environment: the policy file, main's token, and a Redis that does not answer. */
const workerEnv = async (file: string) => ({
  ROTATOR_CONFIG: file,
  MAIN_TOKEN: "main-token-present-123",
  REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
  ROTATOR_PREFIX: uniquePrefix("token"),
  HEALTH_PORT: "0",
  ROTATOR_SHUTDOWN_TIMEOUT: "1s",
});

it("worker warns at start, once per account, when an account has no token", async () => {
  const dir = mkdtempSync(join(tmpdir(), "wa-rotator-token-"));
  try {
    const file = join(dir, "policy.yaml");
    writeFileSync(
      file,
      [
        "accounts:",
        "  main: { token_env: MAIN_TOKEN }",
        "  partner: { token_env: PARTNER_TOKEN }",
        "policies:",
        "  - { name: a, account: main, schedule: '0 3 * * *', groups: ['G1'] }",
        "  - { name: b, account: partner, schedule: '0 3 * * *', groups: ['G2'] }",
      ].join("\n"),
    );
    // No Redis answers: the warning must not wait for one.
    const env = await workerEnv(file);
    const proc = await runCliWhile(["worker"], env, async (proc) => {
      await proc.waitFor("has no token");
      await proc.waitFor("wa-invite-rotator starting");
    });
    const warnings = proc.logged<{ level: string; account: string; tokenEnv: string; msg: string }>(
      "has no token",
    );
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: "warn", account: "partner", tokenEnv: "PARTNER_TOKEN" });
    expect(warnings[0]!.msg).toContain("PARTNER_TOKEN is not set; its rotations will fail");
    expect(proc.stdout()).not.toContain("main-token-present-123");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it("worker warns after an applied reload that adds an account without its token", async () => {
  const dir = mkdtempSync(join(tmpdir(), "wa-rotator-token-"));
  try {
    const file = join(dir, "policy.yaml");
    const main = [
      "accounts:",
      "  main: { token_env: MAIN_TOKEN }",
      "policies:",
      "  - { name: a, account: main, schedule: '0 3 * * *', groups: ['G1'] }",
    ];
    writeFileSync(file, main.join("\n"));
    const env = await workerEnv(file);
    const proc = await runCliWhile(["worker"], env, async (proc) => {
      await proc.waitFor("wa-invite-rotator starting");
      expect(proc.stdout()).not.toContain("has no token");
      writeFileSync(
        file,
        [
          ...main.slice(0, 2),
          "  partner: { token_env: PARTNER_TOKEN }",
          ...main.slice(2),
          "  - { name: b, account: partner, schedule: '0 3 * * *', groups: ['G2'] }",
        ].join("\n"),
      );
      proc.kill("SIGHUP");
      await proc.waitFor("policy file reloaded");
      await proc.waitFor("has no token");
    });
    const warnings = proc.logged<{ level: string; account: string; policies: string[]; msg: string }>(
      "has no token",
    );
    expect(warnings[0]).toMatchObject({ level: "warn", account: "partner", policies: ["b"] });
    expect(warnings[0]!.msg).toContain("PARTNER_TOKEN is not set; its rotations will fail");
    expect(proc.stdout()).not.toContain("main-token-present-123");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
