import { request } from "node:http";
import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import {
  redisReadiness,
  startHealthServer,
  type HealthServer,
  type Readiness,
} from "../../src/ops/health.js";
import { createLogger } from "../../src/infra/logger.js";
import { createMetrics, type Metrics } from "../../src/infra/metrics.js";
import { startOwnedRedis, type OwnedRedis } from "../../scripts/redis-server.js";

const logger = createLogger("silent");
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function start(
  ready: () => Promise<Readiness>,
  metrics: Metrics = createMetrics({ collectDefault: false }),
): Promise<HealthServer> {
  const server = await startHealthServer({ port: 0, host: "127.0.0.1", metrics, ready, logger });
  cleanups.push(() => server.close());
  return server;
}

const ok = async (): Promise<Readiness> => ({ ok: true, checks: { redis: true } });

/** Polls `url` until it answers `status`, or fails after `timeoutMs`. */
async function waitForStatus(url: string, status: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 0;
  while (Date.now() < deadline) {
    last = (await fetch(url)).status;
    if (last === status) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} answered ${last}, not ${status}, for ${timeoutMs} ms`);
}

describe("health server", () => {
  it("answers /healthz with 200 without calling ready()", async () => {
    let readyCalls = 0;
    const server = await start(async () => {
      readyCalls++;
      return { ok: false, checks: {} };
    });
    expect(server.port).toBeGreaterThan(0);
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
    const res = await fetch(`${server.url}/healthz`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({ status: "ok" });
    expect(readyCalls).toBe(0);
  });

  it("answers /readyz 503 until ready() reports ok, then 200, with the checks in the body", async () => {
    let state: Readiness = { ok: false, checks: { redis: false, policies: "not loaded" } };
    const server = await start(async () => state);
    const before = await fetch(`${server.url}/readyz`);
    expect(before.status).toBe(503);
    expect(await before.json()).toMatchObject({ checks: { redis: false, policies: "not loaded" } });

    state = { ok: true, checks: { redis: true, policies: true } };
    const after = await fetch(`${server.url}/readyz`);
    expect(after.status).toBe(200);
    expect(await after.json()).toMatchObject({ status: "ready", checks: { redis: true, policies: true } });
  });

  it("answers /readyz 503 within about 1 s when ready() hangs", async () => {
    const hanging = await start(() => new Promise<Readiness>(() => {}));
    const started = Date.now();
    const res = await fetch(`${hanging.url}/readyz`);
    const elapsed = Date.now() - started;
    expect(res.status).toBe(503);
    expect((await res.json()) as { checks: Record<string, unknown> }).toMatchObject({
      checks: { timeout: expect.stringContaining("1000 ms") },
    });
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(2_500);
  });

  it("starts a fresh ready() call after one timed out, so a stuck call does not pin 503", async () => {
    let calls = 0;
    const server = await startHealthServer({
      port: 0,
      host: "127.0.0.1",
      metrics: createMetrics({ collectDefault: false }),
      ready: () => (++calls === 1 ? new Promise<Readiness>(() => {}) : ok()),
      logger,
      readyTimeoutMs: 100,
    });
    cleanups.push(() => server.close());
    expect((await fetch(`${server.url}/readyz`)).status).toBe(503);
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    expect(calls).toBe(2);
  });

  it("answers /readyz 503 when ready() throws, without the error text", async () => {
    const throwing = await start(async () => {
      throw new Error("boom");
    });
    const thrown = await fetch(`${throwing.url}/readyz`);
    expect(thrown.status).toBe(503);
    expect(JSON.stringify(await thrown.json())).not.toContain("boom");
  });

  it("serves /metrics in the Prometheus text format, even while a collect callback hangs", async () => {
    const metrics = createMetrics({ collectDefault: false, collectTimeoutMs: 100 });
    metrics.registerQueueDepth(() => new Promise(() => {})); // Redis down: the count never answers
    const server = await start(ok, metrics);
    metrics.rotations.inc({ result: "published", account: "default", trigger: "manual" });
    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe(metrics.contentType);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await res.text()).toContain(
      'wa_rotator_rotations_total{result="published",account="default",trigger="manual"} 1',
    );
  });

  it("supports HEAD, answers 404 for other paths and 405 for other methods", async () => {
    const server = await start(ok);
    const head = await fetch(`${server.url}/healthz`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    expect((await fetch(`${server.url}/readyz`, { method: "HEAD" })).status).toBe(200);
    expect((await fetch(`${server.url}/healthz?probe=1`)).status).toBe(200);
    expect((await fetch(`${server.url}/nope`)).status).toBe(404);
    const post = await fetch(`${server.url}/metrics`, { method: "POST" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
  });

  it("closes keep-alive connections on close()", async () => {
    const server = await start(ok);
    const agentResponse = await new Promise<number>((resolve, reject) => {
      const req = request(`${server.url}/healthz`, { headers: { connection: "keep-alive" } }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      });
      req.on("error", reject);
      req.end();
    });
    expect(agentResponse).toBe(200);
    const started = Date.now();
    await server.close();
    await server.close(); // idempotent
    expect(Date.now() - started).toBeLessThan(1_000);
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
  });

  it("rejects when the port is taken", async () => {
    const first = await start(ok);
    await expect(
      startHealthServer({
        port: first.port,
        host: "127.0.0.1",
        metrics: createMetrics({ collectDefault: false }),
        ready: ok,
        logger,
      }),
    ).rejects.toThrow(/EADDRINUSE/);
  });
});

describe("redisReadiness", () => {
  it("turns /readyz to 503 while a test-owned Redis is stopped and back to 200 after it restarts", async () => {
    const owned: OwnedRedis = await startOwnedRedis();
    cleanups.push(() => owned.dispose());
    const redis = new Redis(owned.url, { maxRetriesPerRequest: null, retryStrategy: () => 50 });
    redis.on("error", () => {});
    cleanups.push(async () => redis.disconnect());
    const redisReady = redisReadiness(redis);
    const server = await start(async () => {
      const ok = await redisReady();
      return { ok, checks: { redis: ok } };
    });

    await waitForStatus(`${server.url}/readyz`, 200);
    await owned.stop();
    await waitForStatus(`${server.url}/readyz`, 503);
    expect(await (await fetch(`${server.url}/healthz`)).json()).toEqual({ status: "ok" });
    await owned.start();
    await waitForStatus(`${server.url}/readyz`, 200);
  });

  it("is false when PING does not answer within the timeout", async () => {
    const stuck = { status: "ready", ping: () => new Promise<string>(() => {}) } as unknown as Redis;
    const started = Date.now();
    expect(await redisReadiness(stuck, { timeoutMs: 100 })()).toBe(false);
    expect(Date.now() - started).toBeLessThan(1_000);

    const failing = { status: "ready", ping: () => Promise.reject(new Error("LOADING")) } as unknown as Redis;
    expect(await redisReadiness(failing)()).toBe(false);
    const closed = { status: "reconnecting", ping: () => Promise.resolve("PONG") } as unknown as Redis;
    expect(await redisReadiness(closed)()).toBe(false);
  });
});
