import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { parseDocument } from "yaml";
import { startGraphSimulator, type GraphSimulator } from "../src/graph-sim/simulator.js";
import { parseConfigText } from "../src/config/config.js";
import { loadSettings } from "../src/config/settings.js";
import { createGateway, type Gateway } from "../src/gateway/gateway.js";
import { webhookRoutes } from "../src/gateway/webhook-receiver.js";
import { createLogger } from "../src/infra/logger.js";
import type { RotationMessage } from "../src/core/interfaces.js";
import { subscribe, type Subscription } from "../src/publish/subscriber.js";
import {
  deleteDemoKeys,
  findOrStartRedis,
  freePort,
  RedisMissingError,
  type DemoRedis,
} from "./demo-redis.js";

/**
 * `npm run demo [-- --duration <s>]`: the whole system on one machine. Redis (REDIS_URL if it
 * answers, else a private redis-server), the Graph simulator in this process, `wa-invite-rotator
 * start` as a child process with config/demo.yaml (three groups every ten seconds), a subscriber
 * that verifies every signature and prints each new link as it arrives, and a gateway whose join
 * URL (`/join/demo`, over the three groups) is followed after each new link, printing where it led
 * and whether that link was current (Graph's, per the simulator) at the time. Ctrl-C (or
 * `--duration` / DEMO_DURATION seconds after the first link) stops it all and removes the demo's
 * keys. A demo that received no link exits 1 with the reason.
 */

const ROOT = fileURLToPath(new URL("../../", import.meta.url)); // this file runs as dist/scripts/demo.js
const CLI = join(ROOT, "dist/src/cli.js");
const DEMO_CONFIG = join(ROOT, "config/demo.yaml");
const STOP_TIMEOUT_MS = 15_000;
/** The demo policy fires every ten seconds: a minute without any link means something is wrong. */
const FIRST_LINK_TIMEOUT_MS = Number(process.env.DEMO_FIRST_LINK_TIMEOUT_MS) || 60_000;

const say = (line: string) => process.stdout.write(`${line}\n`);

