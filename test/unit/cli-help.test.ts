import { afterEach, describe, expect, it, vi } from "vitest";
import type { CommandIO } from "../../src/commands/command.js";
import { COMMANDS, nearestCommand } from "../../src/commands/registry.js";

function capture(): CommandIO & { stdout: () => string; stderr: () => string } {
  let out = "";
  let err = "";
  return {
    env: {},
    out: (line) => void (out += `${line}\n`),
    err: (line) => void (err += `${line}\n`),
    stdout: () => out,
    stderr: () => err,
  };
}

/**
 * What no help output may load: the heavy packages, and the modules only a running command needs
 * (help loads the registry and the printer, nothing else).
 */
const loaded = new Set<string>();
for (const name of [
  "bullmq",
  "ioredis",
  "undici",
  "pino",
  "prom-client",
  "../../src/core/errors.js",
  "../../src/infra/redact.js",
]) {
  vi.doMock(name, () => {
    loaded.add(name);
    return {};
  });
}

afterEach(() => loaded.clear());

describe("CLI help", () => {
  it("prints the command list, every command's help and `help <command>` without loading any command", async () => {
    const { main } = await import("../../src/cli.js");
    const io = capture();
    expect(await main(["--help"], io)).toBe(0);
    for (const spec of COMMANDS) {
      expect(await main([spec.name, "--help"], io)).toBe(0);
      expect(await main(["help", spec.name], io)).toBe(0);
    }
    expect(io.stderr()).toBe("");
    expect([...loaded]).toEqual([]);
  });

  it("lists each option of a command with its default and unit", async () => {
    const { main } = await import("../../src/cli.js");
    const io = capture();
    expect(await main(["help", "rotate"], io)).toBe(0);
    expect(io.stdout()).toContain("usage: wa-invite-rotator rotate <group_id>...");
    expect(io.stdout()).toMatch(/--timeout <duration> +how long --wait waits in all \(default: 2m\)/);
    expect(io.stdout()).toMatch(/^exit: 0 all rotated/m);
    const plan = capture();
    await main(["plan", "-h"], plan);
    expect(plan.stdout()).toMatch(/--count N +fires per policy, 1 to 1000 \(default: 5\)/);
  });

  it("suggests the nearest command for a typo and exits 2; help of an unknown topic too", async () => {
    const { main } = await import("../../src/cli.js");
    const io = capture();
    expect(await main(["stauts"], io)).toBe(2);
    expect(io.stderr()).toContain("unknown command: stauts\ndid you mean: wa-invite-rotator status?");
    const topic = capture();
    expect(await main(["help", "valdate"], topic)).toBe(2);
    expect(topic.stderr()).toContain("did you mean: wa-invite-rotator validate?");
    const far = capture();
    expect(await main(["deploy-everything"], far)).toBe(2);
    expect(far.stderr()).not.toContain("did you mean");
  });

  it("finds the nearest command by prefix or by up to two edits", () => {
    expect(nearestCommand("rot")).toBe("rotate");
    expect(nearestCommand("stat")).toBe("status");
    expect(nearestCommand("wroker")).toBe("worker");
    expect(nearestCommand("graphsim")).toBe("graph-sim");
    expect(nearestCommand("xyz")).toBeUndefined();
  });
});
