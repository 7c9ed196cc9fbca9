import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli.js";
import type { CommandIO } from "../../src/commands/command.js";

/**
 * `validate` treats a signed link without ROTATOR_LINK_SECRET as it treats a policy without its
 * token: exit 2 naming the link's path and the variable, a warning with `--allow-missing-tokens`.
 */
const SECRET = "validate-link-secret-0123456789";

function fakeIO(env: Record<string, string | undefined>): CommandIO & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { env, stdout, stderr, out: (line) => stdout.push(line), err: (line) => stderr.push(line) };
}

describe("validate and signed links", () => {
  let dir = "";
  let file = "";
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "rotator-vlinks-"));
    file = join(dir, "links.yaml");
    await writeFile(
      file,
      [
        "policies:",
        "  - name: nightly",
        '    schedule: "0 3 * * *"',
        '    groups: ["A", "B"]',
        "links:",
        "  - slug: open",
        '    groups: ["A"]',
        "  - slug: vip",
        '    groups: ["B"]',
        "    signed: true",
      ].join("\n"),
    );
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const env = { WHATSAPP_ACCESS_TOKEN: "EAAG-unit-test-token-4411" };

  it("exits 2 naming links[1].signed and ROTATOR_LINK_SECRET when the secret is unset", async () => {
    const io = fakeIO({ ...env, ROTATOR_CONFIG: file });
    expect(await main(["validate"], io)).toBe(2);
    const err = io.stderr.join("\n");
    expect(err).toContain(`invalid policy file ${file}:`);
    expect(err).toMatch(/links\[1\]\.signed: link vip is signed, but ROTATOR_LINK_SECRET is not set/);
    expect(io.stdout).toEqual([]);
  });

  it("warns with --allow-missing-tokens, and is valid once the secret is set (never printing it)", async () => {
    const allowed = fakeIO({ ...env, ROTATOR_CONFIG: file });
    expect(await main(["validate", "--allow-missing-tokens"], allowed)).toBe(0);
    expect(allowed.stderr.join("\n")).toMatch(/warning: links\[1\]\.signed: .*ROTATOR_LINK_SECRET/);

    const set = fakeIO({ ...env, ROTATOR_CONFIG: file, ROTATOR_LINK_SECRET: SECRET });
    expect(await main(["validate"], set)).toBe(0);
    expect(set.stderr).toEqual([]);
    expect([...set.stdout, ...set.stderr].join("\n")).not.toContain(SECRET);
  });
});