async function main(): Promise<number> {
  const durationMs = parseDurationOption();
  const id = randomBytes(3).toString("hex");
  const prefix = `wa-rotator-demo-${id}`;
  const channel = `demo-${id}:invite-links`;
  const token = `demo-token-${randomBytes(8).toString("hex")}`;
  const secret = `demo-secret-${randomBytes(16).toString("hex")}`;
  const appSecret = `demo-app-secret-${randomBytes(16).toString("hex")}`;

  // Signals are handled from the very start, so a Ctrl-C while Redis is still being found or
  // started goes through the same cleanup as one later on (a private redis-server runs in its own
  // process group and would otherwise outlive the demo). A second signal gives up on a clean stop.
  const stop = new AbortController();
  const stopped = new Promise<string>((resolve) =>
    stop.signal.addEventListener("abort", () => resolve(String(stop.signal.reason)), { once: true }),
  );
  let redis: DemoRedis | undefined;
  let sim: GraphSimulator | undefined;
  let gateway: Gateway | undefined;
  let visitors: NodeJS.Timeout | undefined;
  let sub: Subscription | undefined;
  let child: ChildProcess | undefined;
  let dir: string | undefined;
  const killAll = () => {
    child?.kill("SIGKILL");
    redis?.kill();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.signal.aborted) {
      killAll();
      process.exit(130);
    }
    stop.abort(signal === "SIGINT" ? "interrupted" : "terminated");
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.once("exit", killAll);

  const received = new Map<string, number>();
  // --duration counts from the first link, so a slow start does not eat the demo; no link at all
  // within FIRST_LINK_TIMEOUT_MS ends it as a failure.
  let firstLink = () => {};
  const gotFirstLink = new Promise<void>((resolve) => (firstLink = resolve));
  let invalid = 0;
  let exitCode = 0;
  const follows: Promise<void>[] = [];
  const followed = { current: 0, stale: 0, unanswered: 0 };
  const report = (result: FollowResult) => {
    followed[result.kind]++;
    say(formatFollow(result));
  };
  try {
    try {
      redis = await findOrStartRedis(process.env.REDIS_URL || "redis://127.0.0.1:6379", {
        signal: stop.signal,
      });
    } catch (error) {
      if (stop.signal.aborted) throw new Interrupted(String(stop.signal.reason));
      console.error(`demo: ${error instanceof RedisMissingError ? error.message : String(error)}`);
      return 1;
    }
    const shared = redis;
    dir = mkdtempSync(join(tmpdir(), "wa-rotator-demo-"));
    const config = join(dir, "demo.yaml");
    writeFileSync(config, demoConfig(channel));

    // The gateway (its webhook endpoint) in this process: the simulator's group webhooks go there.
    gateway = createGateway({
      settings: loadSettings({
        REDIS_URL: shared.url,
        ROTATOR_PREFIX: prefix,
        WHATSAPP_APP_SECRET: appSecret,
        ROTATOR_SIGNING_SECRET: secret,
        GATEWAY_RATE_LIMIT: "0",
      }),
      config: parseConfigText(readFileSync(config, "utf8"), config, {}, { graphApiVersion: "v23.0" }),
      logger: createLogger("warn"),
      extraRoutes: webhookRoutes,
      port: 0,
    });
    await gateway.start();
    const webhookUrl = `${gateway.server()!.url}/webhooks/whatsapp`;
    const joinUrl = `${gateway.server()!.url}/join/${JOIN_SLUG}`;
    sim = await startGraphSimulator({
      tokens: { [token]: { name: "default" } },
      webhook: { url: webhookUrl, appSecret },
    });
    sub = await subscribe({
      redis: shared.url,
      channel,
      secret,
      onMessage: (msg) => {
        if (received.size === 0) firstLink();
        received.set(msg.group_id, (received.get(msg.group_id) ?? 0) + 1);
        say(formatMessage(msg));
        // Follow the stable join URL after each new link: it must lead to a link Graph holds now.
        if (sim) follows.push(followJoinUrl(joinUrl, sim).then(report));
      },
      onInvalid: (error) => {
        invalid++;
        say(`${new Date().toISOString().slice(11, 23)}Z  REJECTED  ${error.message}`);
      },
      onError: (error) => console.error(`demo: subscriber: ${error.message}`),
    });
    if (stop.signal.aborted) throw new Interrupted(String(stop.signal.reason));
    const healthPort = await freePort();
    say("wa-invite-rotator demo");
    say(
      `  redis      ${shared.url}${shared.owned ? " (private, stopped at the end)" : " (shared; demo keys removed at the end)"}`,
    );
    say(`  graph      ${sim.url} (simulator)`);
    say(`  policy     config/demo.yaml: three groups every ten seconds; DEMO-GROUP-1 also after 3 joins`);
    say(`  webhooks   ${webhookUrl} (the simulator sends a signed join every 2 s to DEMO-GROUP-1)`);
    say(`  join URL   ${joinUrl} (stable over the three groups; followed after each new link)`);
    say(`  prefix     ${prefix}`);
    say(`  channel    ${channel}`);
    say(`  metrics    http://127.0.0.1:${healthPort}/metrics`);
    say(
      `Subscribed; verifying signatures. ${durationMs ? `Stopping after ${durationMs / 1000} s.` : "Ctrl-C stops."}`,
    );
    say("");
    say(row(["ROTATED AT", "GROUP", "SEQ", "LINK", "CHECK", "TRIGGER"]));

    const proc = spawn(process.execPath, [CLI, "start"], {
      cwd: ROOT,
      // Its own process group: Ctrl-C reaches the demo, which then stops the rotator with one SIGTERM.
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        REDIS_URL: shared.url,
        ROTATOR_CONFIG: config,
        ROTATOR_PREFIX: prefix,
        GRAPH_API_BASE_URL: sim.url,
        WHATSAPP_ACCESS_TOKEN: token,
        ROTATOR_SIGNING_SECRET: secret,
        HEALTH_PORT: String(healthPort),
        LOG_LEVEL: process.env.DEMO_LOG_LEVEL || "warn",
      },
    });
    child = proc;
    for (const stream of [proc.stdout, proc.stderr]) {
      createInterface({ input: stream }).on("line", (line) => console.error(`  rotator | ${line}`));
    }
    const childExit = new Promise<number | string>((resolve) =>
      proc.once("exit", (code, signal) => resolve(code ?? signal ?? -1)),
    );

    // Someone joins DEMO-GROUP-1 through its current link every 2 s; after 3 joins it rotates (joins).
    let person = 0;
    const liveSim = sim;
    visitors = setInterval(() => {
      const link = liveSim.group("DEMO-GROUP-1")?.link;
      if (link === undefined) return;
      void liveSim.groupEvents
        .join("DEMO-GROUP-1", link, { wa_id: String(4915550000000 + ++person) })
        .catch(() => undefined);
    }, 2_000);

    const reason = await new Promise<string>((resolve) => {
      void stopped.then(resolve);
      if (durationMs) {
        void gotFirstLink.then(() =>
          setTimeout(() => resolve(`${durationMs / 1000} s passed since the first link`), durationMs).unref(),
        );
      }
      setTimeout(() => {
        if (received.size === 0) resolve(`no link within ${FIRST_LINK_TIMEOUT_MS / 1000} s`);
      }, FIRST_LINK_TIMEOUT_MS).unref();
      void childExit.then((code) => resolve(`the rotator exited unexpectedly (${code})`));
    });
    say("");
    say(`Stopping (${reason})...`);
    if (reason.startsWith("the rotator exited")) {
      exitCode = 1;
      await childExit;
    } else {
      // Killed by the SIGTERM itself: it came before the rotator had installed its handlers, so
      // nothing had started; that is a clean stop too.
      const code = await stopChild(proc, childExit);
      exitCode = code === 0 || code === "SIGTERM" ? 0 : 1;
    }
  } catch (error) {
    if (error instanceof Interrupted) {
      say(`Stopping (${error.message}) before the demo started...`);
    } else {
      console.error(`demo: ${error instanceof Error ? error.message : String(error)}`);
      exitCode = 1;
    }
  } finally {
    child?.kill("SIGKILL");
    if (visitors) clearInterval(visitors);
    await Promise.all(follows);
    await sub?.close();
    await sim?.close();
    await gateway?.stop();
    if (redis?.owned) await redis.stop();
    else if (redis) await deleteDemoKeys(redis.url, prefix, channel).catch(() => undefined);
    if (dir) rmSync(dir, { recursive: true, force: true });
    process.off("exit", killAll);
  }
  const total = [...received.values()].reduce((a, b) => a + b, 0);
  const rejected = invalid === 0 ? "" : `${invalid} rejected`;
  // With no link there is no signature to call valid: say what did (not) happen.
  say(
    total === 0
      ? `No link received${rejected && `; ${rejected}`}.`
      : `${total} link${total === 1 ? "" : "s"} received for ${received.size} group${received.size === 1 ? "" : "s"}, ` +
          `${rejected || "every signature valid"}.`,
  );
  const visits = followed.current + followed.stale + followed.unanswered;
  if (visits > 0) {
    say(
      `join URL followed ${visits} time${visits === 1 ? "" : "s"}: ` +
        (followed.stale === 0
          ? `every redirect to a current link${followed.unanswered > 0 ? ` (${followed.unanswered} not answered with a link)` : ""}.`
          : `${followed.stale} to a link that was no longer current.`),
    );
  }
  if (total === 0 && exitCode === 0 && child !== undefined) {
    console.error(
      "demo: FAILED: no link was received. The rotator's lines above (prefixed `rotator |`) say why; " +
        "DEMO_LOG_LEVEL=info shows more.",
    );
    return 1;
  }
  return invalid > 0 || followed.stale > 0 ? 1 : exitCode;
}

