import { spawn } from "node:child_process";
import { pathToFileURL } from "node:url";
import { Redis } from "ioredis";
import { expect, it } from "vitest";
import { redisAnswers } from "../../scripts/redis-server.js";
import { ROOT } from "../helpers/cli.js";

/**
 * A process that started a private redis-server (a bench, the demo, a test) and then dies of an
 * uncaught error takes the server with it (scripts/children.ts); it used to leave it running.
 */
it("a private redis-server does not outlive the process that started it when that one crashes", async () => {
  const module = pathToFileURL(`${ROOT}/dist/scripts/redis-server.js`).href;
  const code =
    `const { startOwnedRedis } = await import(${JSON.stringify(module)});` +
    `const server = await startOwnedRedis();` +
    `console.log("port " + server.port);` +
    `setTimeout(() => { throw new Error("crashed on purpose"); }, 10);`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", code], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const exitCode = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  expect(exitCode).not.toBe(0); // it did crash
  const port = /port (\d+)/.exec(out)?.[1];
  expect(port).toBeDefined();
  const url = `redis://127.0.0.1:${port}`;
  let alive = true;
  for (let i = 0; i < 30 && alive; i++) {
    alive = await redisAnswers(url);
    if (alive) await new Promise((r) => setTimeout(r, 100));
  }
  if (alive) {
    // Without the fix: stop the orphan here, so the failing test leaves nothing behind.
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    await redis.call("SHUTDOWN", "NOSAVE").catch(() => undefined);
    redis.disconnect();
  }
  expect(alive).toBe(false);
});
