import { expect, it } from "vitest";
import { runCliWhile } from "../helpers/cli.js";
import { freePort } from "../../scripts/redis-server.js";
import { uniquePrefix } from "../helpers/redis.js";

it("binds the health server to HEALTH_HOST and says it listens once", async () => {
  const port = await freePort();
  const env = {
    ROTATOR_CONFIG: "config/demo.yaml",
    WHATSAPP_ACCESS_TOKEN: "health-host-token-123",
    REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    ROTATOR_PREFIX: uniquePrefix("health-host"),
    HEALTH_PORT: String(port),
    HEALTH_HOST: "127.0.0.1",
    ROTATOR_SHUTDOWN_TIMEOUT: "1s",
  };
  const proc = await runCliWhile(["worker"], env, async (proc) => {
    await proc.waitFor("health server listening");
    const res = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(res.status).toBe(200);
  });
  const lines = proc.logged<{ host: string; port: number }>("health server listening");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({ host: "127.0.0.1", port });
});
