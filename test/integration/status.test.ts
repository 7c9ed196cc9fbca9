import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../src/cli.js";
import { parseConfigText } from "../../src/config/config.js";
import type { RotationMessage, Trigger } from "../../src/core/interfaces.js";
import { createKeys } from "../../src/core/keys.js";
import { createPublisher } from "../../src/publish/publisher.js";
import { createRotationStateStore } from "../../src/rotation/state.js";
import type { PoolStatus } from "../../src/groups/pools.js";
import { listGroupIds, maskLink, readGroupStatuses, type GroupStatus } from "../../src/ops/status.js";
import { deleteKeys, testRedis, testRedisUrl, uniquePrefix } from "../helpers/redis.js";
import { fakeIO } from "../helpers/command-io.js";

const TOKEN = "status-secret-token-42";
const prefix = uniquePrefix("status");
const channel = `${prefix}-links`;
const keys = createKeys(prefix);
const POLICY_FILE = [
  "accounts:",
  "  default: { token_env: WHATSAPP_ACCESS_TOKEN }",
  "  partners: { token_env: PARTNERS_TOKEN }",
  "policies:",
  "  - name: nightly",
  '    schedule: "0 3 * * *"',
  `    channel: "${channel}"`,
  '    groups: ["G-OK", "G-FAILED", "G-NOLINK", "G-PENDING", "G-NEVER"]',
  "  - name: partners-hourly",
  "    account: partners",
  '    schedule: "0 * * * *"',
  `    channel: "${channel}"`,
  '    groups: ["P-1"]',
  "links:",
  "  - slug: front-door",
  '    groups: ["G-OK", "G-FAILED", "G-NOLINK", "G-PENDING", "G-NEVER"]',
  "    capacity: 3",
].join("\n");

let redis: Redis;
let dir = "";
const links = new Map<string, string>();

async function status(args: string[], env: Record<string, string> = {}) {
  const io = fakeIO({
    REDIS_URL: testRedisUrl(),
    ROTATOR_PREFIX: prefix,
    ROTATOR_CONFIG: join(dir, "rotation.yaml"),
    WHATSAPP_ACCESS_TOKEN: TOKEN,
    ...env,
  });
  const code = await main(["status", ...args], io);
  return { code, stdout: io.stdout.join("\n"), stderr: io.stderr.join("\n") };
}

beforeAll(async () => {
  redis = testRedis();
  dir = await mkdtemp(join(tmpdir(), "rotator-status-"));
  await writeFile(join(dir, "rotation.yaml"), POLICY_FILE);
  const publisher = createPublisher({ redis, keys, signingSecret: "status-signing-secret" });
  const state = createRotationStateStore(redis, keys);
  let n = 0;
  const publish = async (groupId: string, trigger: Trigger, policy: string | null, account = "default") => {
    n++;
    const inviteLink = `https://chat.whatsapp.com/Lk${n}${groupId.replace(/\W/g, "")}ZzSecretCode${n}`;
    const message: RotationMessage = await publisher.publish({
      rotationId: `r-${groupId}-${n}`,
      groupId,
      inviteLink,
      createdAt: Date.UTC(2026, 0, 2, 3, 0, n),
      policy,
      account,
      trigger,
      channel,
    });
    links.set(groupId, inviteLink);
    return message;
  };
  await publish("G-OK", "schedule", "nightly");
  await publish("G-OK", "manual", null);
  await publish("G-OK", "catch-up", "nightly");
  await publish("G-FAILED", "schedule", "nightly");
  await state.markFailed("G-FAILED", {
    rotationId: "r-failed",
    code: "GRAPH_AUTH",
    message: `token rejected (${TOKEN} must never show)`,
    at: Date.UTC(2026, 0, 3, 3, 0, 0),
  });
  await publish("G-NOLINK", "schedule", "nightly");
  await state.markDeleted("r-nolink", "G-NOLINK", Date.UTC(2026, 0, 4, 3, 0, 0));
  await publish("G-PENDING", "schedule", "nightly");
  await redis.hset(keys.group("G-PENDING"), "pending_rotation", "s-abc", "pending_since", "1767495600000");
  await publish("P-1", "schedule", "partners-hourly", "partners");
  await redis.hset(keys.account("partners"), {
    failing_code: "GRAPH_AUTH",
    failing_message: "token expired",
    failing_since: String(Date.UTC(2026, 0, 5, 3, 0, 0)),
    // The gate's mirror of the number's rate and of the limit it learned from 131208 answers.
    rate: "8.2077",
    learned_limit: "10.2596",
  });
  await publish("MANUAL-ONLY", "manual", null);
  // A pause long over: shown only to a reader whose "now" is before it.
  await redis.hset(keys.account("default"), "paused_until", String(Date.UTC(2026, 0, 6)));
});

