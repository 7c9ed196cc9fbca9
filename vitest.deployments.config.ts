import { defineConfig } from "vitest/config";

/**
 * `npm run test:deployments`: Redis Cluster and Sentinel, on servers each test starts on free
 * ports (redis-server, redis-cli --cluster create, redis-server --sentinel). Kept out of `npm test`
 * for time; .ci/run runs both.
 */
export default defineConfig({
  test: {
    include: ["test/deployments/**/*.test.ts"],
    globalSetup: ["test/helpers/global-setup.ts"],
    pool: "forks",
    testTimeout: 120_000,
    hookTimeout: 60_000,
    maxWorkers: 2,
  },
});
