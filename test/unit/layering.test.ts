import { readdirSync } from "node:fs";
import { ESLint } from "eslint";
import { describe, expect, it } from "vitest";
import { ROOT } from "../helpers/cli.js";

/** The layering lint (eslint.config.js `LAYERS`) run on code as if it stood at `filePath`. */
const eslint = new ESLint({ cwd: ROOT });

async function wrongWay(filePath: string, specifier: string): Promise<string[]> {
  const code = `import { x } from "${specifier}";\nexport const y = x;\n`;
  const [result] = await eslint.lintText(code, { filePath: `${ROOT}/${filePath}` });
  return (result?.messages ?? []).filter((m) => m.ruleId === "no-restricted-imports").map((m) => m.message);
}

describe("layering lint", () => {
  it.each([
    ["src/core/keys.ts", "../infra/redis.js"],
    ["src/infra/redis.ts", "../graph/errors.js"],
    ["src/graph/client.ts", "../config/config.js"],
    ["src/config/check-graph.ts", "../commands/validate.js"],
    ["src/rotation/worker.ts", "../accounts/gate.js"],
    ["src/rotation/saga.ts", "../publish/publisher.js"],
    ["src/publish/publisher.ts", "../rotation/state.js"],
    ["src/accounts/gate.ts", "../schedule/fire.js"],
    ["src/schedule/fire.ts", "../ops/status.js"],
    ["src/ops/health.ts", "../app.js"],
    ["src/gateway/join.ts", "../rotation/queue.js"],
    ["src/groups/state.ts", "../accounts/gate.js"],
    ["src/rotation/saga.ts", "../groups/state.js"],
    ["src/graph-sim/state.ts", "../graph/response.js"],
    ["src/commands/rotate.ts", "../cli.js"],
    ["src/app.ts", "./commands/start.js"],
    ["src/index.ts", "./graph-sim/simulator.js"],
    ["src/gateway/qr/page.ts", "../../rotation/queue.js"],
  ])("%s may not import %s", async (file, specifier) => {
    expect(await wrongWay(file, specifier)).toEqual([expect.stringContaining("wrong-way import")]);
  });

  it.each([
    ["src/infra/redis.ts", "../core/errors.js"],
    ["src/rotation/worker.ts", "./saga.js"],
    ["src/rotation/worker.ts", "../config/config.js"],
    ["src/accounts/probe.ts", "../rotation/queue.js"],
    ["src/groups/joins.ts", "../rotation/queue.js"],
    ["src/gateway/choose.ts", "../groups/state.js"],
    ["src/gateway/join.ts", "../publish/message.js"],
    ["src/graph-sim/state.ts", "../core/invite-link.js"],
    ["src/commands/graph-sim.ts", "../graph-sim/simulator.js"],
    ["src/app.ts", "./schedule/fire.js"],
    ["src/testing.ts", "./graph-sim/simulator.js"],
  ])("%s may import %s", async (file, specifier) => {
    expect(await wrongWay(file, specifier)).toEqual([]);
  });

  it("has a rule for every folder and top-level file of src/", async () => {
    const entries = readdirSync(`${ROOT}/src`, { withFileTypes: true });
    const files = entries.map((e) => (e.isDirectory() ? `src/${e.name}/any.ts` : `src/${e.name}`));
    expect(files.length).toBeGreaterThan(10);
    for (const file of files) {
      const config = (await eslint.calculateConfigForFile(`${ROOT}/${file}`)) as {
        rules?: Record<string, unknown>;
      };
      expect(
        config.rules?.["no-restricted-imports"],
        `${file}: add its room to LAYERS in eslint.config.js`,
      ).toEqual(expect.arrayContaining([2]));
    }
  });
});
