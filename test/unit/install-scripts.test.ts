import { readFileSync } from "node:fs";
import { expect, it } from "vitest";

/**
 * `npm ci` prints a warning for every dependency whose install script package.json's
 * `allowScripts` does not decide (npm 11), and npm 12 skips such scripts: each one is decided here.
 * msgpackr-extract (BullMQ's optional native msgpack speed-up) is declined: its prebuilt binary
 * comes in an optional package of its own and loads without the script.
 */
it("decides every dependency install script in allowScripts", () => {
  const read = (file: string) => JSON.parse(readFileSync(new URL(`../../${file}`, import.meta.url), "utf8"));
  const pkg = read("package.json") as { allowScripts?: Record<string, boolean> };
  const lock = read("package-lock.json") as {
    packages: Record<string, { hasInstallScript?: boolean }>;
  };
  const withScripts = Object.entries(lock.packages)
    .filter(([, entry]) => entry.hasInstallScript)
    .map(([path]) => path.slice(path.lastIndexOf("node_modules/") + "node_modules/".length));
  expect(withScripts.length).toBeGreaterThan(0);
  const undecided = withScripts.filter((name) => typeof pkg.allowScripts?.[name] !== "boolean");
  expect(undecided).toEqual([]);
});
