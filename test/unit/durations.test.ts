import { describe, expect, it } from "vitest";
import { loadSettings } from "../../src/config/settings.js";
import { formatDuration, parseDuration } from "../../src/core/durations.js";
import { ConfigError, EnvironmentError } from "../../src/core/errors.js";

describe("durations", () => {
  it.each<[string, number]>([
    ["0", 0],
    ["500ms", 500],
    ["30s", 30_000],
    ["1.5m", 90_000],
    ["2h", 7_200_000],
    ["1d", 86_400_000],
    ["1h30m", 5_400_000],
    ["1d12h", 129_600_000],
    ["2m30s", 150_000],
    ["1s500ms", 1_500],
    ["1d2h3m4s5ms", 93_784_005],
    [" 1h30m ", 5_400_000],
  ])("reads %s", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["", "15", "h", "1h 30m", "30m1h", "1h1h", "1m5", "5 minutes", "-1s", "1hour", "1h30"])(
    "rejects %j",
    (text) => {
      expect(parseDuration(text)).toBeUndefined();
    },
  );

  it("writes the largest units first, and reads back what it writes", () => {
    expect(formatDuration(5_400_000)).toBe("1h30m");
    expect(formatDuration(900_000)).toBe("15m");
    expect(formatDuration(1_500)).toBe("1s500ms");
    expect(formatDuration(0)).toBe("0ms");
    for (const ms of [1, 999, 61_000, 3_600_001, 86_400_000 * 3 + 5]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
  });

  it("are compound in the environment too", () => {
    expect(loadSettings({ ROTATOR_SHUTDOWN_TIMEOUT: "1m30s" }).ROTATOR_SHUTDOWN_TIMEOUT).toBe(90_000);
  });
});

describe("an invalid environment", () => {
  it("is called the environment and names the variable, not a policy file", () => {
    let error: unknown;
    try {
      loadSettings({ HEALTH_PORT: "eighty", ROTATOR_SHUTDOWN_TIMEOUT: "soon" });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(EnvironmentError);
    expect(error).toBeInstanceOf(ConfigError); // exit 2, like an invalid policy file
    const message = (error as Error).message;
    expect(message).toMatch(/^invalid environment:\n/);
    expect(message).toContain("  HEALTH_PORT: must be an integer from 0 to 65535, got eighty");
    expect(message).toContain("  ROTATOR_SHUTDOWN_TIMEOUT: not a duration");
    expect(message).not.toContain("policy file");
  });
});