/** The demo's join link (config/demo.yaml `links:`). */
const JOIN_SLUG = "demo";

type FollowResult =
  | { kind: "current" | "stale"; link: string; group: string | undefined }
  | { kind: "unanswered"; status: number };

/**
 * One visit of the join URL, as a phone would make it (no redirect followed). Its link counts as
 * current when Graph (the simulator) held it just before or just after the visit, so a rotation
 * that deletes it a moment after the redirect is not mistaken for a stale answer.
 */
async function followJoinUrl(url: string, sim: GraphSimulator): Promise<FollowResult> {
  const before = currentLinks(sim);
  let res: Response;
  try {
    res = await fetch(url, { redirect: "manual", signal: AbortSignal.timeout(5_000) });
    await res.arrayBuffer();
  } catch {
    return { kind: "unanswered", status: 0 };
  }
  const link = res.headers.get("location");
  if (res.status !== 302 || link === null) return { kind: "unanswered", status: res.status };
  const group = before.get(link) ?? currentLinks(sim).get(link);
  return { kind: group === undefined ? "stale" : "current", link, group };
}

/** Graph's current link of each group, link → group. */
function currentLinks(sim: GraphSimulator): Map<string, string> {
  const links = new Map<string, string>();
  for (const id of ["DEMO-GROUP-1", "DEMO-GROUP-2", "DEMO-GROUP-3"]) {
    const link = sim.group(id)?.link;
    if (link !== undefined) links.set(link, id);
  }
  return links;
}

