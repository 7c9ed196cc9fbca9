import { createApp, type App, type AppRoles } from "../../src/app.js";
import { parseConfigText } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { loadSettings } from "../../src/settings.js";
import { testRedisUrl, uniquePrefix } from "./redis.js";

export const TEST_TOKEN = "test-token-0123456789";

/** A policy file with one policy over the given groups, on the given channel. */
export function policyYaml(groups: string[], channel: string, schedule = "0 3 * * *"): string {
  return [
    "policies:",
    "  - name: test",
    `    schedule: "${schedule}"`,
    `    channel: "${channel}"`,
    `    groups: [${groups.map((g) => JSON.stringify(g)).join(", ")}]`,
  ].join("\n");
}

export interface TestRotatorOptions {
  graphUrl: string;
  prefix?: string;
  yaml?: string;
  env?: Record<string, string>;
  roles?: Partial<AppRoles>;
}

/** An in-process app (composition root) against the test Redis and a simulator. Call `stop()`. */
export async function startTestRotator(options: TestRotatorOptions): Promise<App> {
  const prefix = options.prefix ?? uniquePrefix("app");
  const env = {
    REDIS_URL: testRedisUrl(),
    ROTATOR_PREFIX: prefix,
    GRAPH_API_BASE_URL: options.graphUrl,
    WHATSAPP_ACCESS_TOKEN: TEST_TOKEN,
    HEALTH_PORT: "0",
    LOG_LEVEL: "silent",
    ROTATOR_CONCURRENCY: "8",
    ...options.env,
  };
  const settings = loadSettings(env);
  const config = parseConfigText(
    options.yaml ?? policyYaml(["G-placeholder"], "test:links"),
    "test.yaml",
    env,
    {
      graphApiVersion: settings.GRAPH_API_VERSION,
    },
  );
  const app = createApp({
    settings,
    logger: createLogger(settings.LOG_LEVEL),
    config,
    roles: { worker: true, scheduler: false, health: false, ...options.roles },
  });
  await app.start();
  return app;
}
