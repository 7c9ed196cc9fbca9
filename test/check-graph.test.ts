import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/cli.js";
import type { CommandIO } from "../src/commands/command.js";
import { startGraphSimulator, type GraphSimulator } from "../src/graph/simulator.js";

/** `validate --check-graph` against the simulator: read-only, names every group the token cannot see. */
const TOKEN = "check-graph-token-123456";
let sim: GraphSimulator;
let dir = "";

function fakeIO(env: Record<string, string | undefined>): CommandIO & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { env, stdout, stderr, out: (line) => stdout.push(line), err: (line) => stderr.push(line) };
}

beforeAll(async () => {
  sim = await startGraphSimulator({
    tokens: { [TOKEN]: { phoneNumberId: "1555" } },
    autoCreateGroups: false,
    groups: [
      { id: "SEEN-1", token: TOKEN, phoneNumberId: "1555" },
      { id: "SEEN-2", token: TOKEN, phoneNumberId: "1555" },
    ],
  });
  dir = await mkdtemp(join(tmpdir(), "rotator-check-graph-"));
});
afterAll(async () => {
  await sim.close();
  await rm(dir, { recursive: true, force: true });
});

async function run(groups: string) {
  const file = join(dir, `${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(
    file,
    [
      "accounts:",
      '  default: { token_env: WHATSAPP_ACCESS_TOKEN, phone_number_id: "1555" }',
      "policies:",
      "  - name: listed",
      '    schedule: "0 3 * * *"',
      `    groups: ${groups}`,
      "  - name: everything",
      '    schedule: "0 4 * * *"',
      "    groups: all",
    ].join("\n"),
  );
  const io = fakeIO({ ROTATOR_CONFIG: file, WHATSAPP_ACCESS_TOKEN: TOKEN, GRAPH_API_BASE_URL: sim.url });
  const code = await main(["validate", "--check-graph"], io);
  return { code, out: io.stdout.join("\n") + io.stderr.join("\n") };
}

describe("validate --check-graph", () => {
  it("exit 0 when the token sees every group and can list the phone number's groups; changes nothing", async () => {
    sim.clearCalls();
    const links = sim.group("SEEN-1")?.links.length;
    const { code, out } = await run('["SEEN-1", "SEEN-2"]');
    expect(out).toContain("policy listed (account default): ok, the token sees all 2 group(s)");
    expect(out).toContain("policy everything (account default): ok, groups: all lists 2 group(s)");
    expect(code).toBe(0);
    expect(sim.calls.every((c) => c.method === "GET")).toBe(true);
    expect(sim.group("SEEN-1")?.links).toHaveLength(links!);
  });

  it("exit 2 naming each group the token cannot see; never prints the token", async () => {
    const { code, out } = await run('["SEEN-1", "MISSING-1", "MISSING-2"]');
    expect(code).toBe(2);
    expect(out).toContain("FAIL 2 of 3 group(s) not visible");
    expect(out).toMatch(/group MISSING-1: GRAPH_GROUP_UNKNOWN/);
    expect(out).toMatch(/group MISSING-2: GRAPH_/);
    expect(out).not.toContain(TOKEN);
  });
});
