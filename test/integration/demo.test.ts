import { mkdtempSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { spawnNode } from "../helpers/cli.js";
import { testRedis, testRedisUrl } from "../helpers/redis.js";

/** `npm run demo` as a person runs it: the built script, a real `start` child, Ctrl-C at the end. */
const DEMO = fileURLToPath(new URL("../../dist/scripts/demo.js", import.meta.url));

function runDemo(args: string[], env: Record<string, string>) {
  const proc = spawnNode(DEMO, args, env);
  const { child } = proc;
  const until = async (test: (out: string) => boolean, timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    while (!test(proc.stdout())) {
      if (Date.now() > deadline || child.exitCode !== null) {
        throw new Error(`demo output never matched; stdout:\n${proc.stdout()}\nstderr:\n${proc.stderr()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  return { child, exited: proc.exited, until, out: proc.stdout, err: proc.stderr };
}

/** Pids of the processes whose working directory is under `root` (redis-server chdirs to --dir). */
function processesUnder(root: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/cwd`).startsWith(root)) pids.push(Number(entry));
    } catch {
      // gone, a zombie, or not ours
    }
  }
  return pids;
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

let redis: Redis;
beforeAll(() => {
  redis = testRedis();
});
afterAll(async () => {
  await redis.quit();
});

const linkLine = (group: string) =>
  new RegExp(
    `^\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z\\s+${group}\\s+\\d+\\s+https://chat\\.whatsapp\\.com/\\S+\\s+signature ok\\s+(schedule|catch-up)$`,
    "m",
  );

/** A line saying where the join URL led: a link and the group whose current link it is. */
const JOIN_FOLLOW =
  /^\d\d:\d\d:\d\d\.\d{3}Z\s+join URL\s+->\s+(https:\/\/chat\.whatsapp\.com\/\S+)\s+current link of DEMO-GROUP-\d$/gm;
/** A published link's line: its sequence and link. */
const LINK_LINE = /^\S+Z\s+DEMO-GROUP-\d\s+(\d+)\s+(https:\/\/chat\.whatsapp\.com\/\S+)\s+signature ok/gm;

describe("npm run demo", () => {
  it("prints a verified link for each of the three groups, then stops cleanly on Ctrl-C", async () => {
    const demo = runDemo(["--duration", "60"], { REDIS_URL: testRedisUrl() });
    try {
      // The policy fires every ten seconds: the first links come within ~12 s of the start.
      await demo.until(
        (out) => ["DEMO-GROUP-1", "DEMO-GROUP-2", "DEMO-GROUP-3"].every((g) => linkLine(g).test(out)),
        25_000,
      );
      // The join URL, followed after each new link, leads to a current link; after a group's
      // rotation too (a follow that led to a group's second or later link).
      await demo.until((out) => {
        const rotated = new Set(
          [...out.matchAll(LINK_LINE)].filter((m) => Number(m[1]) >= 2).map((m) => m[2]),
        );
        return [...out.matchAll(JOIN_FOLLOW)].some((m) => rotated.has(m[1]));
      }, 30_000);
      demo.child.kill("SIGINT");
      expect(await demo.exited).toBe(0);
    } finally {
      demo.child.kill("SIGKILL");
    }
    const out = demo.out();
    expect(out).toContain("(shared; demo keys removed at the end)");
    expect(out).toContain("Stopping (interrupted)...");
    expect(out).toMatch(/\d+ links received for 3 groups, every signature valid\.$/m);
    expect(out).toMatch(/^ {2}join URL {3}http:\/\/127\.0\.0\.1:\d+\/join\/demo /m);
    const follows = [...out.matchAll(JOIN_FOLLOW)].map((m) => m[1]);
    // Each redirect went to a link Graph held at the time, and later ones to newer links.
    expect(new Set(follows).size).toBeGreaterThan(1);
    expect(out).not.toContain("NOT CURRENT");
    expect(out).toMatch(/^join URL followed \d+ times: every redirect to a current link/m);
    expect(out).not.toMatch(/demo-secret-|demo-token-/);

    const prefix = /prefix\s+(\S+)/.exec(out)![1]!;
    const channel = /channel\s+(\S+)/.exec(out)![1]!;
    const [, left] = await redis.scan("0", "MATCH", `${prefix}:*`, "COUNT", 10_000);
    expect(left).toEqual([]);
    expect(await redis.exists(`${channel}:latest`, `${channel}:stream`)).toBe(0);
    // Two fires of a ten-second policy and the start: longer than the default test timeout.
  }, 60_000);

  it("stops by itself DEMO_DURATION seconds after the first link and exits 0", async () => {
    const demo = runDemo([], { REDIS_URL: testRedisUrl(), DEMO_DURATION: "1" });
    try {
      expect(await demo.exited).toBe(0);
    } finally {
      demo.child.kill("SIGKILL");
    }
    expect(demo.out()).toContain("Stopping (1 s passed since the first link)...");
    expect(demo.out()).toMatch(/https:\/\/chat\.whatsapp\.com\/\S+ +signature ok/);
    expect(demo.out()).not.toMatch(/^0 links received/m);
  });

  it("exits 1 with the reason when no link arrives", async () => {
    // A first-link wait far shorter than the demo policy's ten seconds: no link can make it.
    const demo = runDemo([], {
      REDIS_URL: testRedisUrl(),
      DEMO_DURATION: "1",
      DEMO_FIRST_LINK_TIMEOUT_MS: "1",
    });
    try {
      expect(await demo.exited).toBe(1);
    } finally {
      demo.child.kill("SIGKILL");
    }
    expect(demo.out()).toContain("Stopping (no link within 0.001 s)...");
    expect(demo.out()).toMatch(/^No link received\.$/m);
    expect(demo.out()).not.toContain("signature valid");
    expect(demo.err()).toContain("demo: FAILED: no link was received.");
  });

  it.runIf(process.platform === "linux")(
    "Ctrl-C while it starts its private redis-server stops that server and removes its directory",
    async () => {
      // Its own TMPDIR, so the private server's --dir (and the process inside it) can be found.
      const root = mkdtempSync(join(tmpdir(), "wa-rotator-demo-test-"));
      const demo = runDemo([], { REDIS_URL: "redis://127.0.0.1:1", TMPDIR: root });
      try {
        // The moment the redis-server process exists, before the demo has got any further.
        const started = await waitUntil(() => processesUnder(root).length > 0, 15_000);
        expect(started, `no redis-server appeared; stderr: ${demo.err()}`).toBe(true);
        demo.child.kill("SIGINT");
        expect(await demo.exited).toBe(0);
        expect(await waitUntil(() => processesUnder(root).length === 0, 3_000)).toBe(true);
        expect(readdirSync(root)).toEqual([]);
        expect(demo.out()).toContain("Stopping (interrupted)");
      } finally {
        demo.child.kill("SIGKILL");
        for (const pid of processesUnder(root)) process.kill(pid, "SIGKILL");
        rmSync(root, { recursive: true, force: true });
      }
    },
  );

  it("names the install command when no Redis answers and redis-server is missing", async () => {
    const demo = runDemo([], { REDIS_URL: "redis://127.0.0.1:1", PATH: "/nonexistent" });
    expect(await demo.exited).toBe(1);
    expect(demo.err()).toContain("apt-get install redis-server");
    expect(demo.err()).toContain("brew install redis");
  });
});
