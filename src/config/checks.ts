import { groupIdProblem } from "../core/group-id.js";
import { formatDuration, parseDuration } from "../core/durations.js";
import { isValidTimeZone, parseSchedule, shortestGap } from "./cron.js";
import { GAP_SHARE, maxJitterWindow } from "./jitter.js";
import type { IssuePath } from "../core/errors.js";
import { NAME } from "./policy-file.js";

/**
 * Checks of the policy file that look at more than one field: unique policy names, one policy
 * per group, known accounts, schedules in their zones, jitter against the gaps between fires, and
 * the group lists themselves (by hand, in linear time: a file can list 100,000 groups).
 *
 * They read the raw document defensively, so one run reports these issues even when the schema
 * found others; a field of the wrong type is left to the schema's issue.
 */

/** The group list of each policy, by index: ids as strings, "all", or undefined when invalid. */
export interface CheckedGroups {
  readonly groups: readonly (string[] | "all" | undefined)[];
}

export type AddIssue = (path: IssuePath, message: string) => void;

const DEFAULT_ACCOUNT = "default";
/** How many upcoming fires the jitter is compared against. */
const GAP_SAMPLE = 12;

type Raw = Record<string, unknown>;

export function checkPolicies(document: Raw, now: number, add: AddIssue): CheckedGroups {
  const accounts = knownAccounts(document, add);
  const policies = Array.isArray(document["policies"]) ? (document["policies"] as unknown[]) : [];
  const names = new Map<string, number>();
  const owners = new Map<string, { policy: number; index: number }>();
  const allByAccount = new Map<string, number>();
  const groups: (string[] | "all" | undefined)[] = [];

  policies.forEach((value, i) => {
    if (!isRecord(value)) {
      groups.push(undefined);
      return;
    }
    const name = typeof value["name"] === "string" ? value["name"] : undefined;
    if (name !== undefined && NAME.test(name)) {
      const first = names.get(name);
      if (first === undefined) names.set(name, i);
      else add(["policies", i, "name"], `duplicate policy name "${name}" (also policies[${first}].name)`);
    }

    const account = value["account"] === undefined ? DEFAULT_ACCOUNT : value["account"];
    const accountInfo = typeof account === "string" ? accounts.get(account) : undefined;
    if (typeof account === "string" && account !== "" && !accountInfo && accounts.size > 0) {
      add(["policies", i, "account"], unknownAccount(account, accounts, "accounts" in document));
    }

    checkSchedule(value, i, now, add);

    const rawGroups = value["groups"];
    if (rawGroups === "all") {
      groups.push("all");
      if (typeof account !== "string") return;
      if (accountInfo && !accountInfo.hasPhoneNumberId) {
        add(
          ["policies", i, "groups"],
          `groups: all needs phone_number_id on account ${account} (to list the groups of its phone number)`,
        );
      }
      const other = allByAccount.get(account);
      if (other === undefined) allByAccount.set(account, i);
      else
        add(
          ["policies", i, "groups"],
          `account ${account} already has a groups: all policy (policies[${other}])`,
        );
      return;
    }
    groups.push(Array.isArray(rawGroups) ? checkGroups(rawGroups, i, policies, owners, add) : undefined);
  });
  return { groups };
}

