import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { GatewayContext } from "../../src/gateway/gateway.js";
import { createGatewayMetrics } from "../../src/gateway/metrics.js";
import { webhookRoutes } from "../../src/gateway/webhook-receiver.js";
import { createGroupMetrics } from "../../src/groups/metrics.js";
import { createLogger } from "../../src/infra/logger.js";
import { createMetrics, METRIC_PREFIX } from "../../src/infra/metrics.js";

/**
 * The README's metrics table lists every metric the code registers, with its type and labels, so
 * the list stays true: a metric added anywhere under src/ without a row fails here.
 */
const root = fileURLToPath(new URL("../..", import.meta.url));

interface Row {
  readonly type: string;
  readonly labels: readonly string[];
  readonly meaning: string;
}

/** Rows of the table under "### Health and metrics": `| \`name\` | type | labels | meaning |`. */
function readmeTable(): Map<string, Row> {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const start = readme.indexOf("### Health and metrics");
  const end = readme.indexOf("\n### ", start + 1);
  const section = readme.slice(start, end === -1 ? undefined : end);
  const rows = new Map<string, Row>();
  for (const line of section.split("\n")) {
    const cells = line.split("|").map((cell) => cell.trim());
    const name = /^`([a-z_*]+)`$/.exec(cells[1] ?? "")?.[1];
    if (!name || cells.length < 6) continue;
    const labels = [...(cells[3] ?? "").matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!);
    rows.set(name, { type: cells[2] ?? "", labels, meaning: cells[4] ?? "" });
  }
  return rows;
}

/** Every metric name written in src/: `${METRIC_PREFIX}x` anywhere, and `name("x")` in infra/metrics.ts. */
function namesInSource(): Map<string, string> {
  const found = new Map<string, string>();
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
      entry.isDirectory()
        ? walk(join(dir, entry.name))
        : entry.name.endsWith(".ts")
          ? [join(dir, entry.name)]
          : [],
    );
  for (const file of walk(join(root, "src"))) {
    const text = readFileSync(file, "utf8");
    const names = [
      ...[...text.matchAll(/\$\{METRIC_PREFIX\}([a-z0-9_]+)/g)].map((m) => m[1]!),
      ...(file.endsWith(join("infra", "metrics.ts"))
        ? [...text.matchAll(/\bname\("([a-z0-9_]+)"\)/g)].map((m) => m[1]!)
        : []),
    ];
    const constructs = /new (Counter|Gauge|Histogram|Summary)\b/.test(text);
    if (constructs && names.length === 0)
      throw new Error(`${file} creates metrics but names none the way this test reads them`);
    for (const name of names) found.set(`${METRIC_PREFIX}${name}`, file.slice(root.length));
  }
  return found;
}

/** The metrics every factory registers, on one registry (nothing collected, so no Redis needed). */
/** What the test reads of a registered metric (prom-client's metric objects carry these). */
interface Registered {
  readonly name: string;
  readonly type: string;
  readonly labelNames: readonly string[];
}

function registeredMetrics(): Registered[] {
  const metrics = createMetrics();
  createGatewayMetrics(metrics.registry, async () => new Map());
  createGroupMetrics({ registry: metrics.registry, redis: {} as never, keys: {} as never, groups: () => [] });
  const context = {
    settings: { WHATSAPP_APP_SECRET: "s", WHATSAPP_VERIFY_TOKEN: "v" },
    logger: createLogger("silent"),
    metrics,
    redis: {},
    keys: {},
  } as unknown as GatewayContext;
  webhookRoutes(context);
  return metrics.registry.getMetricsAsArray() as unknown as Registered[];
}

/** A row name with `*` (`nodejs_heap_space_size_*`) as a pattern of metric names. */
const pattern = (row: string) => new RegExp(`^${row.replace(/\*/g, "[a-z0-9_]*")}$`);

/** The row of a metric's own name, else of the longest pattern that matches it. */
function rowOf(rows: Map<string, Row>, name: string): Row | undefined {
  const exact = rows.get(name);
  if (exact) return exact;
  const matching = [...rows.keys()].filter((row) => row.includes("*") && pattern(row).test(name));
  const longest = matching.sort((a, b) => b.length - a.length)[0];
  return longest === undefined ? undefined : rows.get(longest);
}

describe("README metrics table", () => {
  const rows = readmeTable();
  const registered = registeredMetrics();

  it("has a row, with a meaning, for every metric named in src/", () => {
    const inSource = namesInSource();
    expect(inSource.size).toBeGreaterThan(25);
    const missing = [...inSource].filter(([name]) => !rows.has(name)).map(([n, f]) => `${n} (${f})`);
    expect(missing, "metrics without a README row").toEqual([]);
    for (const [name, row] of rows) expect(row.meaning, name).not.toBe("");
  });

  it("names each registered metric's type and labels as the code registers them", () => {
    const inSource = namesInSource();
    for (const { name, type, labelNames } of registered) {
      if (!name.startsWith(METRIC_PREFIX)) continue;
      // The source scan finds what the factories register (so it would find a new one too).
      expect(inSource.has(name), `${name} not found by the source scan`).toBe(true);
      const row = rows.get(name);
      expect(row, `${name} has no README row`).toBeDefined();
      expect({ name, type: row!.type, labels: row!.labels }).toEqual({ name, type, labels: labelNames });
    }
  });

  it("lists no metric the code does not name, and Node.js's own under process_* and nodejs_*", () => {
    const names = new Set(registered.map((m) => m.name));
    const inSource = namesInSource();
    const defaults = [...names].filter((name) => !name.startsWith(METRIC_PREFIX));
    expect(defaults.length).toBeGreaterThan(10);
    expect(defaults.filter((name) => !/^(process|nodejs)_/.test(name))).toEqual([]);
    expect(rows.has("process_*") && rows.has("nodejs_*")).toBe(true);
    const stale = [...rows.keys()].filter((name) =>
      name.endsWith("*")
        ? ![...names].some((metric) => pattern(name).test(metric))
        : !inSource.has(name) && !names.has(name),
    );
    expect(stale, "README rows of metrics the code does not register").toEqual([]);
  });

  it("names the labels (and type) of Node.js's own metrics: the row of their name, else of the longest pattern", () => {
    const defaults = registered.filter((m) => !m.name.startsWith(METRIC_PREFIX));
    expect(defaults.some((m) => m.labelNames.length > 0)).toBe(true);
    for (const { name, type, labelNames } of defaults) {
      const row = rowOf(rows, name);
      expect(row, `${name} has no README row`).toBeDefined();
      expect(row!.labels, `${name}: labels in the README`).toEqual(labelNames);
      if (row!.type !== "prom-client defaults") expect(row!.type, `${name}: type`).toBe(type);
    }
  });
});