afterAll(async () => {
  await deleteKeys(redis, prefix, channel);
  await redis.quit();
  await rm(dir, { recursive: true, force: true });
});

function nextUtc(hour: number | undefined): string {
  const now = Date.now();
  const d = new Date(now);
  d.setUTCMinutes(0, 0, 0);
  if (hour !== undefined) d.setUTCHours(hour);
  while (d.getTime() <= now) d.setTime(d.getTime() + (hour === undefined ? 3_600_000 : 86_400_000));
  return d.toISOString();
}

describe("status --json", () => {
  it("reports every policy group, then groups rotated outside policies, with masked links", async () => {
    const { code, stdout, stderr } = await status(["--json"]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    for (const link of links.values()) expect(stdout).not.toContain(link);
    expect(stdout).not.toContain(TOKEN);

    const doc = JSON.parse(stdout) as { generated_at: string; groups: GroupStatus[]; summary: unknown };
    expect(Date.parse(doc.generated_at)).toBeGreaterThan(Date.now() - 60_000);
    const ids = doc.groups.map((g) => g.group_id);
    expect(ids).toEqual(["G-OK", "G-FAILED", "G-NOLINK", "G-PENDING", "G-NEVER", "P-1", "MANUAL-ONLY"]);
    const byId = new Map(doc.groups.map((g) => [g.group_id, g]));

    const ok = byId.get("G-OK")!;
    expect(ok).toMatchObject({
      policy: "nightly",
      account: "default",
      channel,
      sequence: 3,
      trigger: "catch-up",
      last_rotation_id: "r-G-OK-3",
      last_rotated_at: "2026-01-02T03:00:03.000Z",
      next_due_at: nextUtc(3),
      state: "ok",
      failure: null,
      without_link_since: null,
    });
    expect(ok.link).toBe(`https://chat.whatsapp.com/${links.get("G-OK")!.slice(26, 30)}…`);

    expect(byId.get("G-FAILED")).toMatchObject({
      state: "failing",
      failure: { code: "GRAPH_AUTH", at: "2026-01-03T03:00:00.000Z", rotation_id: "r-failed" },
    });
    expect(byId.get("G-FAILED")!.failure!.message).toContain("[redacted]");
    // Its published link was deleted: no link to show, masked or not; the rotation history stays.
    expect(byId.get("G-NOLINK")).toMatchObject({
      state: "no-link",
      without_link_since: "2026-01-04T03:00:00.000Z",
      link: null,
      sequence: 1,
      trigger: "schedule",
    });
    expect(byId.get("G-PENDING")).toMatchObject({
      state: "pending",
      pending_rotation: "s-abc",
      pending_since: "2026-01-04T03:00:00.000Z",
    });
    expect(byId.get("G-NEVER")).toMatchObject({
      state: "never-rotated",
      sequence: null,
      link: null,
      last_rotated_at: null,
      next_due_at: nextUtc(3),
    });
    expect(byId.get("P-1")).toMatchObject({
      account: "partners",
      state: "failing",
      account_failure: { code: "GRAPH_AUTH", message: "token expired", since: "2026-01-05T03:00:00.000Z" },
      next_due_at: nextUtc(undefined),
      account_rate: 8.2,
      account_learned_limit: 10.3,
    });
    // Not learned yet: null, not 0.
    expect(byId.get("G-OK")).toMatchObject({ account_rate: null, account_learned_limit: null });
    expect(byId.get("MANUAL-ONLY")).toMatchObject({
      policy: null,
      account: "default",
      trigger: "manual",
      sequence: 1,
      next_due_at: null,
      state: "ok",
    });
    expect(doc.summary).toEqual({
      groups: 7,
      without_link: 1,
      failing: 2,
      pending: 1,
      suspended: 0,
      deleted: 0,
    });
  });
});

describe("status --check", () => {
  it("exits 3 when a group has no link or is failing, table or JSON alike; the output is the same", async () => {
    const plain = await status(["--json"]);
    const checked = await status(["--json", "--check"]);
    expect(checked.code).toBe(3);
    expect(JSON.parse(checked.stdout).summary).toEqual(JSON.parse(plain.stdout).summary);
    expect((await status(["--check"])).code).toBe(3);
  });

  it("exits 0 when no group needs attention (never rotated is not a failure)", async () => {
    const fresh = uniquePrefix("status-check");
    const { code, stdout } = await status(["--check"], { ROTATOR_PREFIX: fresh });
    expect(stdout).toMatch(/G-NEVER .* never rotated/);
    expect(code).toBe(0);
  });

  it("exits 3 when WhatsApp suspended or deleted a group, and counts them in the summary", async () => {
    const fresh = uniquePrefix("status-check");
    const freshKeys = createKeys(fresh);
    try {
      await redis.hset(freshKeys.group("G-OK"), "suspended_at", String(Date.UTC(2026, 0, 7)));
      await redis.hset(freshKeys.group("G-NEVER"), "deleted_at", String(Date.UTC(2026, 0, 8)));
      const table = await status(["--check"], { ROTATOR_PREFIX: fresh });
      expect(table.code).toBe(3);
      expect(table.stdout.split("\n")).toContain(
        "6 groups, 0 without link, 0 failing, 0 pending, 1 suspended, 1 deleted by WhatsApp",
      );
      const json = await status(["--json", "--check"], { ROTATOR_PREFIX: fresh });
      expect(json.code).toBe(3);
      expect(JSON.parse(json.stdout).summary).toMatchObject({ suspended: 1, deleted: 1 });
    } finally {
      await deleteKeys(redis, fresh);
    }
  });
});

describe("status (table)", () => {
  it("prints an aligned table with the reasons and a summary line", async () => {
    const { code, stdout } = await status([]);
    expect(code).toBe(0);
    for (const link of links.values()) expect(stdout).not.toContain(link);
    expect(stdout).not.toContain(TOKEN);

    const lines = stdout.split("\n");
    expect(lines[0]).toMatch(
      /^GROUP\s+POLICY\s+ACCOUNT\s+LAST ROTATED\s+SEQ\s+TRIGGER\s+LINK\s+NEXT DUE\s+STATUS$/,
    );
    expect(lines).toHaveLength(1 + 7 + 1 + 1);
    // Every column starts at the same offset on every row.
    const linkAt = lines[0]!.indexOf("LINK");
    for (const line of lines.slice(1, 8))
      expect(line.slice(linkAt)).toMatch(/^(https:\/\/chat\.whatsapp\.com\/\S{4}…|-) /);

    const row = (id: string) => lines.find((l) => l.startsWith(`${id} `))!;
    expect(row("G-OK")).toMatch(/nightly\s+default\s+2026-01-02 03:00:03Z\s+3\s+catch-up\s+https:\/\/chat/);
    expect(row("G-OK")).toContain(`${nextUtc(3).slice(0, 10)} 03:00:00Z`);
    expect(row("G-OK")).toMatch(/\s+ok$/);
    expect(row("G-FAILED")).toMatch(/failed GRAPH_AUTH: token rejected \(\[redacted\] must never show\)$/);
    expect(row("G-NOLINK")).toMatch(/NO LINK since 2026-01-04 03:00:00Z$/);
    expect(row("G-NOLINK").slice(linkAt)).toMatch(/^- /);
    expect(row("G-PENDING")).toMatch(/rotation pending since 2026-01-04 03:00:00Z$/);
    expect(row("G-NEVER")).toMatch(/never rotated$/);
    expect(row("P-1")).toMatch(
      /account partners failing since 2026-01-05 03:00:00Z GRAPH_AUTH: token expired; number rate 8.2\/s \(limit learned 10.3\/s\)$/,
    );
    expect(row("MANUAL-ONLY")).toMatch(
      /^MANUAL-ONLY\s+-\s+default\s+2026-01-02 03:00:\d\dZ\s+1\s+manual\s+\S+\s+-\s+ok$/,
    );
    expect(lines[8]).toBe("7 groups, 1 without link, 2 failing, 1 pending");
  });

  it("exits 1 with a clear message, not a hang, when Redis cannot be reached", async () => {
    const started = Date.now();
    const { code, stdout, stderr } = await status(["--json"], {
      REDIS_URL: "redis://:pw-hidden@127.0.0.1:1",
    });
    expect(code).toBe(1);
    expect(stderr).toMatch(/cannot reach Redis at redis:\/\/\[redacted\]@127\.0\.0\.1:1/);
    expect(stderr).not.toContain("pw-hidden");
    expect(stdout).toBe("");
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("rejects unknown options with exit 2", async () => {
    const { code, stderr } = await status(["--yaml"]);
    expect(code).toBe(2);
    expect(stderr).toContain("usage: wa-invite-rotator status [--json] [--check]");
  });
});

describe("status data", () => {
  it("reads groups in batches, one pipeline each, in order", async () => {
    const config = parseConfigText(
      POLICY_FILE,
      "rotation.yaml",
      { WHATSAPP_ACCESS_TOKEN: TOKEN },
      {
        graphApiVersion: "v23.0",
      },
    );
    const ids = await listGroupIds(redis, keys, config);
    const batches: string[][] = [];
    for await (const batch of readGroupStatuses(
      { redis, keys, config, now: Date.now(), batchSize: 3 },
      ids,
    )) {
      batches.push(batch.map((g) => g.group_id));
    }
    expect(batches).toEqual([
      ["G-OK", "G-FAILED", "G-NOLINK"],
      ["G-PENDING", "G-NEVER", "P-1"],
      ["MANUAL-ONLY"],
    ]);
  });

  it("shows an account pause only while it lasts", async () => {
    const config = parseConfigText(
      POLICY_FILE,
      "rotation.yaml",
      { WHATSAPP_ACCESS_TOKEN: TOKEN },
      { graphApiVersion: "v23.0" },
    );
    const pausedAt = async (now: number) => {
      for await (const batch of readGroupStatuses({ redis, keys, config, now }, ["G-OK"])) {
        return batch[0]!.account_paused_until;
      }
    };
    expect(await pausedAt(Date.UTC(2026, 0, 5))).toBe("2026-01-06T00:00:00.000Z");
    expect(await pausedAt(Date.UTC(2026, 0, 7))).toBeNull();
  });

  it("masks links to at most four characters of the code, never more than half", () => {
    expect(maskLink("https://chat.whatsapp.com/AbCdEfGhIjKlMnOpQrStUv")).toBe(
      "https://chat.whatsapp.com/AbCd…",
    );
    expect(maskLink("https://chat.whatsapp.com/AbCdEf")).toBe("https://chat.whatsapp.com/AbC…");
    expect(maskLink("https://chat.whatsapp.com/A")).toBe("https://chat.whatsapp.com/…");
    expect(maskLink("not-a-link-at-all")).toBe("not-…");
  });
});

describe("status: join links", () => {
  it("shows each link's pool and room, in the table and in --json, without a whole link", async () => {
    const table = await status([]);
    expect(table.stdout.split("\n").at(-1)).toBe(
      "link front-door: 3 of 5 groups with room " +
        "(G-OK 0/3, G-FAILED 0/3, G-NOLINK rotating, G-PENDING 0/3, G-NEVER no-link)",
    );

    // Another prefix over the same channel: G-OK full by its count, G-PENDING's rotation under way.
    const fresh = uniquePrefix("status-pools");
    const freshKeys = createKeys(fresh);
    await redis.hset(freshKeys.groupParticipants, { "G-OK": "3", "G-FAILED": "2" });
    await redis.set(freshKeys.groupLock("G-PENDING"), "worker-x", "PX", 60_000);
    try {
      const { stdout } = await status(["--json"], { ROTATOR_PREFIX: fresh });
      for (const link of links.values()) expect(stdout).not.toContain(link);
      const doc = JSON.parse(stdout) as { links: PoolStatus[] };
      expect(doc.links).toEqual([
        {
          slug: "front-door",
          capacity: 3,
          signed: false,
          groups: [
            { group_id: "G-OK", state: "full", participants: 3 },
            { group_id: "G-FAILED", state: "room", participants: 2 },
            { group_id: "G-NOLINK", state: "room", participants: 0 },
            { group_id: "G-PENDING", state: "rotating", participants: 0 },
            { group_id: "G-NEVER", state: "no-link", participants: 0 },
          ],
          counts: { room: 2, full: 1, rotating: 1, "no-link": 1 },
        },
      ]);
    } finally {
      await deleteKeys(redis, fresh);
    }
  });
});
