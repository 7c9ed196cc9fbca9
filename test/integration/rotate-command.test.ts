import { describe, expect, it } from "vitest";
import rotate from "../../src/commands/rotate.js";
import { UsageError } from "../../src/core/errors.js";
import { runCli } from "../helpers/cli.js";

/** `rotate` checks its group ids as the policy file does, before it loads anything. */
// No Redis at this address: were the check ever to pass bad ids on, nothing reaches a real Redis.
const io = {
  env: { REDIS_URL: "redis://127.0.0.1:1", ROTATOR_PREFIX: "rotate-command-test" },
  out: () => {},
  err: () => {},
};

describe("rotate command", () => {
  it.each([
    [[""], /group id "": an empty group id/],
    [["a b"], /group id "a b": a group id that contains whitespace/],
    [["G1", "x".repeat(257)], /a group id longer than 256 characters/],
    [["tab\there"], /contains whitespace/],
    // The contract's rule: `.` and `..` would be sent as path steps (DELETE /v23.0/../invite_link).
    [["."], /group id ".": the group id "." \(a path step/],
    [["G1", ".."], /group id "..": the group id ".." \(a path step/],
    [["caf\u00e9"], /printable ASCII/],
    [["a\u0000b"], /printable ASCII/],
  ])("rejects %j as usage", async (groups, message) => {
    const run = rotate.run(groups, io);
    await expect(run).rejects.toBeInstanceOf(UsageError);
    await expect(rotate.run(groups, io)).rejects.toThrow(message);
  });

  it("names every bad id and exits 2 without enqueuing anything", async () => {
    // No Redis at this address: a check after connecting would fail with exit 1 instead.
    const { code, stderr } = await runCli(["rotate", "", "a b"], {
      REDIS_URL: "redis://127.0.0.1:1",
      ROTATOR_CONFIG: "config/rotation.example.yaml",
    });
    expect(code).toBe(2);
    expect(stderr).toContain('group id "": an empty group id');
    expect(stderr).toContain('group id "a b"');
  });
});
