import { writeFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { main } from "../../src/cli.js";
import type { PlannedPolicy } from "../../src/commands/plan.js";
import { fakeIO, tempDir } from "../helpers/command-io.js";

describe("plan", () => {
  const path = tempDir("rotator-plan-", {
    "rotation.yaml": [
      "accounts:",
      '  main: { token_env: MAIN_TOKEN, phone_number_id: "1555" }',
      "policies:",
      "  - name: berlin",
      "    account: main",
      '    schedule: "30 2 * * *"',
      "    timezone: Europe/Berlin",
      "    jitter: 15m",
      '    groups: ["A", "B"]',
      "  - name: everyone",
      "    account: main",
      '    schedule: "0 30 6 * * 1"',
      "    timezone: America/New_York",
      "    groups: all",
    ].join("\n"),
  });
  const file = () => path("rotation.yaml");

  it("lists the next fires in UTC and local time, with group counts (DST in the listing)", async () => {
    const io = fakeIO({ ROTATOR_CONFIG: file(), MAIN_TOKEN: "t" });
    expect(await main(["plan", "--count", "2", "--from", "2026-03-28T12:00:00Z"], io)).toBe(0);
    const out = io.stdout.join("\n");
    expect(out).toContain('policy berlin: "30 2 * * *" in Europe/Berlin');
    expect(out).toContain("2 groups, account main");
    expect(out).toContain("starts spread over 15m after each fire");
    // Spring forward: 02:30 does not exist on 2026-03-29, the fire is at 03:30 CEST.
    expect(out).toMatch(/2026-03-29T01:30:00Z\s+Sun 2026-03-29 03:30:00 \+02:00/);
    expect(out).toMatch(/2026-03-30T00:30:00Z\s+Mon 2026-03-30 02:30:00 \+02:00/);
    expect(out).toContain("all groups of the account's phone number");
    expect(out).toMatch(/2026-03-30T10:30:00Z\s+Mon 2026-03-30 06:30:00 -04:00/);
  });

  it("--json gives the same plan as data", async () => {
    const io = fakeIO({ ROTATOR_CONFIG: file(), MAIN_TOKEN: "t" });
    expect(await main(["plan", "--json", "--count", "1", "--from", "2026-10-24T12:00:00Z"], io)).toBe(0);
    const plan = JSON.parse(io.stdout.join("\n")) as { policies: PlannedPolicy[] };
    expect(plan.policies[0]).toMatchObject({
      name: "berlin",
      groups: 2,
      jitter_ms: 900_000,
      fires: [{ utc: "2026-10-25T00:30:00Z", local: "2026-10-25T02:30:00+02:00" }],
    });
    expect(plan.policies[1]).toMatchObject({ name: "everyone", groups: "all" });
  });

  it("exits 2 on bad usage and on an invalid file", async () => {
    expect(await main(["plan", "--count", "0"], fakeIO({ ROTATOR_CONFIG: file() }))).toBe(2);
    expect(await main(["plan", "--from", "yesterday"], fakeIO({ ROTATOR_CONFIG: file() }))).toBe(2);
    const bad = path("bad.yaml");
    await writeFile(bad, 'policies:\n  - name: x\n    schedule: "61 * * * *"\n    groups: [g]\n');
    const io = fakeIO({ ROTATOR_CONFIG: bad });
    expect(await main(["plan"], io)).toBe(2);
    expect(io.stderr.join("\n")).toContain(`${bad}`);
    expect(io.stderr.join("\n")).toContain("policies[0].schedule");
  });
});
