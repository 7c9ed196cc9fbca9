import { DURATION_PATTERN } from "../core/durations.js";
import { z } from "zod";
import { policyFileSchema } from "./policy-file.js";

/**
 * The policy file's JSON Schema (`config/rotation.schema.json`), for editors: generated from the
 * zod schema the rotator itself validates with, then given a title, descriptions, and the checks
 * zod leaves to hand-written code (durations, group ids, account names) where JSON Schema can say
 * them. Cross-field checks (unique names and groups, known accounts, cron and zones) stay in
 * `config.ts` only: `validate` is the authority, the schema is editor help.
 *
 * `npm run schema` rewrites the file; test/schema.test.ts fails when the committed one drifts.
 */

export const SCHEMA_ID = "urn:wa-invite-rotator:policy-file";

type JsonSchema = Record<string, unknown>;

const DURATION: JsonSchema = {
  anyOf: [
    { type: "string", pattern: DURATION_PATTERN },
    { type: "integer", const: 0 },
  ],
};

/** Where (path through `properties`, `items`, `additionalProperties`) and what to add or replace. */
const EXTRAS: readonly [path: string, extra: JsonSchema][] = [
  ["$schema", { description: "This file's JSON Schema, for editor completion; ignored by the rotator." }],
  [
    "accounts",
    {
      description:
        "WhatsApp Cloud API accounts by name. Without this section there is one account, `default`, " +
        "whose token is WHATSAPP_ACCESS_TOKEN.",
      propertyNames: { type: "string", pattern: "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$" },
      minProperties: 1,
    },
  ],
  ["accounts.*", { description: "One account. Its token comes from the environment, never from this file." }],
  [
    "accounts.*.token_env",
    { description: "Name of the environment variable that holds the account's bearer token." },
  ],
  [
    "accounts.*.graph_api_version",
    { description: "Graph API version for this account, such as v23.0; default GRAPH_API_VERSION." },
  ],
  [
    "accounts.*.phone_number_id",
    {
      description: "The business phone number id; needed only for `groups: all`. Quote it.",
      type: undefined,
      anyOf: [
        { type: "string", pattern: "^\\d+$" },
        { type: "integer", minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
      ],
    },
  ],
  ["accounts.*.rate_limit", { description: "Graph requests per second this account may make." }],
  ["policies", { description: "The rotation policies. A group may belong to one policy only." }],
  ["policies[]", { description: "Which groups of which account rotate when, and where the links go." }],
  [
    "policies[].name",
    { description: "Unique name: 1 to 64 letters, digits, _ . - (starting with a letter or digit)." },
  ],
  ["policies[].account", { description: "The account to rotate with; default `default`." }],
  [
    "policies[].schedule",
    {
      description:
        "Cron schedule: 5 fields (minute hour day month weekday), or 6 with leading seconds. Quote it.",
    },
  ],
  [
    "policies[].timezone",
    { description: "IANA time zone the schedule is read in, such as Europe/Berlin; default UTC." },
  ],
  [
    "policies[].jitter",
    {
      description:
        "Spread the group starts of one fire over this window: 500ms, 30s, 15m, 2h, 1d, 1h30m or 0.",
      type: undefined,
      ...DURATION,
    },
  ],
  [
    "policies[].catch_up",
    {
      description:
        "After a restart, still run a fire missed by at most this long; 0 turns catch-up off. Default 1h.",
      type: undefined,
      ...DURATION,
    },
  ],
  [
    "policies[].channel",
    {
      description: "Redis channel C the new links are published on (and C:latest, C:stream).",
      default: "whatsapp:invite-links",
    },
  ],
  [
    "policies[].rotate_after_joins",
    {
      description:
        "Also rotate a group's link once this many people joined through it (read from WhatsApp's group webhooks on the gateway); trigger joins.",
    },
  ],
  [
    "policies[].groups",
    {
      description:
        'Group ids (quote long numeric ones), or "all": every group of the account\'s phone number.',
      anyOf: [
        { type: "string", const: "all" },
        {
          type: "array",
          minItems: 1,
          items: {
            anyOf: [
              // core/group-id.ts: printable ASCII without space, not `.` or `..`.
              { type: "string", pattern: "^(?!\\.{1,2}$)[\\x21-\\x7e]{1,256}$", maxLength: 256 },
              { type: "integer", minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
            ],
          },
        },
      ],
    },
  ],
  ["links", { description: "Stable join URLs (served by the gateway command) over pools of groups." }],
  ["links[]", { description: "One join URL, /join/{slug}: a pool named by groups or by policy." }],
  ["links[].slug", { description: "The URL's name: lowercase letters, digits and -, unique." }],
  [
    "links[].groups",
    {
      description: "The pool: group ids the project rotates (or name a policy instead).",
      items: {
        anyOf: [
          { type: "string", pattern: "^\\S+$", maxLength: 256 },
          { type: "integer", minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
        ],
      },
    },
  ],
  ["links[].policy", { description: "The pool: every group of this policy (instead of groups)." }],
  [
    "links[].capacity",
    {
      description: "Participants per group before it counts as full; default 8 (the Cloud API maximum).",
      default: 8,
    },
  ],
  [
    "links[].signed",
    { description: "Admit only URLs made by the link command (with exp and sig).", default: false },
  ],
  [
    "links[].participants_poll",
    {
      description:
        "How often workers read each pool group's participant count from Graph; 0 (default) never.",
      type: undefined,
      ...DURATION,
    },
  ],
];

/** The policy file's JSON Schema as an object. */
export function policyFileJsonSchema(): JsonSchema {
  const generated = z.toJSONSchema(policyFileSchema, { io: "input", target: "draft-2020-12" }) as JsonSchema;
  const { $schema, ...rest } = generated;
  const schema: JsonSchema = {
    $schema,
    $id: SCHEMA_ID,
    title: "wa-invite-rotator policy file",
    description:
      "Accounts and rotation policies of wa-invite-rotator (ROTATOR_CONFIG). Tokens never go in this " +
      "file. Run `wa-invite-rotator validate` for the checks a schema cannot express.",
    ...rest,
  };
  for (const [path, extra] of EXTRAS) {
    const node = nodeAt(schema, path);
    for (const [key, value] of Object.entries(extra)) {
      if (value === undefined) delete node[key];
      else node[key] = value;
    }
  }
  return schema;
}

/** The file's text: two-space JSON and a final newline. */
export function renderPolicyFileJsonSchema(): string {
  return `${JSON.stringify(policyFileJsonSchema(), null, 2)}\n`;
}

/** `a.*.b`, `a[].b`: `.` enters `properties`, `*` `additionalProperties`, `[]` `items`. */
function nodeAt(root: JsonSchema, path: string): JsonSchema {
  let node = root;
  for (const part of path.split(".")) {
    const [name, items] = part.endsWith("[]") ? [part.slice(0, -2), true] : [part, false];
    const next =
      name === "*"
        ? node.additionalProperties
        : (node.properties as Record<string, unknown> | undefined)?.[name];
    node = items ? ((next as JsonSchema | undefined)?.items as JsonSchema) : (next as JsonSchema);
    if (typeof node !== "object" || node === null) {
      throw new Error(
        `policy file schema has no node at ${path}: policy-file.ts changed; update src/schema.ts`,
      );
    }
  }
  return node;
}
