import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { parseConfigText, type ResolvedConfig } from "../../src/config/config.js";
import { loadSettings } from "../../src/config/settings.js";
import type { Clock } from "../../src/core/interfaces.js";
import { createKeys, type Keys } from "../../src/core/keys.js";
import { createGateway, type Gateway } from "../../src/gateway/gateway.js";
import { createLogger } from "../../src/infra/logger.js";
import { createPublisher } from "../../src/publish/publisher.js";
import { deleteKeys, testRedisUrl, uniquePrefix } from "./redis.js";

/**
 * A gateway on a free port over a key prefix and channel of its own (named after `name`) on the
 * test Redis, with a publisher that publishes links the way a rotation does. `close()` stops the
 * gateway and deletes the prefix's and channel's keys.
 */
export interface GatewayFixture {
  readonly gateway: Gateway;
  readonly url: string;
  readonly keys: Keys;
  readonly prefix: string;
  readonly channel: string;
  /** The policy file the gateway runs. */
  readonly config: ResolvedConfig;
  /**
   * Publishes a new link of `groupId` (as its rotation would: by the policy `pool`, or with
   * `policy: null` as a manual `rotate` does); returns the link.
   */
  rotate(groupId: string, link?: string, policy?: string | null): Promise<string>;
  close(): Promise<void>;
}

export const LINK_SECRET = "gateway-test-link-secret-0123456789";

export async function startGatewayFixture(options: {
  redis: Redis;
  /** Names the key prefix (`test-<name>-<random>`). */
  name: string;
  /** The `links:` section, YAML (indented under `links:`). */
  links: string;
  /** The policy `pool`'s groups; `all` (its account gets a phone_number_id). */
  groups: string[] | "all";
  env?: Record<string, string>;
  clock?: Clock;
}): Promise<GatewayFixture> {
  const prefix = uniquePrefix(options.name);
  const channel = `${prefix}-chan:links`;
  const { groups } = options;
  const all = groups === "all";
  const yaml = [
    ...(all
      ? ["accounts:", '  default: { token_env: WHATSAPP_ACCESS_TOKEN, phone_number_id: "15550001" }']
      : []),
    "policies:",
    "  - name: pool",
    '    schedule: "0 3 * * *"',
    `    channel: "${channel}"`,
    groups === "all" ? "    groups: all" : `    groups: [${groups.map((g) => JSON.stringify(g)).join(", ")}]`,
    "links:",
    options.links,
  ].join("\n");
  const config = parseConfigText(yaml, "gateway-test.yaml", {}, { graphApiVersion: "v23.0" });
  const settings = loadSettings({
    REDIS_URL: testRedisUrl(),
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
    config,
    async rotate(
      groupId,
      link = `https://chat.whatsapp.com/${randomBytes(12).toString("base64url")}`,
      policy: string | null = "pool",
    ) {
      await publisher.publish({
        rotationId: `rot-${groupId}-${++n}-${randomBytes(3).toString("hex")}`,
        groupId,
        inviteLink: link,
        createdAt: Date.now(),
        policy,
        account: "default",
        trigger: policy === null ? "manual" : "schedule",
        channel,
      });
      return link;
    },
    async close() {
      await gateway.stop();
      await deleteKeys(options.redis, prefix, channel);
    },
  };
}

/** GET without following redirects. */
export function visit(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { redirect: "manual", headers });
}
