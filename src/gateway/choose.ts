import type { GroupView } from "./link-store.js";

/**
 * Which group of a pool a visitor joins: one with a current link and room (fewer known
 * participants than `capacity`), the fewest participants first, round robin among equals.
 */
export type Choice =
  | { readonly kind: "group"; readonly groupId: string; readonly link: string }
  /** No group is servable now, but one with room is being rotated: worth a short wait. */
  | { readonly kind: "rotating" }
  /** Every group that has a link is full. */
  | { readonly kind: "full" }
  /** No group of the pool has a published link at all (or the pool is empty). */
  | { readonly kind: "no-link" };

/** `turn` picks among equals; pass a counter that grows by one per visit of the link. */
export function chooseGroup(views: readonly GroupView[], capacity: number, turn: number): Choice {
  let fewest = Number.POSITIVE_INFINITY;
  let best: GroupView[] = [];
  let rotatingWithRoom = false;
  let anyLink = false;
  for (const view of views) {
    const room = view.participants < capacity;
    if (view.rotating) {
      if (room) rotatingWithRoom = true;
      continue;
    }
    if (view.link === undefined) continue;
    anyLink = true;
    if (!room) continue;
    if (view.participants < fewest) {
      fewest = view.participants;
      best = [view];
    } else if (view.participants === fewest) best.push(view);
  }
  if (best.length > 0) {
    const chosen = best[turn % best.length]!;
    return { kind: "group", groupId: chosen.groupId, link: chosen.link! };
  }
  if (rotatingWithRoom) return { kind: "rotating" };
  return anyLink ? { kind: "full" } : { kind: "no-link" };
}
