import { isGraphError } from "../graph/errors.js";
import type { RotationJobData } from "../core/interfaces.js";
import type { Logger } from "../infra/logger.js";
import type { RotationStateStore } from "./state.js";

/**
 * What a rotation that failed for good leaves behind: its reason on the group (for `status`), the
 * rotation settled, and one error line that says whether the group was left without a link or with
 * an unpublished one. Also the wording and log fields every failure line of the worker shares.
 */

/** Records a rotation's final failure and logs it; a Redis error while recording is logged, not thrown. */
export async function recordFailure(
  { state: store, logger }: { readonly state: RotationStateStore; readonly logger: Logger },
  data: RotationJobData,
  code: string,
  reason: string,
  error: Error,
): Promise<void> {
  const state = await store.read(data.rotationId).catch(() => undefined);
  const group = await store.readGroup(data.groupId).catch(() => undefined);
  // Without a link after a confirmed DELETE, or after one Graph gave no clear answer to (it may
  // have been carried out: the group is marked so, see markUnsure).
  const unsureDelete = group?.graphOwner === data.rotationId && group.unsureUntil !== undefined;
  const withoutLink = state?.inviteLink === undefined && (state?.deletedAt !== undefined || unsureDelete);
  // POST succeeded but the publish did not: Graph holds a link no subscriber has, and the one
  // they have was deleted. The group stays in the without-link index, so the sweep re-drives it.
  const unpublished = state?.inviteLink !== undefined && state.message === undefined;
  await store
    .markFailed(data.groupId, { rotationId: data.rotationId, code, message: reason, at: Date.now() }, true)
    .catch((error: unknown) =>
      logger.error({ err: error, group: data.groupId }, "could not record a failure"),
    );
  const fields = {
    rotation: data.rotationId,
    group: data.groupId,
    account: data.account,
    policy: data.policy,
    code,
    ...graphFields(error),
  };
  if (withoutLink) {
    logger.error(
      { ...fields, withoutLink: true },
      `GROUP WITHOUT INVITE LINK: the old link was deleted but no new one was created; ${reason}`,
    );
  } else if (unpublished) {
    logger.error(
      { ...fields, withoutLink: true, unpublished: true },
      "UNPUBLISHED INVITE LINK: Graph created a new link but it was never published, so subscribers " +
        `hold only the deleted old link; the rotation is re-driven to publish it; ${reason}`,
    );
  } else {
    logger.error(fields, `rotation failed: ${reason}`);
  }
}

/** What Meta support asks for about a failed Graph call; absent fields are left out of the line. */
export function graphFields(error: Error) {
  if (!isGraphError(error)) return {};
  const { status: httpStatus, graphCode, subcode: graphSubcode, fbtraceId } = error;
  return { httpStatus, graphCode, graphSubcode, fbtraceId };
}

/** Failure reasons name the group once (Graph errors already do). */
export function withGroup(groupId: string, message: string): string {
  return message.includes(groupId) ? message : `group ${groupId}: ${message}`;
}
