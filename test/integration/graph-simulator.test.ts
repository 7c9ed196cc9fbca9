import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { main } from "../../src/cli.js";
import type { SimCall } from "../../src/graph-sim/http.js";
import { startGraphSimulator, type GraphSimulator } from "../../src/graph-sim/simulator.js";

const TOKEN = "sim-token-0123456789abcdef";
let sim: GraphSimulator;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- response bodies are inspected ad hoc
type Json = any;

beforeEach(async () => {
  sim = await startGraphSimulator({
    tokens: { [TOKEN]: { name: "acme", phoneNumberId: "42" } },
    groups: [{ id: "G1", subject: "One", token: TOKEN }],
    autoCreateGroups: false,
  });
});

afterEach(async () => {
  await sim.close();
});

async function graph(method: string, path: string, body?: unknown, token: string | null = TOKEN) {
  const response = await fetch(`${sim.url}${path}`, {
    method,
    headers: {
      ...(token !== null && { authorization: `Bearer ${token}` }),
      ...(body !== undefined && { "content-type": "application/json" }),
    },
    ...(body !== undefined && { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
  const text = await response.text();
  let json: Json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

const WA = { messaging_product: "whatsapp" };

describe("Graph simulator: Graph routes", () => {
  it("rejects a missing or unknown token with 401 code 190, without logging the token", async () => {
    for (const token of [null, "wrong-token-xyz"]) {
      const res = await graph("POST", "/v23.0/G1/invite_link", WA, token);
      expect(res.status).toBe(401);
      expect(res.json.error.code).toBe(190);
    }
    expect(sim.calls.map((c) => c.tokenOk)).toEqual([false, false]);
    expect(JSON.stringify(sim.calls)).not.toContain("wrong-token-xyz");
  });

  it("rejects a body without messaging_product whatsapp with 400 code 100", async () => {
    for (const body of [undefined, {}, { messaging_product: "sms" }, "not json"]) {
      const res = await graph("DELETE", "/v23.0/G1/invite_link", body);
      expect([res.status, res.json.error.code]).toEqual([400, 100]);
    }
    expect(sim.group("G1")?.deleted).toBe(false);
  });

  it("rejects a bad version with 400 code 100, and an unknown group with 131041", async () => {
    expect((await graph("POST", "/23.0/G1/invite_link", WA)).json.error.code).toBe(100);
    const unknown = await graph("POST", "/v23.0/NOPE/invite_link", WA);
    expect([unknown.status, unknown.json.error.code]).toEqual([400, 131041]);
  });

  it("resets, reads and deletes the link; every POST makes a new one", async () => {
    const first = (await graph("POST", "/v23.0/G1/invite_link", WA)).json.invite_link as string;
    const second = (await graph("POST", "/v23.0/G1/invite_link", WA)).json.invite_link as string;
    expect(first).toMatch(/^https:\/\/chat\.whatsapp\.com\/[A-Za-z0-9]{22}$/);
    expect(second).not.toBe(first);
    expect((await graph("GET", "/v23.0/G1/invite_link")).json.invite_link).toBe(second);
    expect((await graph("DELETE", "/v23.0/G1/invite_link", WA)).json).toEqual({ ...WA, success: true });
    expect((await graph("GET", "/v23.0/G1/invite_link")).json).toEqual(WA);
    expect(sim.group("G1")).toMatchObject({ deleted: true, links: [expect.any(String), first, second] });
    expect(sim.group("G1")?.link).toBeUndefined();
    expect(await graph("GET", "/v23.0/G1?fields=subject")).toMatchObject({
      json: { id: "G1", subject: "One" },
    });
  });

  it("lists groups in pages of Graph's shape and refuses another number", async () => {
    for (const id of ["G2", "G3"]) sim.addGroup({ id, phoneNumberId: "42" });
    const page = await graph("GET", "/v23.0/42/groups?limit=2");
    expect(page.json.data.groups.map((g: { id: string }) => g.id)).toEqual(["G1", "G2"]);
    expect(page.json.paging.next).toContain(`${sim.url}/v23.0/42/groups?limit=2&after=`);
    const rest = await graph("GET", `/v23.0/42/groups?limit=2&after=${page.json.paging.cursors.after}`);
    expect(rest.json.data.groups.map((g: { id: string }) => g.id)).toEqual(["G3"]);
    expect(rest.json.paging.next).toBeUndefined();
    expect((await graph("GET", "/v23.0/42/groups?limit=2000")).json.error.code).toBe(100);
    expect((await graph("GET", "/v23.0/43/groups")).json.error.code).toBe(100);
  });
});

describe("Graph simulator: control API over HTTP", () => {
  it("injects, lists and clears faults; shows calls and groups", async () => {
    const created = await fetch(`${sim.url}/__sim/faults`, {
      method: "POST",
      body: JSON.stringify({
        preset: "group-rate-limit",
        match: { groupId: "G1", method: "POST" },
        times: 2,
      }),
    });
    expect(created.status).toBe(201);
    const listed = (await (await fetch(`${sim.url}/__sim/faults`)).json()) as { faults: unknown[] };
    expect(listed.faults).toHaveLength(1);

    expect((await graph("DELETE", "/v23.0/G1/invite_link", WA)).status).toBe(200); // method does not match
    for (let i = 0; i < 2; i++) {
      const res = await graph("POST", "/v23.0/G1/invite_link", WA);
      expect([res.status, res.json.error.code]).toEqual([429, 131208]);
    }
    expect((await graph("POST", "/v23.0/G1/invite_link", WA)).status).toBe(200); // used up

    await fetch(`${sim.url}/__sim/faults`, {
      method: "POST",
      body: JSON.stringify({
        kind: "error",
        status: 500,
        code: 1,
        times: "Infinity",
        headers: { "Retry-After": "3" },
      }),
    });
    for (let i = 0; i < 3; i++) {
      const res = await graph("POST", "/v23.0/G1/invite_link", WA);
      expect([res.status, res.headers.get("retry-after")]).toEqual([500, "3"]);
    }
    expect((await fetch(`${sim.url}/__sim/faults`, { method: "DELETE" })).status).toBe(204);
    expect((await graph("POST", "/v23.0/G1/invite_link", WA)).status).toBe(200);

    const { calls } = (await (await fetch(`${sim.url}/__sim/calls`)).json()) as { calls: SimCall[] };
    expect(calls.map((c) => c.status)).toEqual([200, 429, 429, 200, 500, 500, 500, 200]);
    expect(calls[1]).toMatchObject({
      method: "POST",
      groupId: "G1",
      account: "acme",
      tokenOk: true,
      fault: "error",
    });
    expect(JSON.stringify(calls)).not.toContain(TOKEN);

    const group = (await (await fetch(`${sim.url}/__sim/groups/G1`)).json()) as { link: string };
    expect(group.link).toBe(sim.group("G1")?.link);
    expect((await fetch(`${sim.url}/__sim/groups/missing`)).status).toBe(404);
    expect((await fetch(`${sim.url}/__sim/calls`, { method: "DELETE" })).status).toBe(204);
    expect(sim.calls).toHaveLength(0);
  });

  it("rejects nonsense faults with 400", async () => {
    for (const body of [
      '{"kind":"explode"}',
      '{"preset":"nope"}',
      '{"kind":"error"}',
      "[]",
      '{"kind":"reset","times":0}',
    ]) {
      expect((await fetch(`${sim.url}/__sim/faults`, { method: "POST", body })).status).toBe(400);
    }
  });

  it("html, empty, reset, latency and token-matched faults", async () => {
    sim.inject({ kind: "html", match: { token: TOKEN } });
    const html = await graph("POST", "/v23.0/G1/invite_link", WA);
    expect([html.status, html.text.startsWith("<!DOCTYPE html>")]).toEqual([502, true]);
    sim.inject({ kind: "empty", status: 503 });
    expect(await graph("POST", "/v23.0/G1/invite_link", WA)).toMatchObject({ status: 503, text: "" });
    sim.inject({ kind: "reset" });
    await expect(graph("POST", "/v23.0/G1/invite_link", WA)).rejects.toThrow();
    sim.inject({ kind: "latency", ms: 150 });
    const started = Date.now();
    expect((await graph("POST", "/v23.0/G1/invite_link", WA)).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    sim.inject({ kind: "html", match: { token: "someone-else" } });
    expect((await graph("POST", "/v23.0/G1/invite_link", WA)).status).toBe(200);
  });

  it("close() ends hung requests", async () => {
    sim.inject({ kind: "hang", times: Infinity });
    const pending = graph("POST", "/v23.0/G1/invite_link", WA).then(
      () => "answered",
      () => "closed",
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    await sim.close();
    expect(await pending).toBe("closed");
  });

  it("a hidden per-number limit answers 131208 / 429 over it, set and cleared by the control API", async () => {
    // A rate so low that no token comes back during the test: the burst is all there is.
    const set = await fetch(`${sim.url}/__sim/limits`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ phoneNumberId: "42", ratePerSec: 0.001, burst: 2 }),
    });
    expect(set.status).toBe(201);
    expect((await graph("GET", "/__sim/limits")).json).toEqual({
      limits: [{ phoneNumberId: "42", ratePerSec: 0.001, burst: 2 }],
    });
    expect((await graph("DELETE", "/v23.0/G1/invite_link", WA)).status).toBe(200);
    expect((await graph("POST", "/v23.0/G1/invite_link", WA)).status).toBe(200);
    const refused = await graph("POST", "/v23.0/G1/invite_link", WA);
    expect(refused.status).toBe(429);
    expect(refused.json.error.code).toBe(131208);
    expect(sim.calls.at(-1)).toMatchObject({ status: 429, limited: true });
    // Refused: the link the last successful POST made is still the group's.
    expect(sim.group("G1")?.links).toHaveLength(2);
    // Another number is not limited.
    sim.setHiddenLimit({ phoneNumberId: "other", ratePerSec: 0.001, burst: 1 });
    expect((await graph("POST", "/v23.0/G1/invite_link", WA)).status).toBe(429);
    expect((await graph("DELETE", "/__sim/limits")).status).toBe(204);
    expect((await graph("POST", "/v23.0/G1/invite_link", WA)).status).toBe(200);
    const bad = await fetch(`${sim.url}/__sim/limits`, { method: "POST", body: '{"ratePerSec":-1}' });
    expect(bad.status).toBe(400);
  });
});

describe("graph-sim command", () => {
  it("prints the base URL first, serves until SIGTERM, then exits 0", async () => {
    const lines: string[] = [];
    const io = {
      env: { WHATSAPP_ACCESS_TOKEN: TOKEN },
      out: (l: string) => lines.push(l),
      err: (l: string) => lines.push(l),
    };
    const exit = main(["graph-sim", "--port", "0"], io);
    while (lines.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(lines[0]).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(lines.join("\n")).toContain(`GRAPH_API_BASE_URL=${lines[0]}`);
    expect(lines.join("\n")).not.toContain(TOKEN);
    const res = await fetch(`${lines[0]}/v23.0/G9/invite_link`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify(WA),
    });
    expect(res.status).toBe(200);
    process.emit("SIGTERM", "SIGTERM");
    expect(await exit).toBe(0);
  });

  it("bad options exit 2", async () => {
    const errors: string[] = [];
    const io = { env: {}, out: () => undefined, err: (l: string) => errors.push(l) };
    expect(await main(["graph-sim", "--port", "abc"], io)).toBe(2);
    expect(await main(["graph-sim", "--bogus"], io)).toBe(2);
    expect(errors.join("\n")).toContain("usage: wa-invite-rotator graph-sim");
  });
});
