import { createHash, randomBytes } from "node:crypto";
import { INVITE_LINK_PREFIX } from "../core/invite-link.js";

/**
 * The Graph simulator's world: accounts (known by token) and groups with their current invite
 * link. Tokens are never stored in anything the simulator shows; accounts are shown by name.
 */

/** An account the simulator knows, by token. */
export interface SimAccountOptions {
  /** Shown in the call log instead of the token. Default `token-<first 8 hex of sha256(token)>`. */
  name?: string;
  phoneNumberId?: string;
}

/** A group to create at start (or through `addGroup`). */
export interface SimGroupInput {
  id: string;
  subject?: string;
  /** The account (by token) that owns it; other tokens get 131041. */
  token?: string;
  /** The business number it belongs to (listed by GET /{v}/{phoneNumberId}/groups). */
  phoneNumberId?: string;
  /** `total_participant_count` at the start. Default 0. */
  participants?: number;
}

/** What `sim.group(id)` shows. */
export interface SimGroupView {
  id: string;
  subject?: string;
  phoneNumberId?: string;
  /** Name of the owning account, if any. */
  account?: string;
  /** The current invite link; undefined after a DELETE until the next POST. */
  link?: string;
  /** True once DELETE removed the link (false again after a POST). */
  deleted: boolean;
  /** Every link the group had, oldest first. */
  links: string[];
  createdAt: number;
  /** `total_participant_count`: joins and leaves (`groupEvents`) move it, `setParticipants` sets it. */
  participants: number;
}

export interface SimAccount {
  name: string;
  phoneNumberId?: string;
}

const LINK_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

export function randomInviteLink(): string {
  const bytes = randomBytes(22);
  let id = "";
  for (const byte of bytes) id += LINK_ALPHABET[byte % LINK_ALPHABET.length];
  return `${INVITE_LINK_PREFIX}${id}`;
}

/** A token-free stand-in for a token, stable across calls. */
export function tokenName(token: string): string {
  return `token-${createHash("sha256").update(token).digest("hex").slice(0, 8)}`;
}

export class SimState {
  private readonly accounts = new Map<string, SimAccount>();
  private readonly groups = new Map<string, SimGroupView>();
  /** No tokens configured: any non-empty bearer token is accepted. */
  readonly acceptAnyToken: boolean;

  constructor(
    tokens: Readonly<Record<string, SimAccountOptions>> | undefined,
    private readonly autoCreateGroups: boolean,
  ) {
    for (const [token, account] of Object.entries(tokens ?? {})) {
      const entry: SimAccount = { name: account.name ?? tokenName(token) };
      if (account.phoneNumberId !== undefined) entry.phoneNumberId = account.phoneNumberId;
      this.accounts.set(token, entry);
    }
    this.acceptAnyToken = this.accounts.size === 0;
  }

  /** The account of a bearer token, or undefined when the token is not accepted. */
  account(token: string | undefined): SimAccount | undefined {
    if (!token) return undefined;
    return this.accounts.get(token) ?? (this.acceptAnyToken ? { name: tokenName(token) } : undefined);
  }

  addGroup(input: SimGroupInput): SimGroupView {
    const owner = input.token === undefined ? undefined : this.account(input.token);
    const phoneNumberId = input.phoneNumberId ?? owner?.phoneNumberId;
    const link = randomInviteLink();
    const group: SimGroupView = {
      id: input.id,
      ...(input.subject !== undefined && { subject: input.subject }),
      ...(phoneNumberId !== undefined && { phoneNumberId }),
      ...(owner && { account: owner.name }),
      link,
      deleted: false,
      links: [link],
      createdAt: Date.now(),
      participants: Math.max(0, Math.floor(input.participants ?? 0)),
    };
    this.groups.set(input.id, group);
    return group;
  }

  /** A copy of a group's state, for inspection. */
  view(id: string): SimGroupView | undefined {
    const group = this.groups.get(id);
    return group && { ...group, links: [...group.links] };
  }

  allGroups(): SimGroupView[] {
    return [...this.groups.keys()].map((id) => this.view(id)!);
  }

  /**
   * The group as `account` may see it: undefined when unknown (and not auto-created) or owned by
   * someone else, which Graph answers with 131041.
   */
  groupFor(id: string, account: SimAccount): SimGroupView | undefined {
    let group = this.groups.get(id);
    if (!group && this.autoCreateGroups) {
      group = this.addGroup({
        id,
        subject: `Group ${id}`,
        ...(account.phoneNumberId && { phoneNumberId: account.phoneNumberId }),
      });
      if (this.accounts.size > 0) group.account = account.name;
    }
    if (!group) return undefined;
    if (group.account !== undefined && group.account !== account.name) return undefined;
    if (group.phoneNumberId && account.phoneNumberId && group.phoneNumberId !== account.phoneNumberId)
      return undefined;
    return group;
  }

  /** Sets a group's `total_participant_count`; false for an unknown group. */
  setParticipants(id: string, count: number): boolean {
    const group = this.groups.get(id);
    if (!group) return false;
    group.participants = Math.max(0, Math.floor(count));
    return true;
  }

  /** POST: a new link; every previous one stops working. */
  resetLink(group: SimGroupView): string {
    const link = randomInviteLink();
    group.link = link;
    group.deleted = false;
    group.links.push(link);
    return link;
  }

  /** DELETE: the group has no link until the next POST. Idempotent. */
  deleteLink(group: SimGroupView): void {
    delete group.link;
    group.deleted = true;
  }

  /** Groups of a business number, in creation order. */
  groupsOf(phoneNumberId: string): SimGroupView[] {
    return [...this.groups.values()].filter((g) => g.phoneNumberId === phoneNumberId);
  }
}
