import { expect } from "vitest";
import { cliSetup } from "../helpers/cli.js";
import { simTest } from "../helpers/fixture.js";
import { freePort } from "../../scripts/redis-server.js";
import { policyYaml, startTestRotator } from "../helpers/rotator.js";

/**
 * The `roles` a process reports (its start log line, `/healthz`) are the ones it runs, and its
 * `/metrics` carries the build, the state of each Redis connection and the policy-file reloads.
 */
const it = simTest();

it("reports worker, scheduler and health in /healthz when all three run", async ({ rig }) => {
  const { prefix, channel } = rig.prefix("roles-all");
  const port = await freePort();
  const app = await startTestRotator({
    graphUrl: rig.sim.url,
    prefix,
    yaml: policyYaml(["RO1"], channel),
    env: { HEALTH_PORT: String(port) },
    roles: { worker: true, scheduler: true, health: true },
  });
  rig.defer(() => app.stop());
  expect(app.roles).toEqual(["worker", "scheduler", "health"]);
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  expect(await res.json()).toEqual({ status: "ok", roles: ["worker", "scheduler", "health"] });
});

it("does not claim the health role with HEALTH_PORT=0", async ({ rig }) => {
  const { prefix, channel } = rig.prefix("roles-nohealth");
  const app = await startTestRotator({
    graphUrl: rig.sim.url,
    prefix,
    yaml: policyYaml(["RO2"], channel),
    env: { HEALTH_PORT: "0" },
    roles: { worker: true, scheduler: false, health: true },
  });
  rig.defer(() => app.stop());
  expect(app.roles).toEqual(["worker"]);
  expect(app.health()).toBeUndefined();
});

it("exports build_info and redis_connected per connection, 0 once the connection ends", async ({ rig }) => {
  const { prefix, channel } = rig.prefix("metrics-redis");
  const app = await startTestRotator({ graphUrl: rig.sim.url, prefix, yaml: policyYaml(["RO3"], channel) });
  let stopped = false;
  rig.defer(async () => (stopped ? undefined : app.stop()));
  const text = await app.metrics.text();
  expect(text).toMatch(/^wa_rotator_build_info\{version="\d+\.\d+\.\d+[^"]*",node="v\d+\.\d+\.\d+"\} 1$/m);
  expect(text).toMatch(/^wa_rotator_redis_connected\{connection="commands"\} 1$/m);
  expect(text).toMatch(/^wa_rotator_redis_connected\{connection="queue"\} 1$/m);
  // Unprefixed Node.js process metrics, as stock dashboards expect them.
  expect(text).toMatch(/^process_cpu_user_seconds_total /m);
  expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);

  await app.stop();
  stopped = true;
  // The scrape as a whole needs Redis; this gauge alone does not.
  const gauge = () => app.metrics.registry.getSingleMetricAsString("wa_rotator_redis_connected");
  await expect
    .poll(gauge, { timeout: 5_000 })
    .toMatch(/^wa_rotator_redis_connected\{connection="commands"\} 0$/m);
});

it("logs the roles it runs at start: worker alone with HEALTH_PORT=0", async ({ rig }) => {
  const proc = cliSetup(rig, "roles-log", ["RO4"]).spawn(["worker"]);
  await proc.waitFor('"service":"worker"');
  const start = proc.logged<{ roles: string[] }>("wa-invite-rotator starting");
  expect(start).toHaveLength(1);
  expect(start[0]!.roles).toEqual(["worker"]);
});