function checkSchedule(policy: Raw, i: number, now: number, add: AddIssue): void {
  const zone = policy["timezone"] === undefined ? "UTC" : policy["timezone"];
  let timezone = "UTC";
  if (typeof zone === "string" && zone !== "") {
    if (isValidTimeZone(zone)) timezone = zone;
    else
      add(["policies", i, "timezone"], `unknown time zone "${zone}": use an IANA name such as Europe/Berlin`);
  }
  const schedule = policy["schedule"];
  if (typeof schedule !== "string" || schedule.trim() === "") return;
  const parsed = parseSchedule(schedule, timezone);
  if (!parsed.ok) {
    add(["policies", i, "schedule"], parsed.message);
    return;
  }
  const jitter = typeof policy["jitter"] === "string" ? parseDuration(policy["jitter"]) : undefined;
  if (jitter === undefined || jitter === 0) return;
  const gap = shortestGap(schedule, timezone, now, GAP_SAMPLE);
  // The run time keeps the spread within 90% of the gap (jitter.ts); a jitter as long as the gap
  // or longer is a mistake, not something to clamp silently.
  if (gap !== undefined && jitter >= gap) {
    const most = `${formatDuration(maxJitterWindow(gap))} (${GAP_SHARE * 100}% of the gap, the most a fire spreads over)`;
    add(
      ["policies", i, "jitter"],
      `jitter ${policy["jitter"] as string} is not shorter than the shortest gap between fires of ` +
        `"${schedule}" (${formatDuration(gap)}): a fire would start before the previous one has ` +
        `spread out; use at most ${most}`,
    );
  }
}

function checkGroups(
  list: unknown[],
  i: number,
  policies: unknown[],
  owners: Map<string, { policy: number; index: number }>,
  add: AddIssue,
): string[] | undefined {
  if (list.length === 0) {
    add(["policies", i, "groups"], "list at least one group id, or write groups: all");
    return undefined;
  }
  const ids: string[] = [];
  let valid = true;
  list.forEach((item, j) => {
    const id = checkGroupId(item);
    if (typeof id !== "string") {
      add(["policies", i, "groups", j], id.error);
      valid = false;
      return;
    }
    const owner = owners.get(id);
    if (owner === undefined) {
      owners.set(id, { policy: i, index: j });
      ids.push(id);
    } else if (owner.policy === i) {
      add(["policies", i, "groups", j], `group ${id} is listed twice (also groups[${owner.index}])`);
    } else {
      const other = policies[owner.policy];
      const name = isRecord(other) && typeof other["name"] === "string" ? other["name"] : `#${owner.policy}`;
      add(
        ["policies", i, "groups", j],
        `group ${id} is already in policy ${name} (policies[${owner.policy}].groups[${owner.index}]); ` +
          "a group may belong to one policy only",
      );
    }
  });
  return valid ? ids : undefined;
}

/**
 * A group id as the policy file and `rotate` accept it, or what is wrong with it; integers YAML
 * read without quotes are kept only when exact.
 */
export function checkGroupId(item: unknown): string | { error: string } {
  if (typeof item === "number") {
    if (Number.isSafeInteger(item) && item >= 0) return String(item);
    if (Number.isInteger(item))
      return { error: "quote long group ids: YAML turns them into imprecise numbers" };
    return { error: `a group id is a string, got the number ${item}` };
  }
  if (typeof item !== "string")
    return { error: `a group id is a string, got ${item === null ? "null" : typeof item}` };
  const problem = groupIdProblem(item);
  return problem === undefined ? item : { error: problem };
}

function knownAccounts(document: Raw, add: AddIssue): Map<string, { hasPhoneNumberId: boolean }> {
  const accounts = new Map<string, { hasPhoneNumberId: boolean }>();
  const raw = document["accounts"];
  if (raw === undefined) {
    accounts.set(DEFAULT_ACCOUNT, { hasPhoneNumberId: false });
    return accounts;
  }
  if (!isRecord(raw)) return accounts;
  const names = Object.keys(raw);
  if (names.length === 0)
    add(["accounts"], "name at least one account, or leave accounts out to use default");
  for (const name of names) {
    if (!NAME.test(name)) {
      add(
        ["accounts", name],
        "an account name is 1 to 64 letters, digits, _ . - (starting with a letter or digit)",
      );
    }
    const account = raw[name];
    accounts.set(name, { hasPhoneNumberId: isRecord(account) && account["phone_number_id"] !== undefined });
  }
  return accounts;
}

function unknownAccount(name: string, accounts: Map<string, unknown>, declared: boolean): string {
  if (!declared) return `unknown account "${name}": without an accounts section the only account is default`;
  return `unknown account "${name}"; the file defines ${[...accounts.keys()].join(", ")}`;
}

function isRecord(value: unknown): value is Raw {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
