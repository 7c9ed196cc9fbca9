/**
 * gateway (npm run bench -- gateway): visits per second one `gateway` process serves, and their
 * latency, side by side with a bare node HTTP server that answers every request with the same
 * fixed 302 (the floor: what node's HTTP stack and this load generator cost alone). Both run as
 * child processes; the load comes from this process over 32 keep-alive connections, 64 visits in
 * flight, a fixed number of visits per row (no timed loop).
 *
 * Rows: a plain visit (302 to a pool of 3 groups: one Redis round trip), a signed URL with a visit
 * limit (plus the atomic count), and a desktop browser's page (plus the QR code, cached per link);
 * then both servers paced at a steady 2,000 visits/s (open loop), for the latency a visitor sees.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { deleteKeys } from "../scripts/redis-server.js";
import { endWithThisProcess } from "../scripts/children.js";
import { Pool } from "undici";
import { createKeys } from "../src/core/keys.js";
import { signedQuery } from "../src/gateway/signed.js";
import { createPublisher } from "../src/publish/publisher.js";

const CLI = fileURLToPath(new URL("../src/cli.js", import.meta.url));
const VISITS = 20_000;
const WARMUP = 2_000;
const IN_FLIGHT = 64;
/** The open-loop rows: this many visits a second, for five seconds. */
const PACED_RATE = 2_000;
const PACED_VISITS = 10_000;
const SECRET = randomBytes(24).toString("hex");

const FLOOR_SERVER = `
const http = require("node:http");
const server = http.createServer((req, res) => {
  res.writeHead(302, { Location: "https://chat.whatsapp.com/AbCdEfGhIjKlMnOpQrStUv", "Cache-Control": "no-store" });
  res.end();
});
server.keepAliveTimeout = 5000;
server.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ url: "http://127.0.0.1:" + server.address().port })));
`;

interface Row {
  readonly perSecond: number;
  readonly p50: number;
  readonly p99: number;
  /** CPU time (user + system) the server process spent per visit, in µs; absent off Linux. */
  readonly cpuUs?: number;
}

/**
 * CPU seconds (user + system) a process has used so far, from /proc (Linux), else undefined. On a
 * shared machine this moves far less than latency or visits/s: the cost per visit, not the wait.
 */
function cpuSeconds(pid: number | undefined): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of the whole line (12 and 13 after the name).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** Runs a row and adds the CPU the server `child` spent per visit. */
async function withCpu(child: ChildProcess, visits: number, run: () => Promise<Row>): Promise<Row> {
  const before = cpuSeconds(child.pid);
  const row = await run();
  const after = cpuSeconds(child.pid);
  return before === undefined || after === undefined
    ? row
    : { ...row, cpuUs: ((after - before) / visits) * 1e6 };
}

/** Starts a child and waits for a JSON line with `url` on its stdout. */
function startChild(
  args: string[],
  env: Record<string, string>,
): Promise<{ child: ChildProcess; url: string }> {
  const child = endWithThisProcess(
    spawn(process.execPath, args, {
      env: { PATH: process.env.PATH ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(() => reject(new Error(`child did not start: ${err || out}`)), 15_000);
    child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString()));
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      for (const line of out.split("\n")) {
        if (!line.includes('"url"')) continue;
        try {
          const url = (JSON.parse(line) as { url?: string }).url;
          if (url) {
            clearTimeout(timer);
            child.stdout!.removeAllListeners("data");
            child.stdout!.resume();
            resolve({ child, url });
            return;
          }
        } catch {
          // a partial line: wait for the rest
        }
      }
    });
    child.once("exit", (code) => reject(new Error(`child exited ${code}: ${err}`)));
  });
}

async function load(
  url: string,
  path: string,
  visits: number,
  headers: Record<string, string>,
  expect: number,
): Promise<Row> {
  const origin = new URL(url);
  const pool = new Pool(origin.origin, { connections: 32 });
  const latencies: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < visits) {
      next++;
      const start = performance.now();
      const res = await pool.request({ method: "GET", path, headers });
      await res.body.dump();
      latencies.push(performance.now() - start);
      if (res.statusCode !== expect) throw new Error(`${path}: ${res.statusCode}, expected ${expect}`);
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const seconds = (performance.now() - started) / 1000;
  await pool.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  return { perSecond: visits / seconds, p50: at(0.5), p99: at(0.99) };
}

/**
 * Open loop: `visits` visits sent at a fixed `rate` per second whether or not earlier ones have
 * answered (as visitors arrive), each timed from the moment it was due, so a stall shows in the
 * latency instead of slowing the sender (no coordinated omission). The question the target asks:
 * at thousands of visits per second, what is p99?
 */
