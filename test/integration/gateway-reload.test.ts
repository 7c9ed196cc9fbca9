import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createKeys } from "../../src/core/keys.js";
import { createPublisher } from "../../src/publish/publisher.js";
import { spawnCli, type CliProcess } from "../helpers/cli.js";
import { freePort } from "../../scripts/redis-server.js";
import { deleteKeys, testRedis, testRedisUrl, uniquePrefix } from "../helpers/redis.js";

/**
 * The `gateway` command reloads its policy file on SIGHUP, as the other roles do: a link added to
 * the file (here over a channel the gateway did not follow before) is served after the signal; an
 * invalid file is rejected and the running links stay.
 */
let redis: Redis;
let dir: string;
let prefix: string;
let gateway: CliProcess | undefined;

const policyFile = (channels: string[], links: string[]) =>
  [
    "policies:",
    ...channels.flatMap((channel, i) => [
      `  - name: p${i}`,
      '    schedule: "0 3 * * *"',
      `    channel: "${channel}"`,
      `    groups: [R${i}]`,
    ]),
    "links:",
    ...links,
  ].join("\n");

beforeEach(async () => {
  redis = testRedis();
  prefix = uniquePrefix("gw-reload");
  dir = await mkdtemp(join(tmpdir(), "rotator-gw-reload-"));
});

afterEach(async () => {
  if (gateway) {
    gateway.kill("SIGKILL");
    await gateway.exited;
  }
  gateway = undefined;
  await deleteKeys(redis, prefix, `${prefix}-a`, `${prefix}-b`);
  await redis.quit();
  await rm(dir, { recursive: true, force: true });
});

describe("gateway SIGHUP", () => {
  it("serves a link added to the policy file after SIGHUP, and keeps the links on an invalid file", async () => {
    const [a, b] = [`${prefix}-a:links`, `${prefix}-b:links`];
    const file = join(dir, "rotation.yaml");
    await writeFile(file, policyFile([a], ["  - slug: first", "    groups: [R0]"]));
    const publisher = createPublisher({ redis, keys: createKeys(prefix) });
    const publish = async (groupId: string, channel: string, policy: string) => {
      const link = `https://chat.whatsapp.com/${randomBytes(12).toString("base64url")}`;
      await publisher.publish({
        rotationId: `r-${randomBytes(4).toString("hex")}`,
        groupId,
        inviteLink: link,
        createdAt: Date.now(),
        policy,
        account: "default",
        trigger: "manual",
        channel,
      });
      return link;
    };
    const first = await publish("R0", a, "p0");
    const second = await publish("R1", b, "p1");

    const port = await freePort();
    gateway = spawnCli(["gateway"], {
      REDIS_URL: testRedisUrl(),
      ROTATOR_PREFIX: prefix,
      ROTATOR_CONFIG: file,
      GATEWAY_PORT: String(port),
      GATEWAY_HOST: "127.0.0.1",
      GATEWAY_RATE_LIMIT: "0",
      HEALTH_PORT: "0",
    });
    await gateway.waitFor("gateway listening", 20_000);
    const join_ = (slug: string) => fetch(`http://127.0.0.1:${port}/join/${slug}`, { redirect: "manual" });
    expect((await join_("first")).headers.get("location")).toBe(first);
    expect((await join_("second")).status).toBe(404);

    await writeFile(
      file,
      policyFile([a, b], ["  - slug: first", "    groups: [R0]", "  - slug: second", "    groups: [R1]"]),
    );
    gateway.kill("SIGHUP");
    await gateway.waitFor("gateway links reloaded", 10_000);
    const res = await join_("second");
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe(second);

    // An invalid file: rejected with its fault, the links stay.
    await writeFile(file, "links:\n  - slug: Not A Slug\n");
    gateway.kill("SIGHUP");
    await gateway.waitFor("policy file rejected", 10_000);
    expect((await join_("second")).headers.get("location")).toBe(second);
    expect((await join_("first")).headers.get("location")).toBe(first);
  }, 60_000);
});
