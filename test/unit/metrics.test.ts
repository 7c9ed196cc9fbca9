import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { createMetrics, policyLabel } from "../../src/infra/metrics.js";

/** The value of one sample line in the exposition text, or undefined when it is absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("createMetrics", () => {
  it("counts rotations, Graph calls and fires under wa_rotator_ names", async () => {
    const metrics = createMetrics({ collectDefault: false });
    metrics.rotations.inc({ result: "published", account: "default", trigger: "schedule" });
    metrics.rotations.inc({ result: "published", account: "default", trigger: "schedule" });
    metrics.rotations.inc({ result: "throttled", account: "default", trigger: "manual" });
    metrics.graphCalls.inc({ operation: "delete", outcome: "ok", code: "none" });
    metrics.graphCalls.inc({ operation: "create", outcome: "throttle", code: "80007" });
    metrics.throttlePauses.inc({ account: "default" });
    metrics.accountFailing.set({ account: "other" }, 1);
    metrics.skippedFires.inc({ policy: "nightly", reason: "busy" });
    metrics.fires.inc({ policy: "nightly", trigger: "catch-up" });
    metrics.firedRotations.inc({ policy: "nightly" }, 3);
    metrics.lastSuccess.set({ policy: policyLabel(null) }, 1_700_000_000);

    const text = await metrics.text();
    expect(metrics.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(
      sample(text, 'wa_rotator_rotations_total{result="published",account="default",trigger="schedule"}'),
    ).toBe(2);
    expect(
      sample(text, 'wa_rotator_rotations_total{result="throttled",account="default",trigger="manual"}'),
    ).toBe(1);
    expect(
      sample(text, 'wa_rotator_graph_calls_total{operation="create",outcome="throttle",code="80007"}'),
    ).toBe(1);
    expect(sample(text, 'wa_rotator_throttle_pauses_total{account="default"}')).toBe(1);
    expect(sample(text, 'wa_rotator_account_failing{account="other"}')).toBe(1);
    expect(sample(text, 'wa_rotator_skipped_rotations_total{policy="nightly",reason="busy"}')).toBe(1);
    expect(sample(text, 'wa_rotator_fires_total{policy="nightly",trigger="catch-up"}')).toBe(1);
    expect(sample(text, 'wa_rotator_fire_rotations_total{policy="nightly"}')).toBe(3);
    expect(sample(text, 'wa_rotator_last_success_timestamp_seconds{policy="manual"}')).toBe(1_700_000_000);
  });

  it("counts missed fires by policy and reason, with their help text", async () => {
    const metrics = createMetrics({ collectDefault: false });
    metrics.missedFires.inc({ policy: "nightly", reason: "too-old" }, 2);
    metrics.missedFires.inc({ policy: "nightly", reason: "failed" });
    const text = await metrics.text();
    expect(sample(text, 'wa_rotator_missed_fires_total{policy="nightly",reason="too-old"}')).toBe(2);
    expect(sample(text, 'wa_rotator_missed_fires_total{policy="nightly",reason="failed"}')).toBe(1);
    expect(text).toContain("# HELP wa_rotator_missed_fires_total Policy fires that rotated no group");
  });

  it("observes histograms into buckets", async () => {
    const metrics = createMetrics({ collectDefault: false });
    metrics.rotationDuration.observe({ account: "default" }, 0.7);
    metrics.linkGap.observe({ account: "default" }, 0.3);
    metrics.linkGap.observe({ account: "default" }, 40);
    metrics.graphCallDuration.observe({ operation: "create" }, 0.2);

    const text = await metrics.text();
    expect(sample(text, 'wa_rotator_rotation_duration_seconds_bucket{le="0.5",account="default"}')).toBe(0);
    expect(sample(text, 'wa_rotator_rotation_duration_seconds_bucket{le="1",account="default"}')).toBe(1);
    expect(sample(text, 'wa_rotator_link_gap_seconds_bucket{le="0.5",account="default"}')).toBe(1);
    expect(sample(text, 'wa_rotator_link_gap_seconds_count{account="default"}')).toBe(2);
    expect(sample(text, 'wa_rotator_link_gap_seconds_sum{account="default"}')).toBeCloseTo(40.3);
    expect(sample(text, 'wa_rotator_graph_call_duration_seconds_count{operation="create"}')).toBe(1);
  });

  it("keeps no state between instances, and adds unprefixed Node.js process metrics by default", async () => {
    const a = createMetrics({ collectDefault: false });
    const b = createMetrics({ collectDefault: false });
    a.throttlePauses.inc({ account: "x" });
    expect(await b.text()).not.toContain('wa_rotator_throttle_pauses_total{account="x"}');
    expect(await a.text()).not.toContain("process_cpu");

    const registry = new Registry();
    const withDefaults = createMetrics({ registry });
    expect(withDefaults.registry).toBe(registry);
    const text = await withDefaults.text();
    // The names stock Node.js dashboards query.
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes /m);
    expect(text).not.toContain("wa_rotator_process_");
  });

  it("reports queue depth and groups without a link from collect callbacks", async () => {
    const metrics = createMetrics({ collectDefault: false });
    let text = await metrics.text();
    // Nothing registered yet: the gauges have no labelled samples.
    expect(text).not.toContain("wa_rotator_queue_jobs{");

    metrics.registerQueueDepth(async () => ({
      waiting: 4,
      delayed: 2,
      active: 1,
      failed: 0,
      prioritized: 3,
    }));
    metrics.registerGroupsWithoutLink(async () => 5);
    text = await metrics.text();
    expect(sample(text, 'wa_rotator_queue_jobs{state="waiting"}')).toBe(4);
    expect(sample(text, 'wa_rotator_queue_jobs{state="delayed"}')).toBe(2);
    expect(sample(text, 'wa_rotator_queue_jobs{state="active"}')).toBe(1);
    expect(sample(text, 'wa_rotator_queue_jobs{state="failed"}')).toBe(0);
    expect(sample(text, 'wa_rotator_queue_jobs{state="prioritized"}')).toBe(3);
    expect(sample(text, "wa_rotator_groups_without_link")).toBe(5);
  });

  it("keeps the last value and counts an error when a callback throws", async () => {
    const metrics = createMetrics({ collectDefault: false });
    let fail = false;
    metrics.registerGroupsWithoutLink(async () => {
      if (fail) throw new Error("redis down");
      return 2;
    });
    metrics.registerQueueDepth(() => {
      if (fail) throw new Error("thrown synchronously");
      return Promise.resolve({ waiting: 1, delayed: 0, active: 0, failed: 0 });
    });
    expect(sample(await metrics.text(), "wa_rotator_groups_without_link")).toBe(2);

    fail = true;
    const text = await metrics.text();
    expect(sample(text, "wa_rotator_groups_without_link")).toBe(2);
    expect(sample(text, 'wa_rotator_queue_jobs{state="waiting"}')).toBe(1);
    // The failure is counted in the same scrape that hit it.
    expect(
      sample(text, 'wa_rotator_collect_errors_total{collector="groups_without_link",reason="error"}'),
    ).toBe(1);
    expect(sample(text, 'wa_rotator_collect_errors_total{collector="queue_depth",reason="error"}')).toBe(1);
  });

  it("rejects invalid callback values without breaking the text", async () => {
    const metrics = createMetrics({ collectDefault: false });
    metrics.registerGroupsWithoutLink(async () => Number.NaN);
    metrics.registerQueueDepth(async () => ({ waiting: 1 }) as never);
    const text = await metrics.text();
    expect(text).not.toMatch(/wa_rotator_groups_without_link NaN/);
    expect(text).not.toContain("wa_rotator_queue_jobs{");
    expect(sample(text, 'wa_rotator_collect_errors_total{collector="queue_depth",reason="invalid"}')).toBe(1);
  });

  it("answers within the timeout when a callback hangs, and does not stack calls", async () => {
    const metrics = createMetrics({ collectDefault: false, collectTimeoutMs: 100 });
    let calls = 0;
    metrics.registerQueueDepth(() => {
      calls++;
      return new Promise(() => {});
    });
    metrics.registerGroupsWithoutLink(async () => 7);

    const started = Date.now();
    const text = await metrics.text();
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(sample(text, "wa_rotator_groups_without_link")).toBe(7);
    await metrics.text();
    expect(calls).toBe(1);
    const later = await metrics.text();
    expect(sample(later, 'wa_rotator_collect_errors_total{collector="queue_depth",reason="timeout"}')).toBe(
      3,
    );
  });

  it("bounds a hanging callback by 1 s by default", async () => {
    const metrics = createMetrics({ collectDefault: false });
    metrics.registerGroupsWithoutLink(() => new Promise(() => {}));
    const started = Date.now();
    await metrics.text();
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(2_000);
  });
});
