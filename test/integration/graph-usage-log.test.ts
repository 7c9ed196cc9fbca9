import { describe, expect } from "vitest";
import { createApp } from "../../src/app.js";
import { parseConfigText, resolveAccount } from "../../src/config/config.js";
import { createLogger } from "../../src/infra/logger.js";
import { loadSettings } from "../../src/config/settings.js";
import { policyYaml } from "../helpers/rotator.js";
import { simTest, type Rig } from "../helpers/fixture.js";
import { testRedisUrl } from "../helpers/redis.js";

/** The usage headers Graph sends reach the debug log (the README's troubleshooting relies on it). */
const TOKEN = "usage-log-token-0123456789";
const BUC = { "102290129340398": [{ type: "whatsapp_business_management", call_count: 87, total_time: 12 }] };
const APP_USAGE = { call_count: 41, total_cputime: 3, total_time: 5 };

const it = simTest({ tokens: { [TOKEN]: { name: "default" } } });

/** An app on the test's prefix (no roles started) that logs at debug into `lines`; stopped after the test. */
function setup(rig: Rig) {
  const { prefix, channel } = rig.prefix("usage-log");
  const lines: Record<string, unknown>[] = [];
  const env = {
    REDIS_URL: testRedisUrl(),
    ROTATOR_PREFIX: prefix,
    GRAPH_API_BASE_URL: rig.sim.url,
    WHATSAPP_ACCESS_TOKEN: TOKEN,
    HEALTH_PORT: "0",
  };
  const settings = loadSettings(env);
  const config = parseConfigText(policyYaml(["G-USAGE"], channel), "usage.yaml", env, {
    graphApiVersion: settings.GRAPH_API_VERSION,
  });
  const logger = createLogger("debug", {
    write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>),
  });
  const app = createApp({
    settings,
    logger,
    config,
    roles: { worker: false, scheduler: false, health: false },
  });
  rig.defer(() => app.stop());
  return { sim: rig.sim, app, lines };
}

describe("Graph usage headers", () => {
  it("are logged at debug with the account and the call, never the token", async ({ rig }) => {
    const { sim, app, lines } = setup(rig);
    sim.inject({
      kind: "error",
      status: 429,
      code: 80008,
      message: "rate limited",
      headers: { "X-Business-Use-Case-Usage": JSON.stringify(BUC), "X-App-Usage": JSON.stringify(APP_USAGE) },
    });
    const account = resolveAccount(app.config.current, "default");
    await expect(app.graph.getGroup(account, "G-USAGE")).rejects.toThrow();

    const logged = lines.filter((l) => l.msg === "graph usage");
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({
      level: "debug",
      account: "default",
      operation: "get-group",
      status: 429,
      usage: { businessUseCase: BUC, appUsage: APP_USAGE },
    });
    expect(JSON.stringify(lines)).not.toContain(TOKEN);
  });

  it("log nothing for a call without them", async ({ rig }) => {
    const { app, lines } = setup(rig);
    const before = lines.length;
    const account = resolveAccount(app.config.current, "default");
    await app.graph.getGroup(account, "G-USAGE").catch(() => undefined);
    expect(lines.slice(before).filter((l) => l.msg === "graph usage")).toEqual([]);
  });
});
