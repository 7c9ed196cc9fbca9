import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { parseConfigText } from "../../src/config/config.js";
import { loadSettings } from "../../src/config/settings.js";
import type { Clock } from "../../src/core/interfaces.js";
import { createKeys, type Keys } from "../../src/core/keys.js";
import { createGateway, type Gateway } from "../../src/gateway/gateway.js";
import { createLogger } from "../../src/infra/logger.js";
import { createPublisher } from "../../src/publish/publisher.js";

/**
 * A gateway on a free port over its own key prefix and channel, with a publisher that publishes
 * links the way a rotation does. `close()` stops the gateway and deletes nothing: the caller's
 * `deleteKeys(redis, prefix, channel)` does.
 */
export interface GatewayFixture {
  readonly gateway: Gateway;
  readonly url: string;
  readonly keys: Keys;
  readonly prefix: string;
  readonly channel: string;
  /** Publishes a new link of `groupId` (as its rotation would); returns the link. */
  rotate(groupId: string, link?: string): Promise<string>;
  close(): Promise<void>;
}

export const LINK_SECRET = "gateway-test-link-secret-0123456789";

export async function startGatewayFixture(options: {
  redis: Redis;
  redisUrl: string;
  prefix: string;
  channel: string;
  /** The `links:` section, YAML (indented under `links:`). */
  links: string;
  groups: string[];
  env?: Record<string, string>;
  clock?: Clock;
}): Promise<GatewayFixture> {
  const { prefix, channel } = options;
  const yaml = [
    "policies:",
    "  - name: pool",
    '    schedule: "0 3 * * *"',
    `    channel: "${channel}"`,
    `    groups: [${options.groups.map((g) => JSON.stringify(g)).join(", ")}]`,
    "links:",
    options.links,
  ].join("\n");
  const config = parseConfigText(yaml, "gateway-test.yaml", {}, { graphApiVersion: "v23.0" });
  const settings = loadSettings({
    REDIS_URL: options.redisUrl,
    ROTATOR_PREFIX: prefix,
    ROTATOR_LINK_SECRET: LINK_SECRET,
    GATEWAY_RATE_LIMIT: "0",
    GATEWAY_HOST: "127.0.0.1",
    ...options.env,
  });
  const logger = createLogger("silent");
  const gateway = createGateway({
    settings,
    config,
    logger,
    port: 0,
    ...(options.clock ? { clock: options.clock } : {}),
  });
  await gateway.start();
  const keys = createKeys(prefix);
  const publisher = createPublisher({ redis: options.redis, keys });
  let n = 0;
  return {
    gateway,
    url: gateway.server()!.url,
    keys,
    prefix,
    channel,
    async rotate(groupId, link = `https://chat.whatsapp.com/${randomBytes(12).toString("base64url")}`) {
      await publisher.publish({
        rotationId: `rot-${groupId}-${++n}-${randomBytes(3).toString("hex")}`,
        groupId,
        inviteLink: link,
        createdAt: Date.now(),
        policy: "pool",
        account: "default",
        trigger: "manual",
        channel,
      });
      return link;
    },
    close: () => gateway.stop(),
  };
}

/** GET without following redirects. */
export function visit(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { redirect: "manual", headers });
}
