import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  createGraphClient,
  type GraphCallInfo,
  type GraphClient,
  type GraphClientOptions,
} from "../../src/graph/client.js";
import { GraphError } from "../../src/graph/errors.js";
import { simFaults } from "../../src/graph-sim/faults.js";
import { startGraphSimulator, type GraphSimulator } from "../../src/graph-sim/simulator.js";
import type { AccountContext } from "../../src/core/interfaces.js";
import { VERSION } from "../../src/core/version.js";

const TOKEN = "sim-token-ABCDEFGH123456";
const account: AccountContext = {
  name: "default",
  token: TOKEN,
  graphApiVersion: "v23.0",
  phoneNumberId: "15550001",
};

let sim: GraphSimulator;
let client: GraphClient;
let infos: GraphCallInfo[];

function makeClient(extra: Partial<GraphClientOptions> = {}): GraphClient {
  return createGraphClient({ baseUrl: sim.url, onCall: (info) => infos.push(info), ...extra });
}

beforeEach(async () => {
  sim = await startGraphSimulator({ tokens: { [TOKEN]: { name: "default", phoneNumberId: "15550001" } } });
  infos = [];
  client = makeClient();
});

afterEach(async () => {
  await client.close();
  await sim.close();
});

/** Runs `fn`, expecting a GraphError; returns it. */
async function failure(fn: () => Promise<unknown>): Promise<GraphError> {
  try {
    await fn();
  } catch (error) {
    expect(error).toBeInstanceOf(GraphError);
    expect((error as Error).message).not.toContain(TOKEN);
    return error as GraphError;
  }
  throw new Error("expected a GraphError");
}

