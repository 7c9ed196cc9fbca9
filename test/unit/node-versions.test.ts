import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT } from "../helpers/cli.js";

/**
 * .ci/run tests the image's Node major, which it reads from the Dockerfile; the README says which
 * Node versions are supported and what runs on which. These must not drift apart.
 */
const read = (file: string) => readFileSync(join(ROOT, file), "utf8");
const ciRun = read(".ci/run");
const readme = read("README.md");
const dockerfile = read("Dockerfile");

/** The command .ci/run reads the major with: `image_node_major="$(…)"`. */
const majorCommand = /^image_node_major="\$\((.+)\)"$/m.exec(ciRun)?.[1];

const dirs: string[] = [];
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

/** Runs .ci/run's command in a folder whose Dockerfile is `text`. */
function majorOf(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), "wa-rotator-ci-"));
  dirs.push(dir);
  writeFileSync(join(dir, "Dockerfile"), text);
  return execFileSync("bash", ["-c", majorCommand!], { cwd: dir, encoding: "utf8" }).trim();
}

/** The README's section of that name, up to the next heading. */
function section(heading: string): string {
  const start = readme.indexOf(`\n${heading}\n`);
  expect(start, heading).toBeGreaterThan(-1);
  return readme.slice(start, readme.indexOf("\n#", start + heading.length + 2));
}

describe(".ci/run and the image's Node", () => {
  it("finds the major of the Dockerfile's FROM node line", () => {
    expect(majorCommand).toBeDefined();
    const major = /^FROM node:(\d+)\b/m.exec(dockerfile)?.[1];
    expect(major).toBeDefined();
    expect(majorOf(dockerfile)).toBe(major);
  });

  it.each([
    ["FROM node:26-bookworm-slim AS build", "26"],
    ["FROM node:24.11.1-alpine", "24"],
    ["FROM node:22 AS build", "22"],
    ["FROM node:28", "28"],
    ["FROM debian:12-slim\nFROM node:26-slim AS runtime", "26"],
    ["FROM debian:12-slim", ""],
    ["FROM node:lts-slim", ""],
    ["FROM node:260x", ""],
  ])("reads %j as %j", (text, major) => {
    expect(majorOf(`# syntax=docker/dockerfile:1\n${text}\n`)).toBe(major);
  });

  it("says why when it skips the image's Node, and ends with the summed counts", () => {
    expect(ciRun).toMatch(/no FROM line of the Dockerfile names node:<major>/);
    expect(ciRun).toMatch(/no node-linux package for this machine's architecture/);
    expect(ciRun).toMatch(/could not be installed from the registry: /);
    expect(ciRun).toMatch(/echo "ci: skipped the tests on the image's Node, .*\$image_node_skip"/);
    expect(ciRun.trimEnd().split("\n").slice(-3).join("\n")).toContain(
      "console.log(`${passed} passed, ${failed} failed`);",
    );
  });
});

describe("README Node.js versions", () => {
  it("states the minimum package.json engines.node names, wherever it states one", () => {
    const engines = (JSON.parse(read("package.json")) as { engines: { node: string } }).engines.node;
    const minimum = /^>=(\d+\.\d+)$/.exec(engines)?.[1];
    expect(minimum, `engines.node ${engines}`).toBeDefined();
    const stated = [...readme.matchAll(/Node\.js (\d+(?:\.\d+)*) or newer/g)].map((m) => m[1]);
    expect(stated.length).toBeGreaterThanOrEqual(2);
    expect(new Set(stated)).toEqual(new Set([minimum]));
  });

  it("names the image's Node and every file .ci/run runs on it", () => {
    const text = section("### Node.js versions");
    const image = /^FROM (node:\S+)/m.exec(dockerfile)![1]!;
    expect(text).toContain(`\`${image}\``);
    const list = /^IMAGE_NODE_TESTS=\(\n([\s\S]*?)\n\)$/m.exec(ciRun)?.[1];
    expect(list).toBeDefined();
    const files = list!.split("\n").map((line) => line.trim());
    expect(files).toContain("test/unit");
    for (const file of files) expect(text, file).toContain(`\`${file}\``);
  });
});
