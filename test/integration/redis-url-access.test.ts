import { writeFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { startOwnedRedis, type OwnedRedis } from "../../scripts/redis-server.js";

/**
 * REDIS_URL is checked once with the settings; what the server refuses (a database index, a
 * permission) is one clear line and exit 1, never a silent database 0, a stack or a hang.
 */
const PASSWORD = "pw-never-shown-0123";
let server: OwnedRedis;
let dir = "";
let config = "";

beforeAll(async () => {
  server = await startOwnedRedis();
  const admin = new Redis(server.url);
  // A user that may do everything but INFO (which BullMQ needs).
  await admin.call("ACL", "SETUSER", "noinfo", "on", `>${PASSWORD}`, "~*", "&*", "+@all", "-info");
  admin.disconnect();
  dir = await mkdtemp(join(tmpdir(), "rotator-redis-url-"));
  config = join(dir, "rotation.yaml");
  await writeFile(config, 'policies:\n  - name: p\n    schedule: "0 3 * * *"\n    groups: ["G1"]\n');
}, 30_000);

afterAll(async () => {
  await server.dispose();
  await rm(dir, { recursive: true, force: true });
});

const noStack = (text: string) => expect(text).not.toMatch(/^\s+at /m);

describe("REDIS_URL", () => {
  it.each([
    ["redis//:PW@127.0.0.1:6379", "not a URL"],
    ["http://:PW@127.0.0.1:6379", "scheme must be redis:// or rediss://"],
    ["redis://:PW@127.0.0.1:6379/abc", "database index (the path) must be a whole number"],
    ["redis://:PW@127.0.0.1:6379/1.5", "database index (the path) must be a whole number"],
  ])("%s is a usage error (exit 2) that never shows the userinfo", async (url, reason) => {
    const { code, stdout, stderr } = await runCli(["status"], {
      REDIS_URL: url.replace("PW", PASSWORD),
      ROTATOR_CONFIG: config,
    });
    expect(code).toBe(2);
    expect(stderr).toContain("REDIS_URL");
    expect(stderr).toContain(reason);
    expect(stdout + stderr).not.toContain(PASSWORD);
    noStack(stderr);
  });

  it("a database index the server rejects is a clear failure, not database 0 (rotate --wait and worker)", async () => {
    const url = `redis://127.0.0.1:${server.port}/99`;
    const rotate = await runCli(["rotate", "G1", "--wait", "--timeout", "5s"], {
      REDIS_URL: url,
      ROTATOR_CONFIG: config,
    });
    expect(rotate.code).toBe(1);
    expect(rotate.stderr.trim()).toMatch(
      /^wa-invite-rotator rotate: Redis rejects the database index 99 of REDIS_URL/,
    );
    expect(rotate.stderr.trim().split("\n")).toHaveLength(1);
    const worker = await runCli(["worker"], { REDIS_URL: url, ROTATOR_CONFIG: config, HEALTH_PORT: "0" });
    expect(worker.code).toBe(1);
    expect(worker.stderr).toContain("Redis rejects the database index 99 of REDIS_URL");
    // Nothing was written to database 0 of that server.
    const admin = new Redis(server.url);
    expect(await admin.dbsize()).toBe(0);
    admin.disconnect();
  }, 60_000);

  it("a user without a permission the rotator needs: one clear line and exit 1, no stacks, no hang", async () => {
    const { code, stdout, stderr } = await runCli(["rotate", "G1", "--wait", "--timeout", "5s"], {
      REDIS_URL: `redis://noinfo:${PASSWORD}@127.0.0.1:${server.port}`,
      ROTATOR_CONFIG: config,
    });
    expect(code).toBe(1);
    expect(stderr.trim().split("\n")).toEqual([
      expect.stringContaining("Redis refused a command: the user of REDIS_URL lacks a permission"),
    ]);
    expect(stderr).toContain("NOPERM");
    expect(stdout + stderr).not.toContain(PASSWORD);
    noStack(stderr);
  }, 30_000);
});