describe("Graph client against the simulator", () => {
  it("deletes and creates a link: exact method, path, body and headers", async () => {
    await client.deleteInviteLink(account, "G1");
    const link = await client.createInviteLink(account, "G1");
    expect(link).toMatch(/^https:\/\/chat\.whatsapp\.com\/[A-Za-z0-9]{22}$/);
    expect(sim.group("G1")).toMatchObject({ link, deleted: false });

    expect(sim.calls.map((c) => [c.method, c.path, c.body, c.status])).toEqual([
      ["DELETE", "/v23.0/G1/invite_link", { messaging_product: "whatsapp" }, 200],
      ["POST", "/v23.0/G1/invite_link", { messaging_product: "whatsapp" }, 200],
    ]);
    for (const call of sim.calls) {
      expect(call.account).toBe("default");
      expect(call.tokenOk).toBe(true);
      expect(call.headers["content-type"]).toBe("application/json");
      expect(call.headers.accept).toBe("application/json");
      expect(call.headers["user-agent"]).toContain(`wa-invite-rotator/${VERSION}`);
      expect(JSON.stringify(call)).not.toContain(TOKEN);
    }
    expect(infos.map((i) => [i.operation, i.outcome, i.status])).toEqual([
      ["delete-invite-link", "ok", 200],
      ["create-invite-link", "ok", 200],
    ]);
  });

  it("keeps its connections across DELETEs with a body and POSTs (at most two for ten rotations)", async () => {
    for (let i = 0; i < 10; i++) {
      await client.deleteInviteLink(account, `K${i}`);
      await client.createInviteLink(account, `K${i}`);
    }
    // Sequential calls need one connection (the pool may open a second while the first finishes a
    // reply); undici closes it after every DELETE with a body unless told not to: 11 here.
    expect(sim.connections).toBeLessThanOrEqual(2);
  });

  it("reads the link, which is gone after DELETE", async () => {
    const link = await client.createInviteLink(account, "G2");
    expect(await client.getInviteLink(account, "G2")).toBe(link);
    await client.deleteInviteLink(account, "G2");
    expect(sim.group("G2")).toMatchObject({ deleted: true });
    expect(await client.getInviteLink(account, "G2")).toBeUndefined();
  });

  it("sends a group id with + / = as ONE encoded path segment", async () => {
    await client.createInviteLink(account, "abc+/=def");
    expect(sim.calls[0]!.path).toBe("/v23.0/abc%2B%2F%3Ddef/invite_link");
    expect(sim.calls[0]!.groupId).toBe("abc+/=def");
    expect(sim.group("abc+/=def")?.link).toBeDefined();
  });

  it("supports a base URL with a path prefix", async () => {
    const prefixed = await startGraphSimulator({ basePath: "/graph" });
    const other = createGraphClient({ baseUrl: `${prefixed.url}/` });
    try {
      expect(prefixed.url).toMatch(/\/graph$/);
      await other.deleteInviteLink(account, "G3");
      expect(prefixed.calls[0]!.path).toBe("/graph/v23.0/G3/invite_link");
    } finally {
      await other.close();
      await prefixed.close();
    }
  });

  it("maps each injected fault to the right GraphError", async () => {
    const cases: Array<[Parameters<GraphSimulator["inject"]>[0], string, string, string]> = [
      [simFaults.transient(), "GRAPH_TRANSIENT", "retry", "request"],
      [simFaults.groupRateLimit(), "GRAPH_THROTTLED", "throttle", "number"],
      [simFaults.tokenInvalid(), "GRAPH_AUTH", "stop", "account"],
      [simFaults.groupUnknown(), "GRAPH_GROUP_UNKNOWN", "stop", "group"],
      [simFaults.groupSuspended(), "GRAPH_GROUP_SUSPENDED", "stop", "group"],
      [{ kind: "html" }, "GRAPH_TRANSIENT", "retry", "request"],
      [{ kind: "empty", status: 504 }, "GRAPH_TRANSIENT", "retry", "request"],
      [
        { kind: "raw", body: '{"messaging_product":"whatsapp","invite_link":"http://x"}' },
        "GRAPH_BAD_RESPONSE",
        "retry",
        "request",
      ],
      [
        { kind: "raw", body: "<html>proxy</html>", contentType: "text/html" },
        "GRAPH_BAD_RESPONSE",
        "retry",
        "request",
      ],
      [
        { kind: "error", status: 400, code: 131215, message: "not eligible" },
        "GRAPH_NOT_ELIGIBLE",
        "stop",
        "number",
      ],
    ];
    for (const [fault, code, action, scope] of cases) {
      sim.inject(fault);
      const error = await failure(() => client.createInviteLink(account, "G1"));
      expect([error.code, error.action, error.scope], `${fault.kind} ${code}`).toEqual([code, action, scope]);
    }
    // The faults are used up: the next call succeeds, on the same pool.
    expect(await client.createInviteLink(account, "G1")).toMatch(/^https:\/\/chat\.whatsapp\.com\//);
    expect(infos.at(-2)?.outcome).toBe("GRAPH_NOT_ELIGIBLE");
  });

  it("honours Retry-After and the business-use-case header, and reports usage", async () => {
    sim.inject({
      kind: "error",
      status: 400,
      code: 80008,
      headers: {
        "Retry-After": "7",
        "X-Business-Use-Case-Usage": JSON.stringify({
          "9": [{ type: "whatsapp", estimated_time_to_regain_access: 1 }],
        }),
        "X-App-Usage": JSON.stringify({ call_count: 99, total_cputime: 5, total_time: 5 }),
      },
    });
    const error = await failure(() => client.deleteInviteLink(account, "G1"));
    expect([error.code, error.retryAfterMs]).toEqual(["GRAPH_THROTTLED", 60_000]);
    expect(infos[0]?.usage?.appUsage).toMatchObject({ call_count: 99 });
    expect(infos[0]?.graphCode).toBe(80008);
  });

  it("a hung request fails with GRAPH_TIMEOUT within the configured timeout", async () => {
    await client.close();
    client = makeClient({ headersTimeoutMs: 300, bodyTimeoutMs: 300 });
    sim.inject({ kind: "hang", match: { method: "POST" } });
    const started = Date.now();
    const error = await failure(() => client.createInviteLink(account, "G1"));
    expect([error.code, error.action]).toEqual(["GRAPH_TIMEOUT", "retry"]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(280);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(sim.calls[0]!.status).toBeUndefined();
  });

  it("a body that trickles in forever fails with GRAPH_TIMEOUT at the body deadline", async () => {
    // Headers at once, then one byte every 50 ms: undici's per-chunk bodyTimeout never fires.
    const server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      const timer = setInterval(() => res.write(" "), 50);
      res.on("close", () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const trickle = createGraphClient({
      baseUrl: `http://127.0.0.1:${port}`,
      headersTimeoutMs: 300,
      bodyTimeoutMs: 300,
    });
    try {
      const started = Date.now();
      const error = await failure(() => trickle.createInviteLink(account, "G1"));
      expect([error.code, error.action]).toEqual(["GRAPH_TIMEOUT", "retry"]);
      expect(Date.now() - started).toBeLessThan(1_000);
    } finally {
      await trickle.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("a connection reset → GRAPH_NETWORK retry", async () => {
    sim.inject({ kind: "reset", match: { groupId: "G1" } });
    const error = await failure(() => client.deleteInviteLink(account, "G1"));
    expect([error.code, error.action]).toEqual(["GRAPH_NETWORK", "retry"]);
    await client.deleteInviteLink(account, "G1");
  });

  it("a refused connection → GRAPH_NETWORK retry", async () => {
    const dead = await startGraphSimulator();
    const url = dead.url;
    await dead.close();
    const other = createGraphClient({ baseUrl: url, connectTimeoutMs: 500 });
    try {
      const error = await failure(() => other.createInviteLink(account, "G1"));
      expect([error.code, error.action]).toEqual(["GRAPH_NETWORK", "retry"]);
    } finally {
      await other.close();
    }
  });

  it("lists groups over several pages", async () => {
    for (let i = 0; i < 7; i++)
      sim.addGroup({ id: `L${i}`, subject: `List ${i}`, phoneNumberId: "15550001" });
    sim.addGroup({ id: "other", phoneNumberId: "999" });
    const groups = await client.listGroups(account, "15550001", { limit: 3 });
    expect(groups.map((g) => g.id)).toEqual(["L0", "L1", "L2", "L3", "L4", "L5", "L6"]);
    expect(groups[0]).toEqual({ id: "L0", subject: "List 0" });
    expect(sim.calls.map((c) => c.path)).toEqual([
      "/v23.0/15550001/groups?limit=3",
      expect.stringMatching(/^\/v23\.0\/15550001\/groups\?limit=3&after=/),
      expect.stringMatching(/^\/v23\.0\/15550001\/groups\?limit=3&after=/),
    ]);
    expect(await client.listGroups(account, "15550001")).toHaveLength(7);
  });

  it("reads one group's info", async () => {
    sim.addGroup({ id: "I1", subject: "Info", phoneNumberId: "15550001" });
    expect(await client.getGroup(account, "I1")).toEqual({ id: "I1", subject: "Info" });
    expect(sim.calls[0]!.path).toBe("/v23.0/I1?fields=subject");
  });

  it("an aborted signal rejects with the signal's reason, not a GraphError", async () => {
    sim.inject({ kind: "hang" });
    const controller = new AbortController();
    const pending = client.createInviteLink(account, "G1", controller.signal);
    setTimeout(() => controller.abort(new Error("shutting down")), 50);
    await expect(pending).rejects.toThrow("shutting down");
    await expect(client.deleteInviteLink(account, "G1", AbortSignal.abort())).rejects.toMatchObject({
      name: "AbortError",
    });
  });

  it("close() closes the pool and is idempotent", async () => {
    await client.createInviteLink(account, "G1");
    await Promise.all([client.close(), client.close()]);
    await expect(client.createInviteLink(account, "G1")).rejects.toBeInstanceOf(GraphError);
  });
});

describe("a token no HTTP header can carry", () => {
  it("stops the account at once, without a request, naming the problem but not the token", async () => {
    const bad = `${TOKEN}\n`;
    const error = await failure(() => client.deleteInviteLink({ ...account, token: bad }, "G1"));
    expect([error.code, error.action, error.scope]).toEqual(["GRAPH_AUTH", "stop", "account"]);
    expect(error.message).toContain("characters an HTTP header cannot carry");
    expect(sim.calls).toHaveLength(0);
  });
});
