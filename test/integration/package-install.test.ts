import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { ROOT } from "../helpers/cli.js";

/**
 * A downstream service installs the package from git or from a tarball. A fresh checkout has no
 * dist/: `npm pack` (and a git install, which packs the same way) must build it through `prepare`.
 * The test packs a copy of the tracked files (no dist/, node_modules linked), installs the tarball in
 * a temporary project without the network (its dependencies linked from this checkout), and imports
 * both entry points by package name, and runs its bin.
 */
const work = mkdtempSync(join(tmpdir(), "wa-rotator-pack-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

it(
  "npm pack of a fresh checkout builds and installs; both entry points import by name",
  { timeout: 180_000 },
  () => {
    const checkout = join(work, "checkout");
    mkdirSync(checkout);
    // The tracked files as they are in the working tree, like a clone: no dist/.
    const files = execFileSync("git", ["ls-files", "-z"], { cwd: ROOT, encoding: "utf8" })
      .split("\0")
      .filter((f) => f !== "");
    execFileSync("tar", ["-cf", join(work, "tracked.tar"), "--ignore-failed-read", ...files], { cwd: ROOT });
    execFileSync("tar", ["-xf", join(work, "tracked.tar")], { cwd: checkout });
    symlinkSync(join(ROOT, "node_modules"), join(checkout, "node_modules"), "dir");

    const packed = JSON.parse(
      execFileSync("npm", ["pack", "--json", "--offline", "--pack-destination", work], {
        cwd: checkout,
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      }),
    ) as [{ filename: string; files: { path: string }[] }];
    const paths = packed[0].files.map((f) => f.path);
    expect(paths).toContain("dist/src/index.js");
    expect(paths).toContain("dist/src/publish/subscriber.js");
    expect(paths).toContain("dist/src/cli.js");
    expect(paths.some((p) => p.startsWith("src/") || p.startsWith("test/"))).toBe(false);

    // A downstream project: the package from the tarball, its dependencies from this checkout.
    const project = join(work, "project");
    const installed = join(project, "node_modules", "wa-invite-rotator");
    mkdirSync(installed, { recursive: true });
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "downstream", type: "module" }));
    execFileSync("tar", ["-xzf", join(work, packed[0].filename), "-C", installed, "--strip-components=1"]);
    const pkg = JSON.parse(readFileSync(join(installed, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    for (const dep of Object.keys(pkg.dependencies)) {
      const target = join(project, "node_modules", dep);
      mkdirSync(join(target, ".."), { recursive: true });
      symlinkSync(join(ROOT, "node_modules", dep), target, "dir");
    }

    const script = [
      'const lib = await import("wa-invite-rotator");',
      'const sub = await import("wa-invite-rotator/subscriber");',
      "console.log(JSON.stringify({ channel: lib.DEFAULT_CHANNEL, subscribe: typeof sub.subscribe, parse: typeof lib.parseMessage }));",
    ].join("\n");
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
      cwd: project,
      encoding: "utf8",
    });
    expect(JSON.parse(out)).toEqual({
      channel: "whatsapp:invite-links",
      subscribe: "function",
      parse: "function",
    });
    const version = execFileSync(process.execPath, [join(installed, "dist/src/cli.js"), "--version"], {
      cwd: project,
      encoding: "utf8",
    });
    expect(version.trim()).toBe(
      (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version,
    );
  },
);
