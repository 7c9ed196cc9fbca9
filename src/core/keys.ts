/**
 * Every Redis key the project owns, in one place. All start with ROTATOR_PREFIX; the publish keys
 * (`C`, `C:latest`, `C:stream`) belong to the channel and are named by `channelKeys`.
 */
export interface Keys {
  readonly prefix: string;
  /** BullMQ queue name of rotation jobs (BullMQ adds `${prefix}:${queue}:...`). */
  readonly rotationQueue: string;
  /** Hash: the group's published state (sequence, last rotation, last message, failure). */
  group(groupId: string): string;
  /** Hash: one rotation's saga state (which steps are done, the created link, the message). */
  rotation(rotationId: string): string;
  /** String: the per-group mutual-exclusion lock, value = owner token. */
  groupLock(groupId: string): string;
  /**
   * Hash: per-account runtime state of the account gate. `account(name)`: `failing_*`,
   * `token_fingerprint` (a short sha256, never the token), `paused_until` (mirrored for `status`),
   * `rate` and `learned_limit` (mirrored from the number for `status`). A token's pauses live in `account("token:<fingerprint>")` (`paused_until`,
   * `throttle_level`, `probe_until`), a phone number's in `number(…).hash`. Set
   * `account("held:<account>")`: rotations held for a failing account. Account names cannot
   * contain `:`, so these never collide with an account's own hash.
   */
  account(account: string): string;
  /** A phone number's keys (by its id, or by the account for an account without phone_number_id). */
  number(of: { phoneNumberId: string } | { account: string }): NumberKeys;
  /**
   * Hash: per-policy scheduler state (schedule/policy-state.ts). `last_fire`: the newest fire
   * claimed (or recorded by a first start), which claims compare to; `claimed_fire`,
   * `claimed_trigger`, `claimed_at`, `claimed_by`: the newest claimed fire, how it was triggered,
   * when its holder last (re)claimed it and which replica holds it; `done_fire`: the newest fire
   * whose rotations are all enqueued; `missed_fire`: the newest fire counted as missed (catch-up
   * off or too old), so each is counted once across replicas and restarts (never in claims). A
   * hash written before `claimed_fire` existed has no unfinished fire.
   */
  policy(policy: string): string;
  /**
   * Set: the groups a `groups: all` policy's last fire listed (Graph's list of the number, less
   * other policies' groups), replaced at each fire. A join link's `policy:` pool reads it for the
   * groups whose newest message is a manual rotation's (`policy: null`).
   */
  policyGroups(policy: string): string;
  /** Set: every group id that has published state, for `status`. */
  readonly groupsIndex: string;
  /** Set: groups whose old link was deleted and whose new link is not yet published. */
  readonly withoutLinkIndex: string;
  /** Set: groups that are suspended or deleted: neither rotated nor offered by the gateway. */
  readonly groupsUnavailable: string;
  /** Set: groups WhatsApp suspended (a `group_suspend` webhook, not yet cleared). */
  readonly suspendedIndex: string;
  /** Set: groups WhatsApp deleted (a `group_delete` webhook). */
  readonly deletedIndex: string;
  /** Hash: a group's members seen through webhooks, member id → `+ts` (joined) or `-ts` (left). */
  groupMembers(groupId: string): string;
  /** Stream: verified WhatsApp webhook deliveries, each the raw body (consumer group below). */
  readonly webhookStream: string;
  /** Consumer group of `webhookStream` that applies deliveries to group state. */
  readonly webhookConsumerGroup: string;
  /** String: a delivery already recorded (by the SHA-256 of its body), so a redelivery is not. */
  webhookDelivery(digest: string): string;
  /**
   * Hash: group id → its known participant count (the gateway's choice of group). Written by the
   * worker's participant poll (absolute counts) and by the webhook consumer.
   */
  readonly groupParticipants: string;
  /**
   * String: the participant poll's claim on a group (SET NX PX the poll interval), so replicas read
   * each group's count from Graph once per interval between them.
   */
  participantsPoll(groupId: string): string;
  /** String: visits of one signed join URL so far (INCR), expiring with the URL. */
  linkVisits(slug: string, sig: string): string;
}

