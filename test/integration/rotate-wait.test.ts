import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect } from "vitest";
import rotate from "../../src/commands/rotate.js";
import type { CommandIO } from "../../src/commands/command.js";
import { parseMessage } from "../../src/publish/message.js";
import { simTest, type Rig } from "../helpers/fixture.js";
import { testRedisUrl } from "../helpers/redis.js";
import { policyYaml, TEST_TOKEN } from "../helpers/rotator.js";

const it = simTest();

function setup(rig: Rig, name: string) {
  const { prefix, channel } = rig.prefix(name);
  const dir = mkdtempSync(join(tmpdir(), "wa-rotator-rotate-wait-"));
  rig.defer(async () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, policyYaml(["W1", "W2", "W3"], channel));
  const lines: { out: string[]; err: string[]; progress: string[] } = { out: [], err: [], progress: [] };
  const io: CommandIO = {
    env: {
      REDIS_URL: testRedisUrl(),
      ROTATOR_PREFIX: prefix,
      ROTATOR_CONFIG: file,
      WHATSAPP_ACCESS_TOKEN: TEST_TOKEN,
    },
    out: (line) => void lines.out.push(line),
    err: (line) => void lines.err.push(line),
    progress: (line) => void lines.progress.push(line),
  };
  return { prefix, channel, file, io, lines };
}

describe("rotate --wait", () => {
  it("says at once that no worker consumes the queue, then waits out its timeout", async ({ rig }) => {
    const { io, lines } = setup(rig, "no-worker");
    const code = await rotate.run(["W1", "--wait", "--timeout", "1s"], io);
    expect(code).toBe(1);
    expect(lines.err[0]).toMatch(
      /^warning: no worker is consuming the rotations queue \(prefix test-no-worker-/,
    );
    expect(lines.err[0]).toContain("waiting up to 1s");
    expect(lines.err[1]).toContain("not done within 1s");
    expect(lines.progress).toEqual(["0/1 rotated", "0/1 rotated, 1 failed", ""]);
  });

  it("with a worker: no warning, progress as rotations finish, each whole message on stdout", async ({
    rig,
  }) => {
    const { prefix, channel, io, lines } = setup(rig, "worker");
    const { redis } = rig;
    await rig.rotator(prefix, {
      yaml: policyYaml(["W1", "W2", "W3"], channel),
      env: { ROTATOR_SIGNING_SECRET: "rotate-wait-signing-secret" },
    });
    const code = await rotate.run(["W1", "W2", "W3", "--wait"], io);
    expect(lines.err).toEqual([]);
    expect(code).toBe(0);
    expect(lines.progress[0]).toBe("0/3 rotated");
    expect(lines.progress.slice(-2)).toEqual(["3/3 rotated", ""]);
    expect(lines.out).toHaveLength(3);
    const messages = lines.out.map((line) => parseMessage(line));
    expect(messages.map((m) => m.group_id).sort()).toEqual(["W1", "W2", "W3"]);
    for (const message of messages) {
      expect(message.signature).toMatch(/^v2=/);
      expect(message.invite_link).toMatch(/^https:\/\/chat\.whatsapp\.com\/[A-Za-z0-9_-]{10,}$/);
      expect(await redis.hget(`${channel}:latest`, message.group_id)).toBe(
        lines.out.find((l) => l.includes(`"group_id":"${message.group_id}"`)),
      );
    }

    // What BullMQ keeps for a day (and a dashboard shows): no whole link, no signature.
    const { queue } = await rig.queue(prefix);
    for (const message of messages) {
      const job = await queue.getJob(message.rotation_id);
      const kept = JSON.stringify(job!.returnvalue);
      expect(kept).not.toContain(message.invite_link);
      expect(kept).not.toContain("signature");
      expect(job!.returnvalue).toEqual({
        outcome: "published",
        rotation_id: message.rotation_id,
        group_id: message.group_id,
        channel,
        published_rotation_id: message.rotation_id,
        sequence: message.sequence,
        rotated_at: message.rotated_at,
        link: `https://chat.whatsapp.com/${message.invite_link.slice(26, 30)}…`,
      });
    }
  });
});
