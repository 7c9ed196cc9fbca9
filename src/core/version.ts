import { readFileSync } from "node:fs";

/** The package version, read once from package.json (three levels up from dist/src/core, two from src/core). */
function readVersion(): string {
  for (const rel of ["../../../package.json", "../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === "wa-invite-rotator" && pkg.version) return pkg.version;
    } catch {
      // try the next location
    }
  }
  return "0.0.0";
}

export const VERSION = readVersion();
export const USER_AGENT = `wa-invite-rotator/${VERSION} (node ${process.version})`;
