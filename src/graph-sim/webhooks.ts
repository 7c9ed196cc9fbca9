import { createHmac } from "node:crypto";
import type { SimState } from "./state.js";

/**
 * The simulator's side of WhatsApp's group webhooks: when its groups change — someone joins through
 * the current invite link, someone leaves, WhatsApp suspends a group or clears the suspension, a
 * group is deleted — it POSTs the delivery Meta would (the shapes of Meta's groups webhooks page),
 * signed with `X-Hub-Signature-256` over the raw body with the app secret, to a configured URL (the
 * gateway's `/webhooks/whatsapp`). So the demo and the tests run the whole loop.
 */
export interface SimWebhookTarget {
  /** Where deliveries go, e.g. `http://127.0.0.1:8090/webhooks/whatsapp`. */
  readonly url: string;
  /** The Meta app secret the gateway checks signatures with (WHATSAPP_APP_SECRET). */
  readonly appSecret: string;
}

/** A participant as webhooks name them: a phone number (`wa_id`) and/or a business-scoped id. */
export interface SimMember {
  readonly wa_id?: string;
  readonly user_id?: string;
}

/** What happened to a delivery: the target's HTTP status, or why none was sent. */
export type SimDelivery =
  { readonly status: number } | { readonly status: "not-sent"; readonly reason: string };

/** A group event the simulator refused (a join through a link that is not the current one). */
export class SimRefusal extends Error {}

export interface SimGroupEvents {
  /** Someone joins through `link`, which must be the group's current invite link. */
  join(groupId: string, link: string, member: SimMember): Promise<SimDelivery>;
  leave(groupId: string, member: SimMember): Promise<SimDelivery>;
  suspend(groupId: string): Promise<SimDelivery>;
  clearSuspension(groupId: string): Promise<SimDelivery>;
  deleteGroup(groupId: string): Promise<SimDelivery>;
  /** Sets (or, with undefined, removes) where deliveries go. */
  setTarget(target: SimWebhookTarget | undefined): void;
}

const WABA_ID = "102290129340398";

export function createSimGroupEvents(state: SimState, initial?: SimWebhookTarget): SimGroupEvents {
  let target = initial;
  const seconds = () => String(Math.floor(Date.now() / 1000));

  const deliver = async (
    field: string,
    groupId: string,
    item: Record<string, unknown>,
  ): Promise<SimDelivery> => {
    if (!target) return { status: "not-sent", reason: "no webhook URL configured" };
    const group = state.view(groupId);
    const body = JSON.stringify({
      object: "whatsapp_business_account",
      entry: [
        {
          id: WABA_ID,
          changes: [
            {
              value: {
                messaging_product: "whatsapp",
                metadata: {
                  display_phone_number: "15550783881",
                  phone_number_id: group?.phoneNumberId ?? "",
                },
                groups: [{ timestamp: seconds(), group_id: groupId, ...item }],
              },
              field,
            },
          ],
        },
      ],
    });
    const signature = `sha256=${createHmac("sha256", target.appSecret).update(body).digest("hex")}`;
    try {
      const res = await fetch(target.url, {
        method: "POST",
        body,
        headers: { "content-type": "application/json", "x-hub-signature-256": signature },
        signal: AbortSignal.timeout(5_000),
      });
      await res.arrayBuffer();
      return { status: res.status };
    } catch (error) {
      return { status: "not-sent", reason: error instanceof Error ? error.message : String(error) };
    }
  };

  const known = (groupId: string) => {
    if (!state.view(groupId)) throw new SimRefusal(`no such group ${groupId}`);
  };

  return {
    async join(groupId, link, member) {
      const group = state.view(groupId);
      if (!group) throw new SimRefusal(`no such group ${groupId}`);
      if (group.link === undefined || group.link !== link) {
        throw new SimRefusal("this invite link was reset or deleted: it no longer admits anyone");
      }
      const added = participant(member);
      state.setParticipants(groupId, group.participants + 1);
      return deliver("group_participants_update", groupId, {
        type: "group_participants_add",
        reason: "invite_link",
        added_participants: [added],
      });
    },
    async leave(groupId, member) {
      known(groupId);
      const removed = participant(member);
      state.setParticipants(groupId, state.view(groupId)!.participants - 1);
      return deliver("group_participants_update", groupId, {
        type: "group_participants_remove",
        removed_participants: [removed],
        initiated_by: "participant",
      });
    },
    async suspend(groupId) {
      known(groupId);
      return deliver("group_status_update", groupId, { type: "group_suspend" });
    },
    async clearSuspension(groupId) {
      known(groupId);
      return deliver("group_status_update", groupId, { type: "group_suspend_cleared" });
    },
    async deleteGroup(groupId) {
      known(groupId);
      return deliver("group_lifecycle_update", groupId, {
        type: "group_delete",
        request_id: `req-${groupId}`,
      });
    },
    setTarget(next) {
      target = next;
    },
  };
}

function participant(member: SimMember): Record<string, string> {
  if (member.wa_id === undefined && member.user_id === undefined)
    throw new SimRefusal("a member needs wa_id or user_id");
  return {
    ...(member.wa_id !== undefined && { wa_id: member.wa_id }),
    ...(member.user_id !== undefined && { user_id: member.user_id }),
  };
}
