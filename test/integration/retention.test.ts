import type { Redis } from "ioredis";
import { expect } from "vitest";
import type { RotationJobData } from "../../src/core/interfaces.js";
import { createKeys } from "../../src/core/keys.js";
import { createRotationQueue, enqueueRotations, scheduledRotationId } from "../../src/rotation/queue.js";
import { simTest } from "../helpers/fixture.js";
import { policyYaml, startTestRotator } from "../helpers/rotator.js";

/**
 * What finished rotations leave in Redis: per rotation only its job (finished jobs are removed
 * after an hour) and its saga hash with a short TTL; everything else is per group, per channel or
 * per queue, and does not grow with the number of rotations. README (Development) states the bytes.
 */
const it = simTest();

const GROUPS = Array.from({ length: 20 }, (_, i) => `12036300000000${String(i).padStart(4, "0")}`);

it("a finished rotation leaves its job and a saga hash that expires within the hour, nothing else", async ({
  rig,
}) => {
  const { prefix, channel } = rig.prefix("retention");
  const app = await startTestRotator({ graphUrl: rig.sim.url, prefix, yaml: policyYaml(GROUPS, channel) });
  rig.defer(() => app.stop());
  const keys = createKeys(prefix);
  const queue = createRotationQueue(keys, rig.redis.duplicate());
  rig.defer(() => queue.close());

  const rotations: RotationJobData[] = GROUPS.map((groupId) => ({
    rotationId: scheduledRotationId("test", 1_800_000_000_000, groupId),
    groupId,
    account: "default",
    policy: "test",
    channel,
    trigger: "schedule",
    fireAt: 1_800_000_000_000,
    requestedAt: Date.now(),
  }));
  await enqueueRotations(queue, rotations);
  await expect.poll(() => queue.getCompletedCount(), { timeout: 20_000 }).toBe(GROUPS.length);

  const left = await scanKeys(rig.redis, `${prefix}:*`);
  const perRotation = (id: string) => [keys.rotation(id), `${prefix}:${keys.rotationQueue}:${id}`];
  const rotationKeys = new Set(rotations.flatMap((r) => perRotation(r.rotationId)));
  const groupKeys = new Set(GROUPS.flatMap((g) => [keys.group(g), keys.groupLock(g)]));
  // Kept once per queue, prefix or account: their size does not follow the number of rotations.
  const shared = new Set([keys.groupsIndex, keys.withoutLinkIndex, keys.webhookStream]);
  const queueOrAccount = new RegExp(
    `^${prefix}:(${keys.rotationQueue}:(completed|events|meta|id|marker|delayed|stalled-check)|account:.*)$`,
  );
  const unexpected = left.filter(
    (key) => !rotationKeys.has(key) && !groupKeys.has(key) && !shared.has(key) && !queueOrAccount.test(key),
  );
  expect(unexpected).toEqual([]);

  for (const rotation of rotations) {
    // The saga hash is needed while the rotation can still run; published, it expires soon.
    const ttl = await rig.redis.pttl(keys.rotation(rotation.rotationId));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(3_600_000);
    // The job carries no removal options of its own: the worker's (an hour) apply.
    const opts = JSON.parse(
      (await rig.redis.hget(`${prefix}:${keys.rotationQueue}:${rotation.rotationId}`, "opts"))!,
    );
    expect(opts).not.toHaveProperty("removeOnComplete");
  }
});

async function scanKeys(redis: Redis, pattern: string) {
  const found: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== "0");
  return found;
}
