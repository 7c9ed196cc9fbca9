import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createKeys } from "../../src/core/keys.js";
import { createPublisher } from "../../src/publish/publisher.js";
import { freePort } from "../../scripts/redis-server.js";
import { spawnCli, type CliProcess } from "../helpers/cli.js";
import { deleteKeys, testRedis, testRedisUrl, uniquePrefix } from "../helpers/redis.js";

/**
 * A link with `signed: true` on a gateway without ROTATOR_LINK_SECRET would answer 403 to every
 * visit: the `gateway` command refuses to start with one (exit 2, as `start` does for a bad file),
 * and a reload that brings one in is rejected, the running links staying.
 */
let redis: Redis;
let dir: string;
let prefix: string;
let gateway: CliProcess | undefined;

const file = () => join(dir, "rotation.yaml");
const policyFile = (links: string[]) =>
  [
    "policies:",
    "  - name: p0",
    '    schedule: "0 3 * * *"',
    `    channel: "${prefix}:links"`,
    "    groups: [S1]",
    "links:",
    ...links,
  ].join("\n");
const env = (port: number) => ({
  REDIS_URL: testRedisUrl(),
  ROTATOR_PREFIX: prefix,
  ROTATOR_CONFIG: file(),
  GATEWAY_PORT: String(port),
  GATEWAY_HOST: "127.0.0.1",
  GATEWAY_RATE_LIMIT: "0",
});

beforeEach(async () => {
  redis = testRedis();
  prefix = uniquePrefix("gw-command");
  dir = await mkdtemp(join(tmpdir(), "rotator-gw-command-"));
});

afterEach(async () => {
  if (gateway) {
    gateway.kill("SIGKILL");
    await gateway.exited;
  }
  gateway = undefined;
  await deleteKeys(redis, prefix);
  await redis.quit();
  await rm(dir, { recursive: true, force: true });
});

describe("gateway and a signed link without ROTATOR_LINK_SECRET", () => {
  it("exits 2 at start, naming the variable and the link", async () => {
    await writeFile(
      file(),
      policyFile([
        "  - slug: open",
        "    groups: [S1]",
        "  - slug: vip",
        "    groups: [S1]",
        "    signed: true",
      ]),
    );
    gateway = spawnCli(["gateway"], env(await freePort()));
    // A gateway that started after all is killed by afterEach.
    const code = await Promise.race([
      gateway.exited,
      new Promise((resolve) => setTimeout(resolve, 15_000, "still running")),
    ]);
    expect(code).toBe(2);
    const said = gateway.stdout() + gateway.stderr();
    expect(said).toContain("links[1].signed");
    expect(said).toContain("ROTATOR_LINK_SECRET");
    expect(said).toContain("vip");
    expect(said).not.toContain("gateway listening");
  }, 30_000);

  it("rejects a reload that brings one in, and keeps serving the running links", async () => {
    await writeFile(file(), policyFile(["  - slug: open", "    groups: [S1]"]));
    const publisher = createPublisher({ redis, keys: createKeys(prefix) });
    const link = "https://chat.whatsapp.com/GatewayCommandTest01";
    await publisher.publish({
      rotationId: "r-gw-command",
      groupId: "S1",
      inviteLink: link,
      createdAt: Date.now(),
      policy: "p0",
      account: "default",
      trigger: "schedule",
      channel: `${prefix}:links`,
    });
    const port = await freePort();
    gateway = spawnCli(["gateway"], env(port));
    await gateway.waitFor("gateway listening", 20_000);
    const join_ = (slug: string) => fetch(`http://127.0.0.1:${port}/join/${slug}`, { redirect: "manual" });
    expect((await join_("open")).headers.get("location")).toBe(link);

    await writeFile(
      file(),
      policyFile([
        "  - slug: open",
        "    groups: [S1]",
        "  - slug: vip",
        "    groups: [S1]",
        "    signed: true",
      ]),
    );
    gateway.kill("SIGHUP");
    await gateway.waitFor("policy file rejected", 10_000);
    expect(gateway.stdout()).toMatch(/policy file rejected.*links\[1\]\.signed.*ROTATOR_LINK_SECRET/);
    expect((await join_("open")).headers.get("location")).toBe(link);
    expect((await join_("vip")).status).toBe(404);
  }, 40_000);
});