async function paced(url: string, path: string, rate: number, visits: number, expect: number): Promise<Row> {
  const origin = new URL(url);
  const pool = new Pool(origin.origin, { connections: 32 });
  const latencies: number[] = [];
  const inFlight: Promise<void>[] = [];
  const started = performance.now();
  let sent = 0;
  let failure: Error | undefined;
  const one = async (due: number) => {
    const res = await pool.request({ method: "GET", path });
    await res.body.dump();
    latencies.push(performance.now() - due);
    if (res.statusCode !== expect) failure ??= new Error(`${path}: ${res.statusCode}, expected ${expect}`);
  };
  while (sent < visits) {
    const now = performance.now();
    // Every visit due by now goes out; then sleep to the next 1 ms tick.
    while (sent < visits && started + (sent * 1000) / rate <= now) {
      inFlight.push(one(started + (sent * 1000) / rate));
      sent++;
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(inFlight);
  const seconds = (performance.now() - started) / 1000;
  await pool.close();
  if (failure) throw failure;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  return { perSecond: visits / seconds, p50: at(0.5), p99: at(0.99) };
}

export async function benchGateway(redisUrl: string): Promise<void> {
  const prefix = `bench-gateway-${randomBytes(4).toString("hex")}`;
  const channel = `${prefix}:links`;
  const dir = mkdtempSync(join(tmpdir(), "wa-rotator-bench-gw-"));
  const redis = new Redis(redisUrl);
  const children: ChildProcess[] = [];
  try {
    const file = join(dir, "rotation.yaml");
    writeFileSync(
      file,
      [
        "policies:",
        "  - name: pool",
        '    schedule: "0 3 * * *"',
        `    channel: "${channel}"`,
        "    groups: [G1, G2, G3]",
        "links:",
        "  - slug: spring",
        "    groups: [G1, G2, G3]",
      ].join("\n"),
    );
    const keys = createKeys(prefix);
    const publisher = createPublisher({ redis, keys });
    for (const groupId of ["G1", "G2", "G3"]) {
      await publisher.publish({
        rotationId: `bench-${groupId}`,
        groupId,
        inviteLink: `https://chat.whatsapp.com/${randomBytes(16).toString("base64url")}`,
        createdAt: Date.now(),
        policy: "pool",
        account: "default",
        trigger: "manual",
        channel,
      });
    }
    const gateway = await startChild([CLI, "gateway"], {
      REDIS_URL: redisUrl,
      ROTATOR_CONFIG: file,
      ROTATOR_PREFIX: prefix,
      ROTATOR_LINK_SECRET: SECRET,
      GATEWAY_PORT: "0",
      GATEWAY_HOST: "127.0.0.1",
      GATEWAY_RATE_LIMIT: "0",
      LOG_LEVEL: "info",
    });
    children.push(gateway.child);
    const floor = await startChild(["-e", FLOOR_SERVER], {});
    children.push(floor.child);

    const exp = Math.floor(Date.now() / 1000) + 3600;
    const signed = `/join/spring?${signedQuery({ slug: "spring", exp, uses: VISITS * 10 }, SECRET)}`;
    const desktop = { accept: "text/html", "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130" };
    await load(floor.url, "/", WARMUP, {}, 302);
    await load(gateway.url, "/join/spring", WARMUP, {}, 302);

    console.log(`\ngateway: ${VISITS} visits per row, ${IN_FLIGHT} in flight over 32 keep-alive connections`);
    const rows: [string, Row][] = [
      [
        "bare node 302 server (floor)",
        await withCpu(floor.child, VISITS, () => load(floor.url, "/", VISITS, {}, 302)),
      ],
      [
        "gateway /join/spring (302, pool of 3)",
        await withCpu(gateway.child, VISITS, () => load(gateway.url, "/join/spring", VISITS, {}, 302)),
      ],
      [
        "gateway signed URL with --uses (302)",
        await withCpu(gateway.child, VISITS, () => load(gateway.url, signed, VISITS, {}, 302)),
      ],
      [
        "gateway desktop page (200, QR as SVG)",
        await withCpu(gateway.child, VISITS, () => load(gateway.url, "/join/spring", VISITS, desktop, 200)),
      ],
    ];
    // The target's question: at a steady 2,000 visits/s, what latency does a visitor see?
    rows.push(
      [
        "bare node 302 server, paced 2,000/s",
        await withCpu(floor.child, PACED_VISITS, () => paced(floor.url, "/", PACED_RATE, PACED_VISITS, 302)),
      ],
      [
        "gateway /join/spring, paced 2,000/s",
        await withCpu(gateway.child, PACED_VISITS, () =>
          paced(gateway.url, "/join/spring", PACED_RATE, PACED_VISITS, 302),
        ),
      ],
    );
    const base = rows[0]![1].perSecond;
    for (const [label, row] of rows) {
      console.log(
        `  ${label.padEnd(46)} ${row.perSecond.toFixed(0).padStart(7)} visits/s  p50 ${row.p50.toFixed(2)} ms  ` +
          `p99 ${row.p99.toFixed(2)} ms` +
          (row.cpuUs === undefined ? "" : `  CPU ${row.cpuUs.toFixed(0)} µs/visit`) +
          (label.includes("paced") ? "" : `  (${(row.perSecond / base).toFixed(2)}x the floor)`),
      );
    }
  } finally {
    for (const child of children) child.kill("SIGTERM");
    await deleteKeys(redis, prefix);
    await redis.quit();
    rmSync(dir, { recursive: true, force: true });
  }
}
