import { pbkdf2 } from "node:crypto";
import { writeFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig, type ResolvedConfig } from "../../src/config/config.js";
import { createConfigReloader, type ConfigReloader } from "../../src/config/reload.js";
import { createLogger } from "../../src/infra/logger.js";
import { createMetrics } from "../../src/infra/metrics.js";
import { until } from "../helpers/until.js";

/** Reload of the policy file: validate first, apply a valid file at once, keep the old on a bad one. */
const policies = (schedule: string, groups: string) =>
  `policies:\n  - name: p\n    schedule: "${schedule}"\n    groups: [${groups}]\n`;

let reloader: ConfigReloader | undefined;
let dir: string | undefined;
afterEach(async () => {
  reloader?.stop();
  reloader = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

async function setup(options: { apply?: (next: ResolvedConfig) => void; watch?: boolean } = {}) {
  dir = await mkdtemp(join(tmpdir(), "rotator-reload-"));
  const file = join(dir, "rotation.yaml");
  await writeFile(file, policies("0 3 * * *", '"A"'));
  const load = () => loadConfig(file, {}, { graphApiVersion: "v23.0" });
  const holder = { current: await load() };
  const applied: ResolvedConfig[] = [];
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const metrics = createMetrics({ collectDefault: false });
  reloader = createConfigReloader({
    file,
    load,
    apply:
      options.apply ??
      ((next) => {
        holder.current = next;
        applied.push(next);
      }),
    onResult: (result) => metrics.countReload(result),
    logger: createLogger("info", stream),
    pollMs: 50,
    debounceMs: 50,
  });
  // Unwatched, only the test's own reload() calls reload.
  if (options.watch ?? true) reloader.start();
  return { file, holder, applied, lines, metrics };
}

const pbkdf2Slow = () =>
  new Promise<void>((resolve, reject) =>
    pbkdf2("p", "s", 300_000, 32, "sha256", (error) => (error ? reject(error) : resolve())),
  );

describe("config reload", () => {
  it("applies a changed valid file at once", async () => {
    const { file, holder, applied } = await setup();
    await writeFile(file, policies("*/5 * * * *", '"A", "B"'));
    await until(() => applied.length === 1);
    expect(holder.current.policies[0]).toMatchObject({ schedule: "*/5 * * * *", groups: ["A", "B"] });
  });

  it("notices a change made the moment watching starts (before the watcher's first look at the file)", async () => {
    const { file, applied, holder } = await setup({ watch: false });
    // A busy libuv thread pool (as on a loaded machine) holds back any asynchronous first stat
    // until after the change below; fs.watchFile then took the changed file as its baseline.
    const busy = Array.from({ length: 4 }, () => pbkdf2Slow());
    reloader!.start();
    writeFileSync(file, policies("*/7 * * * *", '"A", "B", "C"'));
    await Promise.all(busy);
    await until(() => applied.length === 1);
    expect(holder.current.policies[0]).toMatchObject({ schedule: "*/7 * * * *" });
  });

  it("rejects an invalid file with a log line naming the file, path and fault, and keeps the running policies", async () => {
    const { file, holder, applied, lines } = await setup();
    const before = holder.current;
    await writeFile(file, policies("0 3 * *", '"A"'));
    await until(() => lines.some((l) => l.level === "error"));
    const line = lines.find((l) => l.level === "error")!;
    expect(String(line.msg)).toContain("policy file rejected, the running policies stay");
    expect(String(line.msg)).toContain(file);
    expect(String(line.msg)).toContain("policies[0].schedule");
    expect(applied).toHaveLength(0);
    expect(holder.current).toBe(before);
  });

  it("reloads on SIGHUP", async () => {
    const { applied, lines } = await setup();
    process.kill(process.pid, "SIGHUP");
    await until(() => applied.length === 1);
    expect(lines.some((l) => l.reason === "SIGHUP" && l.msg === "policy file reloaded")).toBe(true);
  });

  it("counts reloads by result in wa_rotator_config_reloads_total and the last one's success", async () => {
    const { file, metrics } = await setup({ watch: false });
    const sample = async (name: string) => {
      const text = await metrics.text();
      const line = text.split("\n").find((l) => l.startsWith(`${name} `));
      return line === undefined ? undefined : Number(line.split(" ")[1]);
    };
    expect(await sample("wa_rotator_config_last_reload_successful")).toBe(1);

    await writeFile(file, policies("0 3 * *", '"A"'));
    expect(await reloader!.reload("test")).toBe(false);
    expect(await sample('wa_rotator_config_reloads_total{result="rejected"}')).toBe(1);
    expect(await sample("wa_rotator_config_last_reload_successful")).toBe(0);

    await writeFile(file, policies("*/5 * * * *", '"A"'));
    expect(await reloader!.reload("test")).toBe(true);
    expect(await sample('wa_rotator_config_reloads_total{result="applied"}')).toBe(1);
    expect(await sample("wa_rotator_config_last_reload_successful")).toBe(1);
  });

  it("counts a reload whose apply throws as failed", async () => {
    const { metrics } = await setup({
      watch: false,
      apply: () => {
        throw new Error("boom");
      },
    });
    expect(await reloader!.reload("test")).toBe(false);
    const text = await metrics.text();
    expect(text).toContain('wa_rotator_config_reloads_total{result="failed"} 1');
    expect(text).toContain("wa_rotator_config_last_reload_successful 0");
  });
});
