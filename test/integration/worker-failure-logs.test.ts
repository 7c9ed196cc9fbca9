import { describe, expect } from "vitest";
import { createAccountGate } from "../../src/accounts/gate.js";
import { createAccountProbe } from "../../src/accounts/probe.js";
import { createLogger } from "../../src/infra/logger.js";
import type { RotationMessage } from "../../src/core/interfaces.js";
import { simTest, type Rig } from "../helpers/fixture.js";
import {
  policyYaml,
  TEST_TOKEN,
  type LogLine,
  type TestWorkerOptions,
  messageOf,
} from "../helpers/rotator.js";

/** What the worker's failure lines carry, and the loud line of a link Graph created but nobody got. */
const it = simTest({ tokens: { [TEST_TOKEN]: { phoneNumberId: "15550001" } } });

async function start(rig: Rig, groups: string[], options: TestWorkerOptions["publisher"] = undefined) {
  const { prefix, channel } = rig.prefix("failure-logs");
  const tw = await rig.worker(prefix, {
    yaml: policyYaml(groups, channel),
    ...(options ? { publisher: options } : {}),
  });
  const tq = await rig.queue(prefix, 20);
  return { tw, tq, channel, sim: rig.sim, redis: rig.redis };
}

const line = (logs: LogLine[], pattern: RegExp) => logs.find((l) => pattern.test(l.msg));

describe("failure log lines", () => {
  it("call a group whose last DELETE had no clear answer GROUP WITHOUT INVITE LINK when its rotation fails", async ({
    rig,
  }) => {
    const { tw, tq, channel, sim, redis } = await start(rig, ["L9"]);
    // Every DELETE is cut off: Graph may have carried any of them out, so the group may have no link.
    sim.inject({ match: { groupId: "L9", method: "DELETE" }, kind: "reset", times: Infinity });
    const [job] = await tq.rotate([{ groupId: "L9", account: "default" }], channel);
    await expect(job!.waitUntilFinished(tq.events, 15_000)).rejects.toThrow();
    const loud = line(tw.logs, /^GROUP WITHOUT INVITE LINK/);
    expect(loud).toMatchObject({ level: "error", group: "L9", withoutLink: true });
    expect(await redis.smembers(tw.keys.withoutLinkIndex)).toContain("L9");
  });

  it("carry Graph's fbtrace_id, code, subcode and HTTP status, on a retry and on the final failure", async ({
    rig,
  }) => {
    const { tw, tq, channel, sim } = await start(rig, ["L1", "L2"]);
    sim.inject({
      match: { groupId: "L1", method: "POST" },
      kind: "error",
      status: 503,
      code: 2,
      subcode: 99,
    });
    sim.inject({ match: { groupId: "L2" }, kind: "error", status: 400, code: 131041, times: Infinity });
    const [retried, failed] = await tq.rotate(
      ["L1", "L2"].map((groupId) => ({ groupId, account: "default" })),
      channel,
    );
    await retried!.waitUntilFinished(tq.events, 10_000);
    await expect(failed!.waitUntilFinished(tq.events, 10_000)).rejects.toThrow(/L2/);

    const retry = line(tw.logs, /will retry/);
    expect(retry).toMatchObject({ group: "L1", httpStatus: 503, graphCode: 2, graphSubcode: 99 });
    expect(retry?.fbtraceId).toEqual(expect.any(String));
    const final = line(tw.logs, /^rotation failed/);
    expect(final).toMatchObject({ level: "error", group: "L2", httpStatus: 400, graphCode: 131041 });
    expect(final?.fbtraceId).toEqual(expect.any(String));
    expect(JSON.stringify(tw.logs)).not.toContain(TEST_TOKEN);
  });

  it("a link created but never published is logged loudly and re-driven until it is published", async ({
    rig,
  }) => {
    let failures = Infinity;
    const { tw, tq, channel, sim, redis } = await start(rig, ["U1"], (real) => ({
      async publish(input): Promise<RotationMessage> {
        if (failures-- > 0) throw new Error("redis unavailable");
        return real.publish(input);
      },
    }));
    const [job] = await tq.rotate([{ groupId: "U1", account: "default" }], channel);
    await expect(job!.waitUntilFinished(tq.events, 10_000)).rejects.toThrow(/redis unavailable/);
    const loud = line(tw.logs, /UNPUBLISHED INVITE LINK/);
    expect(loud).toMatchObject({ level: "error", group: "U1", withoutLink: true, unpublished: true });
    expect(await redis.smembers(tw.keys.withoutLinkIndex)).toEqual(["U1"]);

    // The sweep re-drives it; the retry publishes the link Graph holds, without a second POST.
    failures = 0;
    const probe = createAccountProbe({
      redis,
      keys: tw.keys,
      queue: tq.queue,
      graph: { getGroup: async () => ({ id: "U1" }) },
      gate: createAccountGate({ redis, keys: tw.keys, logger: createLogger("silent") }),
      config: () => tw.config.current,
      logger: createLogger("silent"),
      intervalMs: 50,
    });
    await new Promise((r) => setTimeout(r, 60));
    await probe.tick();
    const message = await messageOf(redis, await job!.waitUntilFinished(tq.events, 10_000));
    expect(message.invite_link).toBe(sim.group("U1")?.link);
    expect(sim.calls.filter((c) => c.groupId === "U1").map((c) => c.method)).toEqual(["DELETE", "POST"]);
    expect(await redis.smembers(tw.keys.withoutLinkIndex)).toEqual([]);
  });
});
