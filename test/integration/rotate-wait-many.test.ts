import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import rotate from "../../src/commands/rotate.js";
import { parseMessage } from "../../src/publish/message.js";
import { simTest } from "../helpers/fixture.js";
import { testRedisUrl } from "../helpers/redis.js";
import { policyYaml, TEST_TOKEN } from "../helpers/rotator.js";

/** `rotate --wait` for many groups at once (more than 10): every message printed, nothing else on any stream. */
const it = simTest({ tokens: { [TEST_TOKEN]: { phoneNumberId: "15550009" } } });
const groups = Array.from({ length: 15 }, (_, i) => `RW${i + 1}`);

it("waits for more than 10 groups without a MaxListenersExceededWarning, one JSON line each", async ({
  rig,
}) => {
  const { sim } = rig;
  const { prefix, channel } = rig.prefix("rotate-wait");
  const dir = mkdtempSync(join(tmpdir(), "rotate-wait-"));
  rig.defer(async () => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "rotation.yaml"), policyYaml(groups, channel));
  await rig.rotator(prefix, { yaml: policyYaml(groups, channel), env: { ROTATOR_CONCURRENCY: "16" } });
  const out: string[] = [];
  const err: string[] = [];
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);
  process.on("warning", onWarning);
  let code: number;
  try {
    code = await rotate.run([...groups, "--wait", "--timeout", "30s"], {
      env: {
        REDIS_URL: testRedisUrl(),
        ROTATOR_PREFIX: prefix,
        ROTATOR_CONFIG: join(dir, "rotation.yaml"),
        WHATSAPP_ACCESS_TOKEN: TEST_TOKEN,
      },
      out: (line: string) => void out.push(line),
      err: (line: string) => void err.push(line),
    });
    await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
  } finally {
    process.off("warning", onWarning);
  }
  expect(warnings.map((w) => `${w.name}: ${w.message}`)).toEqual([]);
  expect(err).toEqual([]);
  expect(code).toBe(0);
  const messages = out.map((line) => parseMessage(line));
  expect(messages.map((m) => m.group_id).sort()).toEqual([...groups].sort());
  for (const m of messages) expect(m.invite_link).toBe(sim.group(m.group_id)?.link);
});
