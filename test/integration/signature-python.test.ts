import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Redis } from "ioredis";
import { afterEach, beforeEach, expect, it } from "vitest";
import { channelKeys, createKeys } from "../../src/core/keys.js";
import { signMessage, verifySignature } from "../../src/publish/message.js";
import { createPublisher } from "../../src/publish/publisher.js";
import { deleteKeys, testRedis, uniquePrefix } from "../helpers/redis.js";

// An independent implementation of the README's v2 recipe, in Python. python3 is part of the
// machine (and CI installs it if missing); without it this test fails, it never skips.
const VERIFIER = fileURLToPath(new URL("../helpers/verify-signature.py", import.meta.url));
const SECRET = "python-check-secret-\u00e9";

let redis: Redis;
let prefix: string;
let channel: string;

beforeEach(() => {
  redis = testRedis();
  prefix = uniquePrefix("sig-python");
  channel = `${uniquePrefix("sig-python-channel")}:links`;
});

afterEach(async () => {
  await deleteKeys(redis, prefix, channel);
  await redis.quit();
});

function python(lines: { raw: string; channel: string }[], sign = false): string[] {
  const run = spawnSync("python3", [VERIFIER, ...(sign ? ["--sign"] : [])], {
    input: lines.map((line) => JSON.stringify(line)).join("\n"),
    env: { ...process.env, ROTATOR_SIGNING_SECRET: SECRET },
    encoding: "utf8",
    timeout: 30_000,
  });
  if (run.error) throw new Error(`python3 could not run (${run.error.message}); install python3`);
  expect(run.stderr).toBe("");
  expect(run.status).toBe(0);
  return run.stdout.trim().split("\n");
}

it("a Python subscriber following the README verifies what the publisher signs, and rejects re-split or moved messages", async () => {
  const publisher = createPublisher({ redis, keys: createKeys(prefix), signingSecret: SECRET });
  const groups = ["team.sales", "120363025246125486", "Y2FwaV9ncm91cDox", 'a"b\\c', "x.y.z"];
  for (const [i, groupId] of groups.entries()) {
    await publisher.publish({
      rotationId: `rot.${i}`,
      groupId,
      inviteLink: `https://chat.whatsapp.com/Link${i}abcdefgh`,
      createdAt: Date.UTC(2026, 0, 1, 0, 0, i),
      policy: i === 0 ? null : "nächtlich-\u2028",
      account: "default",
      trigger: i === 0 ? "manual" : "schedule",
      channel,
    });
  }
  const raws = (await redis.xrange(channelKeys(channel).stream, "-", "+")).map(([, f]) => f[1]!);
  expect(raws).toHaveLength(groups.length);

  const resplit = raws.map((raw) => {
    const m = JSON.parse(raw) as Record<string, unknown>;
    // The v1 attack: move a dot from the group id into the rotation id.
    const group = String(m.group_id);
    return group.includes(".")
      ? JSON.stringify({
          ...m,
          rotation_id: `${String(m.rotation_id)}.${group.split(".")[0]}`,
          group_id: group.slice(group.indexOf(".") + 1),
        })
      : JSON.stringify({ ...m, account: "other" });
  });
  const verdicts = python([
    ...raws.map((raw) => ({ raw, channel })),
    ...raws.map((raw) => ({ raw, channel: `${channel}:other` })),
    ...resplit.map((raw) => ({ raw, channel })),
  ]);
  expect(verdicts).toEqual([...raws.map(() => "ok"), ...raws.map(() => "bad"), ...resplit.map(() => "bad")]);
});

it("Node verifies what Python signs, extra fields and non-ASCII text included", () => {
  const message = {
    event: "invite_link.rotated",
    schema: 1,
    rotation_id: "r-\u00fc-\u{1F600}",
    group_id: "G.1",
    invite_link: "https://chat.whatsapp.com/AbCdEfGh12345",
    rotated_at: "2026-01-02T03:04:05.678Z",
    sequence: 3,
    policy: "p",
    account: "default",
    trigger: "joins",
    added_later: { z: [1, "\u0007", null], a: "\u00e9\u2029" },
    "\uFFFD": 1,
    "\u{1F600}": 2,
  };
  const [fromPython] = python([{ raw: JSON.stringify(message), channel }], true);
  expect(fromPython).toMatch(/^v2=[0-9a-f]{64}$/);
  expect(fromPython).toBe(signMessage(message, SECRET, channel));
  expect(verifySignature({ ...message, signature: fromPython }, SECRET, { channel })).toBe(true);
});
