import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";
import { ROOT } from "../helpers/cli.js";

const pkg = JSON.parse(
  readFileSync(fileURLToPath(new URL("../../package.json", import.meta.url)), "utf8"),
) as {
  name: string;
  bin: Record<string, string>;
  main: string;
  types: string;
  exports: Record<string, string>;
  files: string[];
  engines: { node: string };
};

it("names its bin wa-invite-rotator and every entry point exists once built", () => {
  expect(pkg.name).toBe("wa-invite-rotator");
  expect(Object.keys(pkg.bin)).toEqual(["wa-invite-rotator"]);
  for (const file of [...Object.values(pkg.bin), pkg.main, pkg.types, ...Object.values(pkg.exports)]) {
    expect(existsSync(`${ROOT}/${file}`), file).toBe(true);
  }
  expect(
    readFileSync(`${ROOT}/${pkg.bin["wa-invite-rotator"]}`, "utf8").startsWith("#!/usr/bin/env node"),
  ).toBe(true);
});

it("packs and copies into the image only paths that exist once built", () => {
  for (const file of pkg.files)
    expect(existsSync(`${ROOT}/${file}`), `package.json files: ${file}`).toBe(true);
  const dockerfile = readFileSync(`${ROOT}/Dockerfile`, "utf8");
  const sources = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
  expect(sources).toContain("src");
  for (const source of sources)
    expect(existsSync(`${ROOT}/${source}`), `Dockerfile COPY ${source}`).toBe(true);
});

it("exports the subscriber and message helpers from its main entry, and not the simulator", async () => {
  const lib = (await import(`${ROOT}/${pkg.main}`)) as Record<string, unknown>;
  for (const name of ["subscribe", "parseMessage", "verifySignature", "canonicalPayload", "signMessage"]) {
    expect(typeof lib[name], name).toBe("function");
  }
  expect(lib.DEFAULT_CHANNEL).toBe("whatsapp:invite-links");
  expect(lib).not.toHaveProperty("startGraphSimulator");
});

it("serves the Graph simulator from the wa-invite-rotator/testing subpath, by package name", () => {
  // A child node resolves the package by name through its `exports`, as an installed package is.
  const script = [
    'const t = await import("wa-invite-rotator/testing");',
    "const sim = await t.startGraphSimulator();",
    "const res = await fetch(`${sim.url}/__sim/groups`);",
    "console.log(JSON.stringify({ status: res.status, faults: typeof t.simFaults.transient }));",
    "await sim.close();",
  ].join("\n");
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: ROOT,
    encoding: "utf8",
  });
  expect(JSON.parse(out)).toEqual({ status: 200, faults: "function" });
});
