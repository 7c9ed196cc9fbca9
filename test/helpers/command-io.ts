import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import type { CommandIO } from "../../src/commands/command.js";

/** A command's IO over `env` that keeps what it prints, line by line. */
export function fakeIO(
  env: Record<string, string | undefined>,
): CommandIO & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { env, stdout, stderr, out: (line) => stdout.push(line), err: (line) => stderr.push(line) };
}

/**
 * A temporary folder for the suite it is called in, holding `files` (name → text): made before its
 * first test, removed after its last. Returns the path of a file in it.
 */
export function tempDir(prefix: string, files: Record<string, string> = {}): (name: string) => string {
  let dir = "";
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix));
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  return (name) => join(dir, name);
}
