import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Suites with npm scripts of their own (each starts its own servers); .ci/run runs them too.
    exclude: ["**/node_modules/**", "test/deployments/**"],
    globalSetup: ["test/helpers/global-setup.ts"],
    pool: "forks",
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests share one Redis but isolate keys by prefix; two cores, so keep it modest.
    maxWorkers: 2,
  },
});
