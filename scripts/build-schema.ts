import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { renderPolicyFileJsonSchema } from "../src/config/schema.js";

/**
 * `npm run schema`: writes config/rotation.schema.json from the policy file's zod schema.
 * `--check` writes nothing and exits 1 when the committed file is stale.
 */
// Runs as dist/scripts/build-schema.js.
const target = fileURLToPath(new URL("../../config/rotation.schema.json", import.meta.url));

const text = renderPolicyFileJsonSchema();
const current = await readFile(target, "utf8").catch(() => "");
if (process.argv.includes("--check")) {
  if (current !== text) {
    console.error(`${target} is stale: run npm run schema`);
    process.exit(1);
  }
  console.log(`${target} is up to date`);
} else if (current === text) {
  console.log(`${target} is up to date`);
} else {
  await writeFile(target, text);
  console.log(`wrote ${target}`);
}
