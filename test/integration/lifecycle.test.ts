import { createServer, type Server } from "node:net";
import { describe, expect, it } from "vitest";
import { runCli, spawnCli, type CliProcess } from "../helpers/cli.js";
import { freePort, startOwnedRedis } from "../../scripts/redis-server.js";
import { testRedisUrl, uniquePrefix } from "../helpers/redis.js";

/** A process that cannot start, or is stopped while it waits to, still exits, and with the right code. */
const base = () => ({
  ROTATOR_PREFIX: uniquePrefix("lifecycle"),
  WHATSAPP_ACCESS_TOKEN: "lifecycle-token-123456",
  GRAPH_API_BASE_URL: "http://127.0.0.1:9",
  LOG_LEVEL: "info",
  ROTATOR_SHUTDOWN_TIMEOUT: "1s",
});

describe("process lifecycle", () => {
  it("exits 1 with the reason when the health port is taken", async () => {
    const port = await freePort();
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(port, "0.0.0.0", resolve));
    try {
      const proc = spawnCli(["worker"], { ...base(), REDIS_URL: testRedisUrl(), HEALTH_PORT: String(port) });
      const code = await Promise.race([
        proc.exited,
        new Promise((resolve) => setTimeout(resolve, 15_000, "still running")),
      ]);
      if (code === "still running") proc.kill("SIGKILL");
      expect(code).toBe(1);
      expect(proc.stderr()).toContain("EADDRINUSE");
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it("exits 0 on SIGTERM while it still waits for an unreachable Redis", async () => {
    const deadPort = await freePort();
    const proc = spawnCli(["start"], {
      ...base(),
      REDIS_URL: `redis://127.0.0.1:${deadPort}`,
      HEALTH_PORT: "0",
    });
    await proc.waitFor("wa-invite-rotator starting");
    await new Promise((resolve) => setTimeout(resolve, 500));
    proc.kill("SIGTERM");
    const code = await Promise.race([
      proc.exited,
      new Promise((resolve) => setTimeout(resolve, 20_000, "still running")),
    ]);
    if (code === "still running") proc.kill("SIGKILL");
    expect(code).toBe(0);
    // One line per outage, not one per reconnect attempt.
    expect(proc.stdout().match(/"rotation worker error"/g)?.length ?? 0).toBeLessThanOrEqual(1);
    expect(proc.stdout()).toContain("shutdown complete");
  });

  describe("ROTATOR_SHUTDOWN_TIMEOUT bounds the whole shutdown, not each stage", () => {
    // Every stage waits on a Redis that is gone and then is forced; the sum must still fit.
    const TIMEOUT_MS = 3_000;
    const MARGIN_MS = 2_000;
    const env = (redisUrl: string) => ({
      ...base(),
      REDIS_URL: redisUrl,
      HEALTH_PORT: "0",
      ROTATOR_SHUTDOWN_TIMEOUT: `${TIMEOUT_MS / 1000}s`,
    });
    const stopTimed = async (proc: CliProcess) => {
      const signalledAt = Date.now();
      proc.kill("SIGTERM");
      const code = await Promise.race([
        proc.exited,
        new Promise((resolve) => setTimeout(resolve, 20_000, "still running")),
      ]);
      if (code === "still running") proc.kill("SIGKILL");
      return { code, tookMs: Date.now() - signalledAt };
    };

    it("Redis gone after the start", async () => {
      const owned = await startOwnedRedis();
      try {
        const proc = spawnCli(["start"], env(owned.url));
        await proc.waitFor(/"service":"scheduler".*"msg":"started"/);
        await owned.kill();
        await new Promise((resolve) => setTimeout(resolve, 300));
        const { code, tookMs } = await stopTimed(proc);
        expect(code).toBe(0);
        expect(tookMs).toBeLessThanOrEqual(TIMEOUT_MS + MARGIN_MS);
        expect(proc.stdout()).toContain("shutdown complete");
      } finally {
        await owned.dispose();
      }
    });

    it("Redis gone and nothing in flight: exits within 3 s even with the default 30 s deadline", async () => {
      const owned = await startOwnedRedis();
      try {
        const proc = spawnCli(["start"], { ...env(owned.url), ROTATOR_SHUTDOWN_TIMEOUT: "30s" });
        await proc.waitFor(/"service":"scheduler".*"msg":"started"/);
        await owned.kill();
        await new Promise((resolve) => setTimeout(resolve, 300));
        const { code, tookMs } = await stopTimed(proc);
        expect(code).toBe(0);
        // 3 s is the promise; the margin is for a loaded machine (it took 31.5 s before).
        expect(tookMs).toBeLessThanOrEqual(3_000 + MARGIN_MS);
        expect(proc.stdout()).toContain("nothing is in flight: closing at once");
        expect(proc.stdout()).toContain("shutdown complete");
      } finally {
        await owned.dispose();
      }
    });

    it("Redis never reachable (the start still in flight)", async () => {
      const proc = spawnCli(["start"], env(`redis://127.0.0.1:${await freePort()}`));
      await proc.waitFor("wa-invite-rotator starting");
      await new Promise((resolve) => setTimeout(resolve, 500));
      const { code, tookMs } = await stopTimed(proc);
      expect(code).toBe(0);
      expect(tookMs).toBeLessThanOrEqual(TIMEOUT_MS + MARGIN_MS);
      expect(proc.stdout()).toContain("shutdown complete");
    });
  });

  it("rotate exits 1 naming the unreachable Redis (password hidden) instead of waiting forever", async () => {
    const deadPort = await freePort();
    const { code, stderr } = await runCli(["rotate", "G1", "--wait"], {
      ...base(),
      REDIS_URL: `redis://:hunter2-secret@127.0.0.1:${deadPort}`,
    });
    expect(code).toBe(1);
    expect(stderr).toContain(`cannot reach Redis at redis://[redacted]@127.0.0.1:${deadPort}`);
    expect(stderr).not.toContain("hunter2-secret");
  });
});
