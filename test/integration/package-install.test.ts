import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { ROOT } from "../helpers/cli.js";

/**
 * A downstream service installs the package from git or from a tarball. A fresh checkout has no
 * dist/: `npm pack` (and a git install, which packs the same way) must build it through `prepare`.
 * The test packs a copy of the tracked files (no dist/, node_modules linked) in which an operator
 * has followed the quick start (config/local.yaml, .env), installs the tarball with
 * `npm install --offline` in a temporary project, imports every entry point by package name and
 * runs the bin npm linked.
 *
 * Offline, npm needs each dependency's registry metadata, which `npm ci` does not cache (it fetches
 * the lockfile's tarball URLs only): the temporary project gets a lockfile with this checkout's
 * versions of the package's dependencies, as a downstream project's own lockfile would have them,
 * and npm takes their tarballs from its cache.
 */
const work = mkdtempSync(join(tmpdir(), "wa-rotator-pack-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const version = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;

/** Files an operator makes beside the tracked ones by the quick start: never in the package. */
const LOCAL_FILES: Record<string, string> = {
  "config/local.yaml": "# an operator's own policy file\npolicies: []\n",
  "config/staging.yaml": "# another one of their own\npolicies: []\n",
  ".env": "WHATSAPP_ACCESS_TOKEN=EAAG-local-token-never-packed\n",
  ".env.local": "ROTATOR_SIGNING_SECRET=local-secret-never-packed\n",
};

function run(command: string, args: string[], cwd: string): string {
  return execFileSync(command, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

it(
  "npm pack of a checkout builds and leaves local files out; npm install of the tarball links the bin and every entry point imports by name",
  { timeout: 180_000 },
  () => {
    const checkout = join(work, "checkout");
    mkdirSync(checkout);
    // The tracked files as they are in the working tree, like a clone: no dist/.
    const tracked = run("git", ["ls-files", "-z"], ROOT)
      .split("\0")
      .filter((f) => f !== "");
    execFileSync("tar", ["-cf", join(work, "tracked.tar"), "--ignore-failed-read", ...tracked], {
      cwd: ROOT,
    });
    execFileSync("tar", ["-xf", join(work, "tracked.tar")], { cwd: checkout });
    symlinkSync(join(ROOT, "node_modules"), join(checkout, "node_modules"), "dir");
    for (const [file, text] of Object.entries(LOCAL_FILES)) writeFileSync(join(checkout, file), text);

    const packed = JSON.parse(
      run("npm", ["pack", "--json", "--offline", "--pack-destination", work], checkout),
    ) as [{ filename: string; files: { path: string }[] }];
    const paths = packed[0].files.map((f) => f.path);
    expect(paths).toContain("dist/src/index.js");
    expect(paths).toContain("dist/src/publish/subscriber.js");
    expect(paths).toContain("dist/src/cli.js");
    expect(paths).toContain("config/rotation.schema.json");
    for (const file of Object.keys(LOCAL_FILES)) expect(paths, file).not.toContain(file);
    // Beyond the build, only tracked files, and none of the sources or tests.
    expect(paths.filter((p) => !p.startsWith("dist/src/") && !tracked.includes(p))).toEqual([]);
    expect(paths.some((p) => p.startsWith("src/") || p.startsWith("test/"))).toBe(false);

    // A downstream project whose lockfile holds the package's dependencies (see above).
    const project = join(work, "project");
    mkdirSync(project);
    writeFileSync(
      join(project, "package.json"),
      JSON.stringify({ name: "downstream", private: true, type: "module" }),
    );
    const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const dependencies = Object.fromEntries(
      Object.entries(lock.packages).filter(([path, entry]) => path.startsWith("node_modules/") && !entry.dev),
    );
    writeFileSync(
      join(project, "package-lock.json"),
      JSON.stringify({
        name: "downstream",
        lockfileVersion: 3,
        requires: true,
        packages: { "": { name: "downstream" }, ...dependencies },
      }),
    );
    run("npm", ["install", "--offline", "--no-audit", "--no-fund", join(work, packed[0].filename)], project);

    const script = [
      'const lib = await import("wa-invite-rotator");',
      'const sub = await import("wa-invite-rotator/subscriber");',
      'const testing = await import("wa-invite-rotator/testing");',
      "console.log(JSON.stringify({",
      "  channel: lib.DEFAULT_CHANNEL,",
      "  parse: typeof lib.parseMessage,",
      "  subscribe: typeof sub.subscribe,",
      "  simulator: typeof testing.startGraphSimulator,",
      "}));",
    ].join("\n");
    expect(JSON.parse(run(process.execPath, ["--input-type=module", "-e", script], project))).toEqual({
      channel: "whatsapp:invite-links",
      parse: "function",
      subscribe: "function",
      simulator: "function",
    });
    // The bin, as npm linked it into node_modules/.bin.
    expect(run("npx", ["--offline", "--no-install", "wa-invite-rotator", "--version"], project).trim()).toBe(
      version,
    );
  },
);
