import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { channelKeys } from "../../src/core/keys.js";
import { signedQuery } from "../../src/gateway/signed.js";
import { LINK_SECRET, startGatewayFixture, visit, type GatewayFixture } from "../helpers/gateway.js";
import { testRedis } from "../helpers/redis.js";

const LINKS = [
  "  - slug: spring",
  "    groups: [G1, G2, G3]",
  "  - slug: solo",
  "    groups: [G1]",
  "    capacity: 3",
  "  - slug: vip",
  "    policy: pool",
  "    signed: true",
].join("\n");

let redis: Redis;
let fx: GatewayFixture;
let clockMs: number | undefined;

beforeEach(async () => {
  redis = testRedis();
  clockMs = undefined;
  fx = await startGatewayFixture({
    redis,
    name: "gateway",
    links: LINKS,
    groups: ["G1", "G2", "G3"],
    env: { GATEWAY_ROTATION_WAIT: "300ms" },
    clock: { now: () => clockMs ?? Date.now() },
  });
});

afterEach(async () => {
  await fx.close();
  await redis.quit();
});

const join = (slug: string, query = "", headers: Record<string, string> = {}) =>
  visit(`${fx.url}/join/${slug}${query ? `?${query}` : ""}`, headers);

describe("/join/{slug}", () => {
  it("redirects to the current link of a pool group, uncached, and follows a rotation at once", async () => {
    const first = await fx.rotate("G1");
    const res = await join("solo");
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe(first);
    expect(res.headers.get("cache-control")).toBe("no-store");

    const second = await fx.rotate("G1");
    // The very next visit, before the gateway's subscriber may have seen the PUBLISH: never the old link.
    const next = await join("solo");
    expect(next.status).toBe(302);
    expect(next.headers.get("location")).toBe(second);
  });

  it("skips a group while it rotates (its lock held) and waits a bounded moment when it is the only one", async () => {
    const link = await fx.rotate("G1");
    await fx.rotate("G2");
    await redis.set(fx.keys.groupLock("G2"), "worker-x", "PX", 10_000);
    for (let i = 0; i < 4; i++) expect((await join("spring")).headers.get("location")).toBe(link);

    await redis.set(fx.keys.groupLock("G1"), "worker-y", "PX", 10_000);
    const waited = await join("solo");
    expect(waited.status).toBe(503);
    expect(Number(waited.headers.get("retry-after"))).toBeGreaterThan(0);

    // A rotation that publishes during the wait: the visit gets the new link.
    const pending = join("solo");
    await new Promise((r) => setTimeout(r, 50));
    const fresh = await fx.rotate("G1");
    await redis.del(fx.keys.groupLock("G1"));
    const res = await pending;
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe(fresh);
  });

  it("never offers a suspended or deleted group (WhatsApp's webhooks)", async () => {
    await fx.rotate("G1");
    await redis.sadd(fx.keys.groupsUnavailable, "G1");
    expect((await join("solo")).status).toBe(503);
    await redis.srem(fx.keys.groupsUnavailable, "G1");
    expect((await join("solo")).status).toBe(302);
  });

  it("never offers a group in the without-link index", async () => {
    await fx.rotate("G1");
    await redis.sadd(fx.keys.withoutLinkIndex, "G1");
    expect((await join("solo")).status).toBe(503);
  });

  it("sends visitors to the group with the fewest participants, round robin among equals, skipping full ones", async () => {
    const links = { G1: await fx.rotate("G1"), G2: await fx.rotate("G2"), G3: await fx.rotate("G3") };
    await redis.hset(fx.keys.groupParticipants, { G1: "8", G2: "2", G3: "2" });
    const seen = new Set<string | null>();
    for (let i = 0; i < 4; i++) seen.add((await join("spring")).headers.get("location"));
    expect(seen).toEqual(new Set([links.G2, links.G3]));

    await redis.hset(fx.keys.groupParticipants, { G2: "1" });
    for (let i = 0; i < 3; i++) expect((await join("spring")).headers.get("location")).toBe(links.G2);
  });

  it("answers 503 with Retry-After when every group is full, and 404 for an unknown slug", async () => {
    await fx.rotate("G1");
    await redis.hset(fx.keys.groupParticipants, { G1: "3" });
    const full = await join("solo");
    expect(full.status).toBe(503);
    expect(full.headers.get("retry-after")).toBe("60");
    expect((await join("nope")).status).toBe(404);
    expect((await join("Bad..Slug")).status).toBe(404);
  });

  it("only ever redirects to chat.whatsapp.com links read from Redis", async () => {
    const { latest, channel } = channelKeys(fx.channel);
    const forged = JSON.stringify({
      event: "invite_link.rotated",
      schema: 1,
      rotation_id: "forged",
      group_id: "G1",
      invite_link: "https://chat.whatsapp.com/abcdefghij?next=https://evil.example",
      rotated_at: new Date().toISOString(),
      sequence: 1,
      policy: "pool",
      account: "default",
      trigger: "manual",
    });
    await redis.hset(latest, "G1", forged);
    await redis.publish(channel, forged);
    const res = await join("solo", "next=https://evil.example", { Host: "evil.example" });
    expect(res.status).toBe(503);
    expect(res.headers.get("location")).toBeNull();
  });
});

