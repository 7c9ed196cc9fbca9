import type { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { signedQuery } from "../../src/gateway/signed.js";
import { LINK_SECRET, startGatewayFixture, visit, type GatewayFixture } from "../helpers/gateway.js";
import { testRedis } from "../helpers/redis.js";

/**
 * `/join` answers beyond the happy path: a used-up signed URL (410 even when no group has room, and
 * its own outcome in the metrics), HEAD requests (never a counted visit, never the link a counted
 * visit would get), a pool whose every group is full, and the per-client rate limit.
 */
const LINKS = [
  "  - slug: trio",
  "    groups: [G1, G2, G3]",
  "    capacity: 2",
  "  - slug: vip",
  "    groups: [G1]",
  "    capacity: 2",
  "    signed: true",
].join("\n");

let redis: Redis | undefined;
let fx: GatewayFixture | undefined;

async function start(env: Record<string, string> = {}): Promise<GatewayFixture> {
  redis = testRedis();
  fx = await startGatewayFixture({
    redis,
    name: "gw-visits",
    links: LINKS,
    groups: ["G1", "G2", "G3"],
    env: { GATEWAY_ROTATION_WAIT: "200ms", ...env },
  });
  return fx;
}

afterEach(async () => {
  await fx?.close();
  await redis?.quit();
  fx = undefined;
  redis = undefined;
});

const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;
const head = (url: string) => fetch(url, { method: "HEAD", redirect: "manual" });
const metric = async (gateway: GatewayFixture, slug: string, outcome: string) => {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  const line = text
    .split("\n")
    .find((l) => l.startsWith(`wa_rotator_gateway_visits_total{slug="${slug}",outcome="${outcome}"}`));
  return line === undefined ? 0 : Number(line.split(" ").pop());
};

describe("used-up signed URLs", () => {
  it("answer 410 (outcome used-up) also while the pool is full or has no link", async () => {
    const gw = await start();
    await gw.rotate("G1");
    const query = signedQuery({ slug: "vip", exp: inAnHour(), uses: 1 }, LINK_SECRET);
    const url = `${gw.url}/join/vip?${query}`;
    expect((await visit(url)).status).toBe(302);
    const used = await visit(url);
    expect(used.status).toBe(410);
    expect(used.headers.get("retry-after")).toBeNull();

    await redis!.hset(gw.keys.groupParticipants, { G1: "2" });
    expect((await visit(url)).status).toBe(410);
    await redis!.sadd(gw.keys.withoutLinkIndex, "G1");
    expect((await visit(url)).status).toBe(410);
    // Answered by the read-only check: none of the three was counted.
    expect(await redis!.get(gw.keys.linkVisits("vip", new URLSearchParams(query).get("sig")!))).toBe("1");

    expect(await metric(gw, "vip", "used-up")).toBe(3);
    expect(await metric(gw, "vip", "expired")).toBe(0);
    expect(await metric(gw, "vip", "redirected")).toBe(1);
  });
});

describe("HEAD", () => {
  it("never counts a visit of a counted URL and never gives it the link; elsewhere it answers as GET", async () => {
    const gw = await start();
    const link = await gw.rotate("G1");
    const query = signedQuery({ slug: "vip", exp: inAnHour(), uses: 2 }, LINK_SECRET);
    const url = `${gw.url}/join/vip?${query}`;
    for (let i = 0; i < 5; i++) {
      const res = await head(url);
      expect(res.status).toBe(200);
      expect(res.headers.get("location")).toBeNull();
      expect(res.headers.get("cache-control")).toBe("no-store");
    }
    expect(await metric(gw, "vip", "previewed")).toBe(5);
    // Both visits are still there.
    expect((await visit(url)).headers.get("location")).toBe(link);
    expect((await visit(url)).headers.get("location")).toBe(link);
    expect((await head(url)).status).toBe(410);
    expect((await visit(url)).status).toBe(410);

    // Bad signature, unsigned visit of a signed link, unknown slug: as GET.
    expect((await head(`${gw.url}/join/vip`)).status).toBe(403);
    expect((await head(`${gw.url}/join/nope`)).status).toBe(404);
    // An uncounted URL (a plain link; a signed one without uses): a GET counts nothing either.
    const plain = await head(`${gw.url}/join/trio`);
    expect(plain.status).toBe(302);
    expect(plain.headers.get("location")).toBe(link);
    const unlimited = signedQuery({ slug: "vip", exp: inAnHour() }, LINK_SECRET);
    expect((await head(`${gw.url}/join/vip?${unlimited}`)).headers.get("location")).toBe(link);
    // A counted URL's HEAD while no group has room: 503, as GET.
    await redis!.hset(gw.keys.groupParticipants, { G1: "2" });
    const fresh = signedQuery({ slug: "vip", exp: inAnHour(), uses: 1 }, LINK_SECRET);
    expect((await head(`${gw.url}/join/vip?${fresh}`)).status).toBe(503);
  });
});

describe("a pool of three groups", () => {
  it("answers 503 with Retry-After once every group is full, and sends visitors again when one has room", async () => {
    const gw = await start();
    const links = { G1: await gw.rotate("G1"), G2: await gw.rotate("G2"), G3: await gw.rotate("G3") };
    await redis!.hset(gw.keys.groupParticipants, { G1: "2", G2: "5", G3: "1" });
    expect((await visit(`${gw.url}/join/trio`)).headers.get("location")).toBe(links.G3);
    await redis!.hset(gw.keys.groupParticipants, { G3: "2" });
    for (let i = 0; i < 3; i++) {
      const full = await visit(`${gw.url}/join/trio`);
      expect(full.status).toBe(503);
      expect(full.headers.get("retry-after")).toBe("60");
      expect(full.headers.get("location")).toBeNull();
    }
    expect(await metric(gw, "trio", "full")).toBe(3);
    await redis!.hset(gw.keys.groupParticipants, { G2: "1" });
    expect((await visit(`${gw.url}/join/trio`)).headers.get("location")).toBe(links.G2);
  });
});

describe("the per-client rate limit", () => {
  it("answers 429 with Retry-After past GATEWAY_RATE_LIMIT", async () => {
    const gw = await start({ GATEWAY_RATE_LIMIT: "2/1m" });
    await gw.rotate("G1");
    expect((await visit(`${gw.url}/join/trio`)).status).toBe(302);
    expect((await visit(`${gw.url}/join/nope`)).status).toBe(404);
    const limited = await visit(`${gw.url}/join/trio`);
    expect(limited.status).toBe(429);
    // One visit back every 30 s (2 a minute).
    expect(Number(limited.headers.get("retry-after"))).toBe(30);
    expect(limited.headers.get("location")).toBeNull();
    expect(await metric(gw, "-", "rate-limited")).toBe(1);
    // Probes are not rate-limited.
    expect((await fetch(`${gw.url}/readyz`)).status).toBe(200);
  });
});
