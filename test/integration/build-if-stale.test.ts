import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT } from "../helpers/cli.js";

/**
 * `npm run demo` runs scripts/build-if-stale.mjs before the demo: it compiles only when a source is
 * newer than the build. Run here in a project of the checkout's shape whose `npm run build` only
 * counts its runs and writes the two outputs, so each case takes a moment instead of a tsc.
 */
const SCRIPT = join(ROOT, "scripts", "build-if-stale.mjs");
const project = mkdtempSync(join(tmpdir(), "wa-rotator-stale-"));
afterAll(() => rmSync(project, { recursive: true, force: true }));

function write(file: string, text: string): void {
  mkdirSync(dirname(join(project, file)), { recursive: true });
  writeFileSync(join(project, file), text);
}

/** Sets a file's modification time to `secondsAgo` before now. */
function age(file: string, secondsAgo: number): void {
  const at = Date.now() / 1000 - secondsAgo;
  utimesSync(join(project, file), at, at);
}

const builds = () =>
  existsSync(join(project, "builds.log")) ? readFileSync(join(project, "builds.log"), "utf8").length : 0;

/** Runs the script as `npm run demo` does. */
function buildIfStale(): void {
  execFileSync(process.execPath, [SCRIPT], { cwd: project, stdio: "pipe" });
}

write(
  "package.json",
  JSON.stringify({ name: "stale-check", private: true, scripts: { build: "node build.mjs" } }),
);
write(
  "build.mjs",
  [
    'import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";',
    'appendFileSync("builds.log", "x");',
    'mkdirSync("dist/src", { recursive: true });',
    'mkdirSync("dist/scripts", { recursive: true });',
    'writeFileSync("dist/src/cli.js", "");',
    'writeFileSync("dist/scripts/demo.js", "");',
  ].join("\n"),
);
const SOURCES = ["tsconfig.json", "src/cli.ts", "src/commands/start.ts", "scripts/demo.ts"];
for (const file of SOURCES) write(file, "");
write("config/demo.yaml", "policies: []\n");

describe("build-if-stale (npm run demo)", () => {
  it("compiles once, and not again while the build is current", () => {
    buildIfStale();
    expect(builds()).toBe(1);
    buildIfStale();
    expect(builds()).toBe(1);
  });

  it("does not compile for a policy file, a README or a script tsc does not compile", () => {
    for (const file of [...SOURCES, "package.json", "build.mjs"]) age(file, 7200);
    for (const file of ["dist/src/cli.js", "dist/scripts/demo.js"]) age(file, 3600);
    // Newer than the build: files an operator or a developer edits that are not compiled.
    write("config/local.yaml", "policies: []\n");
    write("config/demo.yaml", "policies: []\n");
    write("README.md", "# edited\n");
    write("scripts/build-if-stale.mjs", "// edited\n");
    buildIfStale();
    expect(builds()).toBe(1);
  });

  it.each(["src/commands/start.ts", "scripts/demo.ts", "tsconfig.json", "package.json"])(
    "compiles after %s changed, then not again",
    (file) => {
      const before = builds();
      age("dist/src/cli.js", 3600);
      age(file, 0);
      buildIfStale();
      expect(builds()).toBe(before + 1);
      buildIfStale();
      expect(builds()).toBe(before + 1);
    },
  );
});
