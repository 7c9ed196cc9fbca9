import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli.js";
import type { CommandIO } from "../../src/commands/command.js";
import { LINK_SECRET, startGatewayFixture, visit, type GatewayFixture } from "../helpers/gateway.js";
import { testRedis } from "../helpers/redis.js";

/**
 * `link <slug> [--ttl] [--uses]` prints GATEWAY_PUBLIC_URL/join/<slug>?exp=…&uses=…&sig=…, which a
 * gateway with the same ROTATOR_LINK_SECRET admits (and counts); exit 2 on an unknown slug or
 * without the secret, which is never printed.
 */
let redis: Redis;
let fx: GatewayFixture;
let dir: string;
let file: string;

beforeAll(async () => {
  redis = testRedis();
  fx = await startGatewayFixture({
    redis,
    name: "link-command",
    links: ["  - slug: vip", "    groups: [G1]", "    signed: true"].join("\n"),
    groups: ["G1"],
  });
  dir = await mkdtemp(join(tmpdir(), "rotator-link-command-"));
  file = join(dir, "rotation.yaml");
  await writeFile(
    file,
    [
      "policies:",
      "  - name: pool",
      '    schedule: "0 3 * * *"',
      "    groups: [G1]",
      "links:",
      "  - slug: vip",
      "    groups: [G1]",
      "    signed: true",
    ].join("\n"),
  );
});

afterAll(async () => {
  await fx.close();
  await redis.quit();
  await rm(dir, { recursive: true, force: true });
});

function fakeIO(env: Record<string, string | undefined>): CommandIO & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { env, stdout, stderr, out: (line) => stdout.push(line), err: (line) => stderr.push(line) };
}

const env = (extra: Record<string, string> = {}) => ({
  ROTATOR_CONFIG: file,
  GATEWAY_PUBLIC_URL: `${fx.url}/`,
  LOG_LEVEL: "silent",
  ...extra,
});

describe("link", () => {
  it("prints a signed join URL the gateway admits, --uses times", async () => {
    const io = fakeIO(env({ ROTATOR_LINK_SECRET: LINK_SECRET }));
    const before = Math.floor(Date.now() / 1000);
    expect(await main(["link", "vip", "--ttl", "2h", "--uses", "2"], io)).toBe(0);
    expect(io.stdout).toHaveLength(1);
    const printed = io.stdout[0]!;
    expect(printed).toMatch(new RegExp(`^${fx.url}/join/vip\\?exp=\\d+&uses=2&sig=[A-Za-z0-9_-]{43}$`));
    const exp = Number(new URL(printed).searchParams.get("exp"));
    expect(exp).toBeGreaterThanOrEqual(before + 7200);
    expect(exp).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + 7200);
    expect([...io.stdout, ...io.stderr].join("\n")).not.toContain(LINK_SECRET);

    const link = await fx.rotate("G1");
    expect((await visit(printed)).headers.get("location")).toBe(link);
    expect((await visit(printed)).headers.get("location")).toBe(link);
    expect((await visit(printed)).status).toBe(410);
    // Without the signature the signed link admits nothing.
    expect((await visit(`${fx.url}/join/vip`)).status).toBe(403);
  });

  it("prints a URL without uses by default, lasting 7 days", async () => {
    const io = fakeIO(env({ ROTATOR_LINK_SECRET: LINK_SECRET }));
    expect(await main(["link", "vip"], io)).toBe(0);
    const url = new URL(io.stdout[0]!);
    expect(url.searchParams.has("uses")).toBe(false);
    const days = (Number(url.searchParams.get("exp")) * 1000 - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.99);
    expect(days).toBeLessThanOrEqual(7.001);
    await fx.rotate("G1");
    expect((await visit(io.stdout[0]!)).status).toBe(302);
  });

  it("exits 2 on an unknown slug, naming the known ones, and never prints the secret", async () => {
    const io = fakeIO(env({ ROTATOR_LINK_SECRET: LINK_SECRET }));
    expect(await main(["link", "nope"], io)).toBe(2);
    expect(io.stdout).toEqual([]);
    expect(io.stderr.join("\n")).toContain('no link with slug "nope" (links: vip)');
    expect(io.stderr.join("\n")).not.toContain(LINK_SECRET);
  });

  it("exits 2 without ROTATOR_LINK_SECRET, naming it", async () => {
    const io = fakeIO(env());
    expect(await main(["link", "vip"], io)).toBe(2);
    expect(io.stdout).toEqual([]);
    expect(io.stderr.join("\n")).toContain("ROTATOR_LINK_SECRET: not set");
  });

  it("exits 2 on bad usage", async () => {
    const secret = { ROTATOR_LINK_SECRET: LINK_SECRET };
    for (const args of [["link"], ["link", "vip", "--uses", "0"], ["link", "vip", "--ttl", "soon"]]) {
      const io = fakeIO(env(secret));
      expect(await main(args, io), args.join(" ")).toBe(2);
      expect(io.stdout).toEqual([]);
    }
  });
});
