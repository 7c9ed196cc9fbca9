import { describe, expect, it } from "vitest";
import { loadSettings } from "../../src/config/settings.js";
import { EnvironmentError } from "../../src/core/errors.js";

/** GATEWAY_ROTATION_WAIT is "a bounded moment": 10 s at most, a larger value an error naming it. */
describe("GATEWAY_ROTATION_WAIT", () => {
  it("defaults to 2 s and accepts up to 10 s", () => {
    expect(loadSettings({}).GATEWAY_ROTATION_WAIT).toBe(2_000);
    expect(loadSettings({ GATEWAY_ROTATION_WAIT: "10s" }).GATEWAY_ROTATION_WAIT).toBe(10_000);
    expect(loadSettings({ GATEWAY_ROTATION_WAIT: "0ms" }).GATEWAY_ROTATION_WAIT).toBe(0);
  });

  it("refuses more than 10 s with an EnvironmentError naming the variable", () => {
    for (const value of ["10001ms", "11s", "1m", "1d"]) {
      let error: unknown;
      try {
        loadSettings({ GATEWAY_ROTATION_WAIT: value });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(EnvironmentError);
      expect((error as EnvironmentError).issues).toEqual([
        { path: "GATEWAY_ROTATION_WAIT", message: `at most 10s, got ${value}` },
      ]);
    }
  });
});
