import js from "@eslint/js";
import tseslint from "typescript-eslint";

/**
 * The layering of src/: each folder (room) names the rooms it may import; imports point down only.
 * A room missing here has no rule, and test/unit/layering.test.ts fails: add new rooms here (and
 * to the README's folder list) when you create them.
 */
export const LAYERS = {
  core: [],
  infra: ["core"],
  graph: ["core", "infra"],
  config: ["core", "infra", "graph"],
  rotation: ["core", "infra", "graph", "config"],
  publish: ["core", "infra", "graph", "config"],
  groups: ["core", "infra", "graph", "config", "rotation", "publish"],
  accounts: ["core", "infra", "graph", "config", "groups", "rotation", "publish"],
  schedule: ["core", "infra", "graph", "config", "groups", "rotation", "publish", "accounts"],
  ops: ["core", "infra", "graph", "config", "groups", "rotation", "publish", "accounts", "schedule"],
  gateway: ["core", "infra", "config", "groups", "publish"],
  // The Graph simulator stands apart: only the graph-sim command, the testing entry, scripts,
  // bench and tests import it.
  "graph-sim": ["core"],
  commands: [
    "core",
    "infra",
    "graph",
    "config",
    "groups",
    "rotation",
    "publish",
    "accounts",
    "schedule",
    "ops",
  ].concat(["gateway", "graph-sim", "app"]),
};

/** The files at the top of src/, by the rooms they may import. */
const TOP = {
  // The composition root: wires every domain; commands and the simulator are above or apart.
  app: Object.keys(LAYERS).filter((room) => room !== "commands" && room !== "graph-sim"),
  // The library entry (`wa-invite-rotator`): what a subscriber needs.
  index: ["core", "publish"],
  // The testing entry (`wa-invite-rotator/testing`): the Graph simulator.
  testing: ["core", "graph-sim"],
  cli: ["core", "infra", "config", "commands"],
};

const ROOMS = [...Object.keys(LAYERS), ...Object.keys(TOP)];
const escape = (name) => name.replace(/\./g, "\\.");

/** An import specifier that reaches `room` (a folder or a top file) from `from`, the importer's depth. */
function reaching(rooms, from) {
  const up = from === "top" ? "\\./" : "(\\.\\./)+";
  const names = rooms.map(escape).join("|");
  return `^${up}(${names})(/|\\.js$)`;
}

function restrict(files, allowed, from) {
  const forbidden = ROOMS.filter((room) => !allowed.includes(room));
  return {
    files,
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              regex: reaching(forbidden, from),
              caseSensitive: true,
              message:
                "wrong-way import: see the layering in eslint.config.js (LAYERS) and the README's folder list",
            },
          ],
        },
      ],
    },
  };
}

const layering = [
  ...Object.entries(LAYERS).map(([room, allowed]) =>
    restrict([`src/${room}/**/*.ts`], [room, ...allowed], "room"),
  ),
  ...Object.entries(TOP).map(([file, allowed]) => restrict([`src/${file}.ts`], allowed, "top")),
];

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "coverage/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { process: "readonly", console: "readonly", setTimeout: "readonly", clearTimeout: "readonly" },
    },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-console": ["error", { allow: ["error", "warn"] }],
    },
  },
  ...layering,
  {
    files: ["test/**", "bench/**", "scripts/**"],
    rules: { "no-console": "off", "@typescript-eslint/no-non-null-assertion": "off" },
  },
);
