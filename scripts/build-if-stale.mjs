// `npm run demo` runs this first: it compiles only when a source file is newer than the build, so a
// demo started again right after a build starts at once. Sources are what tsc compiles into the
// demo's outputs (the .ts files of src/ and scripts/) and the two files that decide how: an edited
// policy file (config/local.yaml), README or this script is no reason to compile.
import { execSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const SOURCE_DIRS = ["src", "scripts"];
const SOURCE_FILES = ["tsconfig.json", "package.json"];
const OUTPUTS = ["dist/src/cli.js", "dist/scripts/demo.js"];

/** The newest modification time of the .ts files under `dir`. */
function newestTs(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) latest = Math.max(latest, newestTs(path));
    else if (entry.name.endsWith(".ts")) latest = Math.max(latest, statSync(path).mtimeMs);
  }
  return latest;
}

const built = OUTPUTS.every((file) => existsSync(file));
const builtAt = built ? Math.min(...OUTPUTS.map((file) => statSync(file).mtimeMs)) : 0;
const changedAt = Math.max(
  0,
  ...SOURCE_DIRS.filter((dir) => existsSync(dir)).map(newestTs),
  ...SOURCE_FILES.filter((file) => existsSync(file)).map((file) => statSync(file).mtimeMs),
);
if (!built || changedAt > builtAt) {
  console.error("demo: the build is older than the sources; compiling (npm run build)");
  execSync("npm run build --silent", { stdio: "inherit" });
}
