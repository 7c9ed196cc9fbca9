import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli.js";
import { simFaults } from "../../src/graph-sim/faults.js";
import { startGraphSimulator, type GraphSimulator } from "../../src/graph-sim/simulator.js";
import { fakeIO } from "../helpers/command-io.js";

/** `validate --check-graph` against the simulator: read-only, names every group the token cannot see. */
const TOKEN = "check-graph-token-123456";
let sim: GraphSimulator;
let dir = "";

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
afterEach(() => sim.clearFaults());
afterAll(async () => {
  await sim.close();
  await rm(dir, { recursive: true, force: true });
});

async function run(groups: string, env: Record<string, string> = {}) {
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
  const io = fakeIO({
    ROTATOR_CONFIG: file,
    WHATSAPP_ACCESS_TOKEN: TOKEN,
    GRAPH_API_BASE_URL: sim.url,
    ...env,
  });
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

  it("exit 2 when the token itself is refused (190): a finding, not an outside failure", async () => {
    sim.inject(simFaults.tokenInvalid(undefined, Infinity));
    const { code, out } = await run('["SEEN-1"]');
    expect(code).toBe(2);
    expect(out).toMatch(/group SEEN-1: GRAPH_AUTH/);
    expect(out).toMatch(/FAIL cannot list the groups of the phone number: GRAPH_AUTH/);
    expect(out).not.toContain(TOKEN);
  });

  it("exit 1, not 2, when Graph answers 5xx for a group: the file was not judged", async () => {
    sim.inject(simFaults.transient({ groupId: "SEEN-2" }, Infinity));
    const { code, out } = await run('["SEEN-1", "SEEN-2"]');
    expect(code).toBe(1);
    expect(out).toContain("policy listed (account default): ERROR could not ask Graph about 1 of 2 group(s)");
    expect(out).toMatch(/group SEEN-2: GRAPH_TRANSIENT/);
    expect(out).not.toContain("not visible");
    expect(out).toContain("graph check: 1 check(s) could not reach Graph");
    expect(out).toContain("error: the Graph check could not finish");
  });

  it("exit 1 when listing the groups is throttled", async () => {
    sim.inject(simFaults.groupRateLimit({ path: "/groups" }, Infinity));
    const { code, out } = await run('["SEEN-1"]');
    expect(code).toBe(1);
    expect(out).toMatch(
      /policy everything \(account default\): ERROR could not ask Graph for the groups .*GRAPH_THROTTLED/,
    );
  });

  it("exit 1 on a dropped connection and on a timeout", async () => {
    sim.inject({ kind: "reset", times: Infinity });
    const reset = await run('["SEEN-1"]');
    expect(reset.code).toBe(1);
    expect(reset.out).toMatch(/group SEEN-1: GRAPH_NETWORK/);

    sim.clearFaults();
    sim.inject({ kind: "hang", match: { groupId: "SEEN-1" }, times: Infinity });
    const slow = await run('["SEEN-1"]', { GRAPH_REQUEST_TIMEOUT: "200ms" });
    expect(slow.code).toBe(1);
    expect(slow.out).toMatch(/group SEEN-1: GRAPH_TIMEOUT/);
  });

  it("exit 1 when Graph cannot be reached at all", async () => {
    const closed = await startGraphSimulator({});
    const url = closed.url;
    await closed.close();
    const { code, out } = await run('["SEEN-1"]', { GRAPH_API_BASE_URL: url });
    expect(code).toBe(1);
    expect(out).toMatch(/group SEEN-1: GRAPH_NETWORK/);
  });

  it("mixed: an unseen group and an outside failure exit 2", async () => {
    sim.inject(simFaults.transient({ groupId: "SEEN-2" }, Infinity));
    const { code, out } = await run('["SEEN-1", "SEEN-2", "MISSING-1"]');
    expect(code).toBe(2);
    expect(out).toContain("FAIL 1 of 3 group(s) not visible to the token");
    expect(out).toContain("ERROR could not ask Graph about 1 of 3 group(s)");
    expect(out).toContain("graph check: 1 problem(s)");
  });
});
