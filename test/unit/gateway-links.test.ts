import { describe, expect, it } from "vitest";
import { parseConfigText } from "../../src/config/config.js";
import { ConfigError } from "../../src/core/errors.js";
import { chooseGroup } from "../../src/gateway/choose.js";
import type { GroupView } from "../../src/gateway/link-store.js";
import { checkSignature, signedQuery } from "../../src/gateway/signed.js";

const POLICIES = `policies:
  - name: a
    schedule: "0 3 * * *"
    channel: "chan-a"
    groups: [G1, G2]
  - name: b
    schedule: "0 4 * * *"
    groups: [G3]
`;
const parse = (links: string) =>
  parseConfigText(`${POLICIES}links:\n${links}`, "links.yaml", {}, { graphApiVersion: "v23.0" });
const issues = (links: string): string[] => {
  try {
    parse(links);
  } catch (error) {
    if (error instanceof ConfigError) return error.issues.map((i) => `${i.path}: ${i.message}`);
    throw error;
  }
  return [];
};

describe("links: in the policy file", () => {
  it("resolves pools with their channels and the defaults", () => {
    const config = parse(
      `  - slug: spring\n    groups: [G1, G3]\n  - slug: all-a\n    policy: a\n    capacity: 5\n    signed: true\n    participants_poll: 10m\n`,
    );
    expect(config.links[0]).toMatchObject({
      slug: "spring",
      capacity: 8,
      signed: false,
      participantsPollMs: 0,
      members: [
        { groupId: "G1", channel: "chan-a" },
        { groupId: "G3", channel: "whatsapp:invite-links" },
      ],
    });
    expect(config.links[1]).toMatchObject({
      policy: "a",
      capacity: 5,
      signed: true,
      participantsPollMs: 600_000,
    });
    expect(config.links[1]!.members.map((m) => m.groupId)).toEqual(["G1", "G2"]);
  });

  it("names the path of every fault: slug form, duplicates, pool, unknown policy and keys", () => {
    const found = issues(
      [
        "  - slug: Spring",
        "    groups: [G1]",
        "  - slug: s",
        "    groups: [G1, G1]",
        "  - slug: s",
        "    policy: nope",
        "  - slug: t",
        "  - slug: u",
        "    groups: [G1]",
        "    policy: a",
        "    capacity: 0",
        "    color: red",
      ].join("\n"),
    );
    expect(found.join("\n")).toMatch(/links\[0\]\.slug: .*lowercase/);
    expect(found.join("\n")).toMatch(/links\[1\]\.groups\[1\]: group G1 is listed twice/);
    expect(found.join("\n")).toMatch(/links\[2\]\.slug: duplicate slug "s" \(also links\[1\]\.slug\)/);
    expect(found.join("\n")).toMatch(/links\[2\]\.policy: unknown policy "nope"/);
    expect(found.join("\n")).toMatch(/links\[3\]: name the pool with either groups .* or policy/);
    expect(found.join("\n")).toMatch(/links\[4\]: name the pool with either/);
    expect(found.join("\n")).toMatch(/links\[4\]\.capacity/);
    expect(found.join("\n")).toMatch(/links\[4\]\.color: unknown key "color"/);
  });
});

describe("chooseGroup", () => {
  const view = (groupId: string, participants: number, extra: Partial<GroupView> = {}): GroupView => ({
    groupId,
    link: `https://chat.whatsapp.com/${groupId}xxxxxxxxxx`,
    rotating: false,
    participants,
    ...extra,
  });

  it("takes the fewest participants, round robin among equals, never a full or rotating group", () => {
    const views = [view("A", 8), view("B", 3), view("C", 3), view("D", 1, { rotating: true })];
    const picks = [0, 1, 2, 3].map((turn) => chooseGroup(views, 8, turn));
    expect(picks.map((p) => (p.kind === "group" ? p.groupId : p.kind))).toEqual(["B", "C", "B", "C"]);
  });

  it("says why nothing can be chosen: rotating (wait), full, no link", () => {
    expect(chooseGroup([view("A", 8), view("B", 2, { rotating: true })], 8, 0).kind).toBe("rotating");
    expect(chooseGroup([view("A", 8), view("B", 9, { rotating: true })], 8, 0).kind).toBe("full");
    expect(chooseGroup([view("A", 0, { link: undefined })], 8, 0).kind).toBe("no-link");
    expect(chooseGroup([], 8, 0).kind).toBe("no-link");
  });
});

describe("signed join URLs", () => {
  const SECRET = "unit-test-link-secret-0123";
  const now = 1_800_000_000_000;
  const exp = now / 1000 + 60;
  const check = (query: string, slug = "spring", at = now) =>
    checkSignature(slug, new URLSearchParams(query), SECRET, at).kind;

  it("accepts its own signature until the expiry, then calls it expired", () => {
    const query = signedQuery({ slug: "spring", exp, uses: 50 }, SECRET);
    expect(query).toMatch(/^exp=\d+&uses=50&sig=[A-Za-z0-9_-]{43}$/);
    expect(check(query)).toBe("valid");
    expect(check(query, "spring", exp * 1000)).toBe("expired");
    expect(check("")).toBe("none");
  });

  it("refuses every change: slug, expiry, uses, signature, repeats, and no secret at all", () => {
    const query = signedQuery({ slug: "spring", exp, uses: 50 }, SECRET);
    expect(check(query, "summer")).toBe("bad");
    expect(check(query.replace(`exp=${exp}`, `exp=${exp + 1}`))).toBe("bad");
    expect(check(query.replace("uses=50&", ""))).toBe("bad");
    expect(check(query.replace("uses=50", "uses=500"))).toBe("bad");
    expect(check(`${query}&sig=x`)).toBe("bad");
    expect(check(`exp=${exp}`)).toBe("bad");
    expect(checkSignature("spring", new URLSearchParams(query), undefined, now).kind).toBe("bad");
  });
});
