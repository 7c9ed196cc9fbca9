import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKeys } from "../../src/core/keys.js";
import { printable } from "../../src/core/printable.js";
import { createRotationStateStore } from "../../src/rotation/state.js";
import { runCli } from "../helpers/cli.js";
import { deleteKeys, testRedis, testRedisUrl, uniquePrefix } from "../helpers/redis.js";

/**
 * Text the CLI did not make (links and failure reasons from Redis, written by an older version or
 * a hostile Graph) reaches the terminal with its control and bidi characters escaped.
 */
const prefix = uniquePrefix("printers");
const keys = createKeys(prefix);
const HOSTILE = "a\u001b[2J\u001b]0;pwned\u0007b\u202eevil\u0000\u0085\u2066x";
// Raw bytes a terminal would act on: C0 (but newline), DEL, C1, bidi and invisible format characters.
// eslint-disable-next-line no-control-regex
const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/;

let redis: Redis;
let dir = "";
let env: Record<string, string>;

beforeAll(async () => {
  redis = testRedis();
  dir = await mkdtemp(join(tmpdir(), "rotator-printers-"));
  const file = join(dir, "rotation.yaml");
  await writeFile(file, 'policies:\n  - name: p\n    schedule: "0 3 * * *"\n    groups: ["G-HOSTILE"]\n');
  env = { REDIS_URL: testRedisUrl(), ROTATOR_PREFIX: prefix, ROTATOR_CONFIG: file };
  // As a version before the invite-link rule could have published it.
  await redis.hset(keys.group("G-HOSTILE"), {
    sequence: "1",
    last_sequence: "1",
    last_rotated_at: "2026-01-02T03:00:00.000Z",
    last_trigger: "schedule",
    last_message: JSON.stringify({ invite_link: `\u001b[31m${HOSTILE}` }),
  });
  await createRotationStateStore(redis, keys).markFailed("G-HOSTILE", {
    rotationId: "r-1",
    code: "GRAPH_BAD_RESPONSE",
    message: `Graph said ${HOSTILE}`,
    at: Date.UTC(2026, 0, 3),
  });
});

afterAll(async () => {
  await deleteKeys(redis, prefix);
  await redis.quit();
  await rm(dir, { recursive: true, force: true });
});

describe("printers", () => {
  it("escape what they did not make: status prints no raw control or bidi character", async () => {
    const { code, stdout, stderr } = await runCli(["status"], env);
    expect(code).toBe(0);
    expect(stdout).toContain("G-HOSTILE");
    expect(stdout).toContain(printable(HOSTILE));
    expect(stdout).not.toMatch(RAW);
    expect(stderr).not.toMatch(RAW);
  });

  it("status --json stays the same JSON: the escapes decode to the very characters stored", async () => {
    const { code, stdout } = await runCli(["status", "--json"], env);
    expect(code).toBe(0);
    expect(stdout).not.toMatch(RAW);
    const doc = JSON.parse(stdout) as { groups: { group_id: string; failure: { message: string } }[] };
    expect(doc.groups.find((g) => g.group_id === "G-HOSTILE")?.failure.message).toBe(`Graph said ${HOSTILE}`);
  });

  it("an error message carrying them (a bad group id) reaches stderr escaped", async () => {
    const { code, stderr } = await runCli(["rotate", `x\u202e\u001b[2Jy`], env);
    expect(code).toBe(2);
    expect(stderr).not.toMatch(RAW);
    expect(stderr).toContain("printable ASCII");
  });
});
