/**
 * WhatsApp group webhook payloads as Meta documents them (Cloud API › Groups › Webhooks, and the
 * business-scoped user id changes of 2026 for `user_id`), with the placeholders filled in and the
 * samples' JSON slips fixed (trailing commas, a missing comma, `initiated_by` outside its object).
 */
const WABA = "102290129340398";
const METADATA = { display_phone_number: "15550783881", phone_number_id: "106540352242922" };

function delivery(field: string, groups: readonly Record<string, unknown>[]): Record<string, unknown> {
  return {
    object: "whatsapp_business_account",
    entry: [
      {
        id: WABA,
        changes: [{ value: { messaging_product: "whatsapp", metadata: METADATA, groups }, field }],
      },
    ],
  };
}

/** "User joined group using invite link succeed". */
export function joinedByInviteLink(
  groupId: string,
  waId: string,
  timestamp: number,
): Record<string, unknown> {
  return delivery("group_participants_update", [
    {
      timestamp: String(timestamp),
      group_id: groupId,
      type: "group_participants_add",
      reason: "invite_link",
      added_participants: [{ wa_id: waId }],
    },
  ]);
}

/** The same join after the business-scoped user id change: `user_id` and no `wa_id`. */
export function joinedByInviteLinkBsuid(
  groupId: string,
  userId: string,
  timestamp: number,
): Record<string, unknown> {
  return delivery("group_participants_update", [
    {
      timestamp,
      group_id: groupId,
      type: "group_participants_add",
      reason: "invite_link",
      added_participants: [{ user_id: userId, username: "someone" }],
    },
  ]);
}

/** "Join request approved": several participants in one change, each with `input` and `wa_id`. */
export function joinRequestsApproved(
  groupId: string,
  waIds: readonly string[],
  timestamp: number,
): Record<string, unknown> {
  return delivery("group_participants_update", [
    {
      timestamp,
      group_id: groupId,
      type: "group_participants_add",
      reason: "invite_link",
      added_participants: waIds.map((id) => ({ input: `+${id}`, wa_id: id })),
    },
  ]);
}

/** "Group participant leaves webhook". */
export function participantLeft(groupId: string, waId: string, timestamp: number): Record<string, unknown> {
  return delivery("group_participants_update", [
    {
      timestamp: String(timestamp),
      group_id: groupId,
      type: "group_participants_remove",
      removed_participants: [{ wa_id: waId }],
      initiated_by: "participant",
    },
  ]);
}

/** "Group participant remove succeed" (the business removed them; `input` names them). */
export function participantRemoved(
  groupId: string,
  input: string,
  timestamp: number,
): Record<string, unknown> {
  return delivery("group_participants_update", [
    {
      timestamp: String(timestamp),
      group_id: groupId,
      type: "group_participants_remove",
      request_id: "REQUEST_ID",
      removed_participants: [{ input }],
      initiated_by: "business",
    },
  ]);
}

/** "User accepts or cancels join request" (not a join: nobody entered the group). */
export function joinRequestCreated(
  groupId: string,
  waId: string,
  timestamp: number,
): Record<string, unknown> {
  return delivery("group_participants_update", [
    {
      timestamp: String(timestamp),
      group_id: groupId,
      type: "group_join_request_created",
      reason: "admin_approval",
      join_request_id: "JOIN_REQUEST_ID",
      wa_id: waId,
    },
  ]);
}

/** "Group suspended". */
export function groupSuspended(groupId: string, timestamp: number): Record<string, unknown> {
  return delivery("group_status_update", [
    { timestamp: String(timestamp), type: "group_suspend", group_id: groupId },
  ]);
}

/** "Group suspension cleared". */
export function groupSuspensionCleared(groupId: string, timestamp: number): Record<string, unknown> {
  return delivery("group_status_update", [
    { timestamp: String(timestamp), type: "group_suspend_cleared", group_id: groupId },
  ]);
}

/** "Delete group succeed". */
export function groupDeleted(groupId: string, timestamp: number): Record<string, unknown> {
  return delivery("group_lifecycle_update", [
    { timestamp: String(timestamp), group_id: groupId, type: "group_delete", request_id: "REQUEST_ID" },
  ]);
}

/** "Delete group fails" (the group is still there). */
export function groupDeleteFailed(groupId: string, timestamp: number): Record<string, unknown> {
  return delivery("group_lifecycle_update", [
    {
      timestamp: String(timestamp),
      group_id: groupId,
      type: "group_delete",
      request_id: "REQUEST_ID",
      errors: [
        {
          code: 131000,
          message: "ERROR_MESSAGE",
          title: "ERROR_TITLE",
          error_data: { details: "ERROR_DETAILS" },
        },
      ],
    },
  ]);
}

/** "Group settings update succeed": a field this project does not read. */
export function groupSettingsUpdated(groupId: string, timestamp: number): Record<string, unknown> {
  return delivery("group_settings_update", [
    {
      timestamp: String(timestamp),
      group_id: groupId,
      type: "group_settings_update",
      request_id: "REQUEST_ID",
      group_subject: { text: "Test Subject", update_successful: true },
    },
  ]);
}

/** The OpenAPI spec's singular spelling of the participants field. */
export function singularField(payload: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(
    JSON.stringify(payload).replace('"group_participants_update"', '"group_participant_update"'),
  ) as Record<string, unknown>;
}
