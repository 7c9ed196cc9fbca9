import { describe, expect } from "vitest";
import { tokenFingerprint } from "../../src/accounts/gate.js";
import { parseConfigText, resolveAccount } from "../../src/config/config.js";
import { createFirer } from "../../src/schedule/fire.js";
import { createLogger } from "../../src/infra/logger.js";
import { enqueueRotations } from "../../src/rotation/queue.js";
import { scheduledRotation } from "../helpers/rotator.js";
import { simTest } from "../helpers/fixture.js";

const it = simTest();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const yaml = (account: string, channel: string) =>
  [
    "accounts:",
    "  a:",
    "    token_env: TOKEN_A",
    "  b:",
    "    token_env: TOKEN_B",
    "policies:",
    "  - name: test",
    `    account: ${account}`,
    '    schedule: "0 3 * * *"',
    `    channel: "${channel}"`,
    '    groups: ["RE1"]',
  ].join("\n");

describe("a rotation held while its account fails", () => {
  it("ends, and frees its group, once the policy moves to another account", async ({ rig }) => {
    const { redis } = rig;
    const { prefix, channel } = rig.prefix("held-moved");
    const env = { TOKEN_A: "token-a-0123456789", TOKEN_B: "token-b-0123456789" };
    const tw = await rig.worker(prefix, { yaml: yaml("a", channel), env });
    const tq = await rig.queue(prefix);
    // Account a's token was revoked (as gate.failed leaves it).
    await redis.hset(tw.keys.account("a"), {
      failing_code: "GRAPH_AUTH",
      failing_message: "token revoked",
      failing_since: String(Date.now()),
      token_fingerprint: tokenFingerprint(env.TOKEN_A),
      probe_group: "RE1",
    });
    const fireAt = Date.now();
    const data = scheduledRotation("RE1", channel, { account: "a", fireAt });
    await redis.hset(tw.keys.group("RE1"), {
      pending_rotation: data.rotationId,
      pending_since: String(fireAt),
    });
    await enqueueRotations(tq.queue, [data]);
    await sleep(300);
    expect(tw.attempts.some((a) => a.code === "E_ACCOUNT_FAILING")).toBe(true);
    // Re-checks keep the hold's start: status says since when the rotation has been held.
    const heldSince = await redis.hget(tw.keys.group("RE1"), "failed_at");
    expect(heldSince).not.toBeNull();
    const holds = () => tw.attempts.filter((a) => a.code === "E_ACCOUNT_FAILING").length;
    const seen = holds();
    await expect.poll(holds, { timeout: 3_000 }).toBeGreaterThan(seen);
    expect(await redis.hget(tw.keys.group("RE1"), "failed_at")).toBe(heldSince);

    // The operator moves the policy to account b (a new, working token) and reloads.
    tw.config.current = parseConfigText(yaml("b", channel), "test.yaml", env, { graphApiVersion: "v23.0" });
    await sleep(1_200); // more than two re-checks
    const job = await tq.queue.getJob(data.rotationId);
    expect(await job!.getState()).toBe("completed");
    expect(job!.returnvalue).toMatchObject({ skipped: "removed from policy" });
    // Its hold reason is gone with it: status no longer blames the old account.
    expect(await redis.hget(tw.keys.group("RE1"), "failure_code")).toBeNull();

    // The next fire of the policy: the group is busy behind the held rotation, at any age.
    const fire = createFirer({
      redis,
      keys: tw.keys,
      queue: tq.queue,
      graph: { listGroups: async () => [] },
      config: () => tw.config.current,
      resolveAccount: (name) => resolveAccount(tw.config.current, name),
      logger: createLogger("silent"),
      clock: { now: () => Date.now() + 2 * 86_400_000 },
      orphanGraceMs: 0,
    });
    const policy = tw.config.current.policies[0]!;
    const result = await fire(policy, fireAt + 86_400_000, "schedule");
    expect(result.skipped, "the group rotates with the policy's new account").toEqual([]);
  });
});
