import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { inject } from "vitest";

export { deleteKeys } from "../../scripts/redis-server.js";

/** The Redis the suite shares (found or started by global-setup). Never flush it. */
export function testRedisUrl(): string {
  return inject("redisUrl");
}

/** A key prefix no other test uses. */
export function uniquePrefix(name: string): string {
  return `test-${name}-${randomBytes(4).toString("hex")}`;
}

export function testRedis(url = testRedisUrl()): Redis {
  return new Redis(url, { maxRetriesPerRequest: null });
}
