import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli.js";
import type { CommandIO } from "../../src/commands/command.js";

/**
 * The README's quick start against the real Cloud API, as written: its `cp` makes a file git
 * ignores (no tracked file is overwritten), its `export`s point ROTATOR_CONFIG at that copy and set
 * every token the copied example needs, so its `validate` passes with nothing else set.
 */
const root = fileURLToPath(new URL("../..", import.meta.url));

function quickStartBlock(): string[] {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const at = readme.indexOf("Against the real Cloud API");
  expect(at, "README has the real-API quick start").toBeGreaterThan(0);
  const open = readme.indexOf("```sh\n", at);
  const close = readme.indexOf("\n```", open + 6);
  return readme
    .slice(open + 6, close)
    .split("\n")
    .map((line) => line.replace(/\s+#.*$/, "").trim());
}

const git = (...args: string[]) => execFileSync("git", args, { cwd: root, encoding: "utf8" });

describe("README quick start (real API)", () => {
  const lines = quickStartBlock();
  const copies = lines.flatMap((line) => {
    const m = /^cp (\S+) (\S+)$/.exec(line);
    return m ? [{ from: m[1]!, to: m[2]! }] : [];
  });
  const exports = Object.fromEntries(
    lines.flatMap((line) => {
      const m = /^export ([A-Z_][A-Z0-9_]*)=(\S*)$/.exec(line);
      return m ? [[m[1]!, m[2]!] as const] : [];
    }),
  );
  const dir = mkdtempSync(join(tmpdir(), "quick-start-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("copies the example to a file git ignores and does not track, and points ROTATOR_CONFIG at it", () => {
    expect(copies).toHaveLength(1);
    const { from, to } = copies[0]!;
    expect(existsSync(join(root, from))).toBe(true);
    expect(git("ls-files", "--", to).trim(), `${to} is tracked`).toBe("");
    expect(git("check-ignore", "--no-index", "--", to).trim()).toBe(to);
    expect(exports.ROTATOR_CONFIG).toBe(to);
  });

  it("validates the copied example with only the exported variables set (exit 0)", async () => {
    const { from, to } = copies[0]!;
    // The copy, made where the test may write, under the name the README gives it.
    const copy = join(dir, to);
    mkdirSync(dirname(copy), { recursive: true });
    copyFileSync(join(root, from), copy);
    const env: Record<string, string> = {};
    for (const [name, value] of Object.entries(exports))
      env[name] = value === "..." ? `${name}-value` : value;
    env.ROTATOR_CONFIG = copy;
    const out: string[] = [];
    const err: string[] = [];
    const io: CommandIO = { env, out: (l) => out.push(l), err: (l) => err.push(l) };
    expect(lines).toContain("node dist/src/cli.js validate");
    const code = await main(["validate"], io);
    expect({ code, err }).toEqual({ code: 0, err: [] });
    expect(out[0]).toBe(`${copy}: valid`);
  });
});
