import { describe, expect } from "vitest";
import { parseConfigText } from "../../src/config/config.js";
import { loadSettings } from "../../src/config/settings.js";
import { channelKeys } from "../../src/core/keys.js";
import { createGateway } from "../../src/gateway/gateway.js";
import { webhookRoutes } from "../../src/gateway/webhook-receiver.js";
import { enqueueRotations, manualRotationId } from "../../src/rotation/queue.js";
import { simTest, type Rig } from "../helpers/fixture.js";
import { capturingLogger, TEST_TOKEN } from "../helpers/rotator.js";
import { testRedisUrl } from "../helpers/redis.js";

/**
 * The whole loop: the simulator's groups change and it sends signed webhooks to the gateway, which
 * records them; the worker's consumer applies them and `rotate_after_joins` rotates the group.
 */
const APP_SECRET = "loop-test-app-secret";
const G = "G-LOOP-1";

const it = simTest({ tokens: { [TEST_TOKEN]: {} } });

/**
 * A gateway that records webhooks on the test's prefix, the file's simulator sending them there,
 * and a rotator on the prefix; all stopped after the test.
 */
async function setUp(rig: Rig) {
  const { prefix, channel } = rig.prefix("loop");
  const yaml = [
    "policies:",
    "  - name: door",
    '    schedule: "0 3 * * *"',
    `    channel: "${channel}"`,
    `    groups: ["${G}"]`,
    "    rotate_after_joins: 3",
  ].join("\n");
  const env = { REDIS_URL: testRedisUrl(), ROTATOR_PREFIX: prefix, GATEWAY_HOST: "127.0.0.1" };
  const gateway = createGateway({
    settings: loadSettings({ ...env, WHATSAPP_APP_SECRET: APP_SECRET }),
    config: parseConfigText(yaml, "loop.yaml", {}, { graphApiVersion: "v23.0" }),
    logger: capturingLogger([], "silent"),
    extraRoutes: webhookRoutes,
    port: 0,
  });
  await gateway.start();
  rig.defer(() => gateway.stop());
  const { sim, redis } = rig;
  sim.groupEvents.setTarget({ url: `${gateway.server()!.url}/webhooks/whatsapp`, appSecret: APP_SECRET });
  rig.defer(async () => sim.groupEvents.setTarget(undefined));
  const app = await rig.rotator(prefix, { yaml });
  return { prefix, channel, latest: channelKeys(channel).latest, sim, app, redis };
}

async function until<T>(read: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`condition not met in time (last: ${JSON.stringify(value)})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("simulator → gateway → worker", () => {
  it("rotates a group once after its third join through the current link (trigger joins)", async ({
    rig,
  }) => {
    const { latest, sim, app, redis } = await setUp(rig);
    // A first link, as a rotation publishes it.
    await enqueueRotations(app.queue, [
      {
        rotationId: manualRotationId(),
        groupId: G,
        account: "default",
        policy: null,
        channel: latest.replace(/:latest$/, ""),
        trigger: "manual",
        requestedAt: Date.now(),
      },
    ]);
    const first = await until(
      async () => redis.hget(latest, G),
      (v) => v !== null,
    );
    const link = JSON.parse(first!).invite_link as string;
    expect(sim.group(G)?.link).toBe(link);

    for (const wa_id of ["1001", "1002"]) {
      expect((await sim.groupEvents.join(G, link, { wa_id })).status).toBe(200);
    }
    await until(
      async () => redis.hget(app.keys.groupParticipants, G),
      (v) => v === "2",
    );
    expect(JSON.parse((await redis.hget(latest, G))!).invite_link).toBe(link);

    expect((await sim.groupEvents.join(G, link, { user_id: "US.1003" })).status).toBe(200);
    const rotated = await until(
      async () => JSON.parse((await redis.hget(latest, G))!) as { trigger: string; invite_link: string },
      (m) => m.trigger === "joins",
    );
    expect(rotated.invite_link).not.toBe(link);
    expect(sim.group(G)?.link).toBe(rotated.invite_link);
    // The old link admits nobody any more; the new one starts counting from 0.
    await expect(sim.groupEvents.join(G, link, { wa_id: "1004" })).rejects.toThrow(/no longer admits/);
    await sim.groupEvents.join(G, rotated.invite_link, { wa_id: "1005" });
    await until(
      async () => redis.hget(app.keys.groupParticipants, G),
      (v) => v === "4",
    );
    expect(await redis.hget(app.keys.group(G), "joins")).toBe("1");
    const posts = sim.calls.filter((c) => c.groupId === G && c.method === "POST");
    expect(posts).toHaveLength(2);
  });

  it("a suspension the simulator announces stops the group's rotations", async ({ rig }) => {
    const { sim, app, redis } = await setUp(rig);
    expect(
      await sim.groupEvents.join(G, "https://chat.whatsapp.com/none", { wa_id: "1" }).catch((e) => e),
    ).toBeInstanceOf(Error);
    sim.addGroup({ id: G });
    expect((await sim.groupEvents.suspend(G)).status).toBe(200);
    await until(
      async () => redis.sismember(app.keys.suspendedIndex, G),
      (v) => v === 1,
    );
  });
});
