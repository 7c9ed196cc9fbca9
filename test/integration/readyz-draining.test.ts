import { expect } from "vitest";
import { enqueueRotations, manualRotationId } from "../../src/rotation/queue.js";
import { freePort } from "../../scripts/redis-server.js";
import { simTest } from "../helpers/fixture.js";
import { policyYaml, TEST_TOKEN } from "../helpers/rotator.js";

/** `/readyz` answers 503 from the moment a drain begins, while a rotation in flight finishes. */
const it = simTest({ tokens: { [TEST_TOKEN]: { phoneNumberId: "15550011" } } });

it("answers 503 (draining) once stop() begins, while the rotation in flight still finishes", async ({
  rig,
}) => {
  const { sim, redis } = rig;
  const { prefix, channel } = rig.prefix("readyz-drain");
  const port = await freePort();
  const app = await rig.rotator(prefix, {
    yaml: policyYaml(["RD1"], channel),
    env: { HEALTH_PORT: String(port), ROTATOR_SHUTDOWN_TIMEOUT: "20s" },
    roles: { health: true },
  });
  const url = `http://127.0.0.1:${port}/readyz`;
  expect((await fetch(url)).status).toBe(200);

  sim.inject({ kind: "latency", ms: 1_500, match: { groupId: "RD1" } });
  const rotationId = manualRotationId();
  await enqueueRotations(app.queue, [
    {
      rotationId,
      groupId: "RD1",
      account: "default",
      policy: null,
      channel,
      trigger: "manual",
      requestedAt: Date.now(),
    },
  ]);
  await expect.poll(() => sim.calls.some((c) => c.groupId === "RD1"), { timeout: 10_000 }).toBe(true);

  const stopped = app.stop();
  const draining = await fetch(url);
  expect(draining.status).toBe(503);
  expect(await draining.json()).toMatchObject({ checks: { draining: true } });
  await stopped;
  // The rotation in flight was let finish.
  expect(await redis.hget(`${channel}:latest`, "RD1")).not.toBeNull();
}, 30_000);
