import { defineConfig } from "vitest/config";

/** `npm run test:browser`: tests in a real headless Chromium (Debian's `chromium` package). */
export default defineConfig({
  test: {
    include: ["test/browser/**/*.browser.ts"],
    globalSetup: ["test/helpers/global-setup.ts"],
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 1,
  },
});
