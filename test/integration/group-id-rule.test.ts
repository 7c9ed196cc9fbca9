import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGraphClient, type GraphClient } from "../../src/graph/client.js";
import { parseGroupsPage } from "../../src/graph/response.js";
import { startGraphSimulator, type GraphSimulator } from "../../src/graph-sim/simulator.js";

/** The contract's group-id rule at the Graph edge: the client, Graph's group lists, the simulator. */
const TOKEN = "group-id-rule-token-0123456789";
const account = { name: "default", token: TOKEN, graphApiVersion: "v23.0" };
let sim: GraphSimulator;
let graph: GraphClient;

beforeAll(async () => {
  sim = await startGraphSimulator({ tokens: { [TOKEN]: { name: "default" } } });
  graph = createGraphClient({ baseUrl: sim.url });
});

afterAll(async () => {
  await graph.close();
  await sim.close();
});

describe("the group-id rule", () => {
  it.each([".", "..", "a b", "caf\u00e9", "x\u0000"])("the client sends nothing for %j", async (id) => {
    const before = sim.calls.length;
    const error = await graph.deleteInviteLink(account, id).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "GRAPH_INVALID_REQUEST", action: "stop" });
    expect(sim.calls.length).toBe(before);
  });

  it("the simulator answers 400 for a path step sent percent-encoded, and never touches a group", async () => {
    for (const segment of ["%2E", "%2E%2E", "a%20b"]) {
      const response = await fetch(`${sim.url}/v23.0/${segment}/invite_link`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ messaging_product: "whatsapp" }),
      });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { error: { code: number } }).error.code).toBe(100);
    }
    expect([sim.group(".."), sim.group("."), sim.group("a b")]).toEqual([undefined, undefined, undefined]);
  });

  it("a group list from Graph with such an id is a garbled answer", () => {
    expect(parseGroupsPage({ data: { groups: [{ id: "G1" }, { id: ".." }] } }).ok).toBe(false);
    expect(parseGroupsPage({ data: { groups: [{ id: "G1" }, { id: "a\u202eb" }] } }).ok).toBe(false);
    expect(parseGroupsPage({ data: { groups: [{ id: "G1" }, { id: 1203630252461254 }] } }).ok).toBe(true);
  });
});