describe("signed join URLs", () => {
  const signed = (slug: string, exp: number, uses?: number) => signedQuery({ slug, exp, uses }, LINK_SECRET);
  const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

  it("admits a good signature and refuses a missing, tampered or foreign one with 403", async () => {
    const link = await fx.rotate("G2");
    const good = signed("vip", inAnHour(), 5);
    expect((await join("vip", good)).headers.get("location")).toBe(link);
    expect((await join("vip")).status).toBe(403);
    expect((await join("vip", good.replace("uses=5", "uses=6"))).status).toBe(403);
    // Tampered: the signature's first character changed (to one it is not: 1 run in 64 began with "A").
    const tampered = good.replace(/sig=(.)/, (_, first: string) => `sig=${first === "A" ? "B" : "A"}`);
    expect((await join("vip", tampered)).status).toBe(403);
    expect(
      (await join("vip", signedQuery({ slug: "vip", exp: inAnHour() }, "another-secret-0123456789"))).status,
    ).toBe(403);
    expect((await join("spring", good)).status).toBe(403); // signed for another slug
    expect((await join("spring")).status).toBe(302); // an unsigned link still admits plain visits
  });

  it("answers 410 once a signed URL has expired", async () => {
    await fx.rotate("G1");
    const exp = inAnHour();
    const query = signed("vip", exp);
    expect((await join("vip", query)).status).toBe(302);
    clockMs = exp * 1000;
    expect((await join("vip", query)).status).toBe(410);
  });

  it("admits exactly N of 100 parallel visits to a URL with --uses 50, then 410", async () => {
    await fx.rotate("G1");
    await fx.rotate("G2");
    const query = signed("vip", inAnHour(), 50);
    const answers = await Promise.all(Array.from({ length: 100 }, () => join("vip", query)));
    const statuses = answers.map((r) => r.status);
    expect(statuses.filter((s) => s === 302)).toHaveLength(50);
    expect(statuses.filter((s) => s === 410)).toHaveLength(50);
    expect((await join("vip", query)).status).toBe(410);
    // Visits refused as used up are not counted: the counter stays at the URL's limit.
    const sig = new URLSearchParams(query).get("sig")!;
    expect(await redis.get(fx.keys.linkVisits("vip", sig))).toBe("50");
  });

  it("does not use up a visit the pool could not serve", async () => {
    const query = signed("vip", inAnHour(), 1);
    expect((await join("vip", query)).status).toBe(503);
    await fx.rotate("G3");
    expect((await join("vip", query)).status).toBe(302);
    expect((await join("vip", query)).status).toBe(410);
  });
});

describe("the join page and the HTTP bounds", () => {
  it("gives a desktop browser a page with a QR code under a strict CSP, and a phone the redirect", async () => {
    const link = await fx.rotate("G1");
    const desktop = await join("solo", "", {
      Accept: "text/html,application/xhtml+xml",
      "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130",
    });
    expect(desktop.status).toBe(200);
    const csp = desktop.headers.get("content-security-policy")!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain("unsafe-inline");
    const html = await desktop.text();
    expect(html).toContain(`href="${link}"`);
    expect(html).toMatch(/<svg [^>]*aria-label="QR code/);
    expect(html).not.toMatch(/<script|src=|https?:\/\/(?!chat\.whatsapp\.com|www\.w3\.org)/);

    const phone = await join("solo", "", {
      Accept: "text/html",
      "User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148",
    });
    expect(phone.status).toBe(302);
    expect(phone.headers.get("location")).toBe(link);
  });

  it("bounds the URL, the header count and the body", async () => {
    await fx.rotate("G1");
    expect((await join("solo", `x=${"a".repeat(3000)}`)).status).toBe(414);
    const many: Record<string, string> = {};
    for (let i = 0; i < 80; i++) many[`x-h${i}`] = "1";
    expect((await join("solo", "", many)).status).toBe(431);
    const body = await fetch(`${fx.url}/join/solo`, { method: "POST", body: "x" });
    expect(body.status).toBe(405);
  });

  it("counts visits by slug and outcome in /metrics, and is ready once subscribed", async () => {
    await fx.rotate("G1");
    await join("solo");
    await join("nope");
    const text = await (await fetch(`${fx.url}/metrics`)).text();
    expect(text).toMatch(/wa_rotator_gateway_visits_total\{slug="solo",outcome="redirected"\} 1/);
    expect(text).toMatch(/wa_rotator_gateway_visits_total\{slug="-",outcome="unknown"\} 1/);
    expect(text).toMatch(/wa_rotator_gateway_pool_groups\{slug="solo",state="room"\} 1/);
    expect((await fetch(`${fx.url}/readyz`)).status).toBe(200);
    const health = await fetch(`${fx.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok", roles: ["gateway"] });
  });
});
