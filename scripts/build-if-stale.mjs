// `npm run demo` runs this first: it compiles only when a source file is newer than the build, so a
// demo started again right after a build starts at once.
import { execSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const SOURCES = ["src", "scripts", "config", "tsconfig.json", "package.json"];
const OUTPUTS = ["dist/src/cli.js", "dist/scripts/demo.js"];

function newest(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let latest = 0;
  for (const entry of readdirSync(path)) latest = Math.max(latest, newest(join(path, entry)));
  return latest;
}

const built = OUTPUTS.every((file) => existsSync(file));
const builtAt = built ? Math.min(...OUTPUTS.map((file) => statSync(file).mtimeMs)) : 0;
const changedAt = Math.max(...SOURCES.filter((path) => existsSync(path)).map(newest));
if (!built || changedAt > builtAt) {
  console.error("demo: the build is older than the sources; compiling (npm run build)");
  execSync("npm run build --silent", { stdio: "inherit" });
}