function formatFollow(result: FollowResult): string {
  const time = new Date().toISOString().slice(11, 23) + "Z";
  if (result.kind === "unanswered") {
    const why = result.status === 0 ? "no answer" : `${result.status} (no group with room and a link)`;
    return row([time, "join URL", "->", why]);
  }
  const where = result.kind === "current" ? `current link of ${result.group!}` : "NOT CURRENT";
  return row([time, "join URL", "->", result.link, where]);
}

/** A stop signal came before the rotator was started. */
class Interrupted extends Error {}

/** SIGTERM, then the rotator drains and exits 0; SIGKILL if it takes too long. */
async function stopChild(proc: ChildProcess, exited: Promise<number | string>): Promise<number | string> {
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

/** config/demo.yaml with the demo's own channel, so a shared Redis's real channel stays untouched. */
function demoConfig(channel: string): string {
  const doc = parseDocument(readFileSync(DEMO_CONFIG, "utf8"));
  const policies = doc.get("policies") as { items: unknown[] } | undefined;
  policies?.items.forEach((_, i) => doc.setIn(["policies", i, "channel"], channel));
  return doc.toString();
}

/** One line per link, as the subscriber received it. */
function formatMessage(msg: RotationMessage): string {
  // subscribe() delivers only messages whose signature it verified with the secret.
  const cells = [msg.rotated_at.slice(11, 23) + "Z", msg.group_id, String(msg.sequence), msg.invite_link];
  return row([...cells, "signature ok", msg.trigger]);
}

const WIDTHS = [13, 13, 4, 48, 12, 0];

function row(cells: string[]): string {
  return cells
    .map((cell, i) => (i === 2 ? cell.padStart(WIDTHS[i]!) : cell.padEnd(WIDTHS[i] ?? 0)))
    .join("  ")
    .trimEnd();
}

function parseDurationOption(): number | undefined {
  const { values } = parseArgs({ options: { duration: { type: "string" } }, strict: true });
  const text = values.duration ?? process.env.DEMO_DURATION;
  if (text === undefined || text === "") return undefined;
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new Error(`--duration: seconds > 0, got ${text}`);
  return seconds * 1000;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`demo: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
