/**
 * Reads of a pool shared by the visits that wait for them, and never older than a visit: a visit
 * that arrives while a read of its pool is in flight does not join it (that read was sent before
 * the visit came, and could miss a rotation that began since); it waits for the next one, which is
 * sent as soon as the one in flight answers and serves every visit that arrived in between. So
 * under load a pool costs one Redis round trip at a time instead of one per visit, and each visit
 * still sees Redis as it was after the visit arrived.
 */
export type FreshReader<K, T> = (key: K) => Promise<T>;

interface Slot<T> {
  /** The read sent to Redis, until it answers. */
  sent?: Promise<T> | undefined;
  /** The next read, not sent yet: it goes once `sent` answers. */
  queued?: Promise<T> | undefined;
}

export function freshReads<K, T>(read: (key: K) => Promise<T>): FreshReader<K, T> {
  const slots = new Map<K, Slot<T>>();
  const send = (key: K, slot: Slot<T>): Promise<T> => {
    const reading = read(key);
    slot.sent = reading;
    const settled = () => {
      if (slot.sent === reading) slot.sent = undefined;
      if (slot.sent === undefined && slot.queued === undefined) slots.delete(key);
    };
    reading.then(settled, settled);
    return reading;
  };
  return (key) => {
    let slot = slots.get(key);
    if (slot === undefined) {
      slot = {};
      slots.set(key, slot);
    }
    if (slot.queued) return slot.queued;
    const inFlight = slot.sent;
    if (inFlight === undefined) return send(key, slot);
    const current = slot;
    const after = () => {
      current.queued = undefined;
      return send(key, current);
    };
    current.queued = inFlight.then(after, after);
    return current.queued;
  };
}
