import { afterAll, afterEach, describe, expect, it } from "vitest";
import { startGraphSimulator, type GraphSimulator } from "../src/graph/simulator.js";
import type { App } from "../src/app.js";
import { accountsYaml, assertPromise, openTestQueue, settleAll, type TestQueue } from "./helpers/faults.js";
import { deleteKeys, testRedis, uniquePrefix } from "./helpers/redis.js";
import { startTestRotator } from "./helpers/rotator.js";

/**
 * A DELETE or POST that times out may still be carried out by Graph after the retry succeeded.
 * The simulator's latency fault does exactly that: it answers (and applies the call) late, after the
 * client gave up. Request timeout 300 ms, so an unsure call settles 300 ms after it failed; the late
 * call lands 500 ms after it was sent, inside that window.
 */
const TOKEN = "unsure-token-0123456789";
const redis = testRedis();
afterAll(async () => redis.quit());

let sim: GraphSimulator;
let app: App;
let tq: TestQueue;
let prefix: string;
let channel: string;

async function start(groups: string[]): Promise<void> {
  sim = await startGraphSimulator({ tokens: { [TOKEN]: { name: "acct", phoneNumberId: "1" } } });
  prefix = uniquePrefix("unsure");
  channel = `${prefix}-links`;
  for (const id of groups) sim.addGroup({ id, token: TOKEN, phoneNumberId: "1" });
  app = await startTestRotator({
    graphUrl: sim.url,
    prefix,
    yaml: accountsYaml([{ name: "a", tokenEnv: "TOKEN_A", phone: "1", groups }], channel),
    env: { TOKEN_A: TOKEN, GRAPH_REQUEST_TIMEOUT: "300ms" },
  });
  tq = await openTestQueue(redis, prefix, 50);
}

afterEach(async () => {
  await tq.close();
  await app.stop();
  await sim.close();
  await deleteKeys(redis, prefix, channel);
});

const calls = (groupId: string) => sim.calls.filter((c) => c.groupId === groupId).map((c) => c.method);

async function rotateOnce(groupId: string): Promise<void> {
  const jobs = await tq.rotate([{ groupId, account: "a" }], channel);
  const [outcome] = await settleAll(jobs, tq.events, 10_000);
  expect(outcome).not.toBeInstanceOf(Error);
  await new Promise((resolve) => setTimeout(resolve, 600)); // every late call has landed by now
  await assertPromise({
    redis,
    sim,
    keys: tq.keys,
    channel,
    groups: [groupId],
    secrets: [TOKEN],
    minPublished: 1,
  });
}

describe("a Graph call that may still land after it failed", () => {
  it("a late POST: the link Graph holds is published, not the one the retry created", async () => {
    await start(["UG1"]);
    sim.inject({ kind: "latency", ms: 500, match: { groupId: "UG1", method: "POST" } });
    await rotateOnce("UG1");
    // DELETE, the POST that timed out, the retried POST, then the read-back.
    expect(calls("UG1")).toEqual(["DELETE", "POST", "POST", "GET"]);
  });

  it("a late DELETE: the group is not left without a link; the rotation creates one again", async () => {
    await start(["UG2"]);
    sim.inject({ kind: "latency", ms: 500, match: { groupId: "UG2", method: "DELETE" } });
    await rotateOnce("UG2");
    expect(calls("UG2")).toEqual(["DELETE", "DELETE", "POST", "GET", "POST"]);
  });

  it("a rotation without an unsure call reads nothing back", async () => {
    await start(["UG3"]);
    await rotateOnce("UG3");
    expect(calls("UG3")).toEqual(["DELETE", "POST"]);
  });
});
