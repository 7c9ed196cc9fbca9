import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CLI, ROOT, runCli } from "../helpers/cli.js";

const COMMANDS = ["start", "worker", "scheduler", "rotate", "plan", "validate", "status", "graph-sim"];

describe("the CLI", () => {
  it("lists every contract command in its help and exits 0 for --help", async () => {
    const { code, stdout } = await runCli(["--help"], {});
    expect(code).toBe(0);
    for (const name of COMMANDS) expect(stdout).toMatch(new RegExp(`^  ${name}\\b`, "m"));
  });

  it("exits 2 with the help on stderr for an unknown command, and 2 for no command", async () => {
    const unknown = await runCli(["rotat"], {});
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command: rotat");
    expect(unknown.stderr).toContain("usage: wa-invite-rotator <command>");
    expect((await runCli([], {})).code).toBe(2);
  });

  it("prints the package version", async () => {
    const pkg = JSON.parse(readFileSync(`${ROOT}/package.json`, "utf8")) as { version: string };
    const { code, stdout } = await runCli(["--version"], {});
    expect(code).toBe(0);
    expect(stdout.trim()).toBe(pkg.version);
  });

  it("exits 2 naming the usage for a bad option", async () => {
    const { code, stderr } = await runCli(["plan", "--count", "many"], {
      ROTATOR_CONFIG: "config/rotation.example.yaml",
    });
    expect(code).toBe(2);
    expect(stderr).toContain("usage: wa-invite-rotator plan");
  });

  it("keeps its exit code and prints no stack when the reader of stdout goes away (| head)", async () => {
    // The reader closes before the first write, so every write after it meets a closed pipe.
    const child = spawn(process.execPath, [CLI, "--help"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(stderr).not.toContain("EPIPE");
    expect(code).toBe(0);
  });
});