/** The account gate's state of one phone number, kept `NUMBER_KEEP_MS` after its last call. */
export interface NumberKeys {
  /**
   * Hash `account:number:<phone_number_id>` (`account:number-of:<account>` without one): its
   * pauses (`paused_until`, `throttle_level`, `probe_until`) and its adaptive rate
   * (accounts/rate-script.ts): `r_rate`, `r_wmax`, `r_k`, `r_cut` (ms), `r_ss` (1 slow start, 2
   * after idle), the line: `r_anchor`, `r_at` (ms), `r_next`, `r_tat` (ms), `r_ep` (cuts), `r_hw`
   * (ms: a place last kept by a delayed job); what got through: `r_meas`, `r_mbucket`, `r_mcount`
   * (asked), `r_ob`, `r_oc`, `r_op`, `r_om`, `r_cok`.
   */
  readonly hash: string;
  /**
   * Hash `<hash>:tickets`: group id → the place in line its delayed job keeps, `<kind>:<place>`
   * (`d` a DELETE, `c` a POST, `f` a POST first in line).
   */
  readonly tickets: string;
  /**
   * Hash `<hash>:credits`: group id → a POST's paid slot, `<kind>:<cut count>:<slot ms>` (`p` the
   * slot its DELETE paid for, `r` the one a refused POST was given); a cut re-times or voids them.
   */
  readonly credits: string;
}

/** `rotation(id)` (saga state) lives a week: long enough for any retry, short enough not to pile up. */
export const ROTATION_STATE_TTL_MS = 7 * 24 * 3600 * 1000;

/**
 * Once its message is published, a rotation's saga state is read only by a second delivery of
 * the same job (a worker that died before BullMQ recorded the job done: back within
 * lockDuration + stalledInterval, ~30 s). An hour covers that; past it the saga recognises the
 * rotation by the group's `last_rotation_id` (saga.ts). 100,000 rotations a day kept this hash
 * 7 days before: ~0.95 KB each, ~650 MB.
 */
export const PUBLISHED_ROTATION_TTL_MS = 3600 * 1000;

export function createKeys(prefix: string): Keys {
  return {
    prefix,
    rotationQueue: "rotations",
    group: (groupId) => `${prefix}:group:${groupId}`,
    rotation: (rotationId) => `${prefix}:rotation:${rotationId}`,
    groupLock: (groupId) => `${prefix}:lock:group:${groupId}`,
    account: (account) => `${prefix}:account:${account}`,
    number(of) {
      const hash =
        "phoneNumberId" in of
          ? `${prefix}:account:number:${of.phoneNumberId}`
          : `${prefix}:account:number-of:${of.account}`;
      return { hash, tickets: `${hash}:tickets`, credits: `${hash}:credits` };
    },
    policy: (policy) => `${prefix}:policy:${policy}`,
    // Policy names hold no ":", so this never names another policy's hash.
    policyGroups: (policy) => `${prefix}:policy:${policy}:groups`,
    groupsIndex: `${prefix}:groups`,
    withoutLinkIndex: `${prefix}:groups:without-link`,
    groupsUnavailable: `${prefix}:groups:unavailable`,
    suspendedIndex: `${prefix}:groups:suspended`,
    deletedIndex: `${prefix}:groups:deleted`,
    groupMembers: (groupId) => `${prefix}:members:${groupId}`,
    webhookStream: `${prefix}:webhooks:whatsapp`,
    webhookConsumerGroup: "group-events",
    webhookDelivery: (digest) => `${prefix}:webhooks:whatsapp:seen:${digest}`,
    groupParticipants: `${prefix}:groups:participants`,
    participantsPoll: (groupId) => `${prefix}:participants-poll:${groupId}`,
    linkVisits: (slug, sig) => `${prefix}:link-visits:${slug}:${sig}`,
  };
}

export interface ChannelKeys {
  readonly channel: string;
  readonly latest: string;
  readonly stream: string;
  /**
   * Hash (Redis Cluster only, under the channel's hash tag): group id → the lock owner of the
   * rotation allowed to publish. A rotation claims it right after taking the group's lock and
   * before any Graph call, so once a newer owner has claimed, a stalled older one can no longer
   * publish, and the newer one has not touched Graph before the older one is shut out. The claim is
   * also the rotation's check that the channel's slot is served: a channel the worker cannot
   * publish on fails the rotation before it deletes anything.
   */
  readonly fence: string;
}

export function channelKeys(channel: string): ChannelKeys {
  return { channel, latest: `${channel}:latest`, stream: `${channel}:stream`, fence: `${channel}:fence` };
}

export const DEFAULT_CHANNEL = "whatsapp:invite-links";

/**
 * A key's hash tag (Redis Cluster): the text between its first `{` and the next `}`, when that is
 * not empty. Keys with the same tag share a hash slot, so one transaction or script may hold them.
 */
export function hashTag(key: string): string | undefined {
  const open = key.indexOf("{");
  if (open < 0) return undefined;
  const close = key.indexOf("}", open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : undefined;
}
