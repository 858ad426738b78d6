// A binary min-heap of deadlines ordered by (at, seq). Entries are never removed early: when
// one pops, the state machine checks whether it is still current (lazy deletion), which keeps
// keepalives and releases O(1). `seq` makes the order total, so every replica pops the same
// entries in the same order.
import { assert } from '../core/assert';

export type DeadlineKind = 'session' | 'lease' | 'waiter';

export interface Deadline {
  at: number;
  seq: number;
  kind: DeadlineKind;
  /** client id (session, waiter) or lock name (lease). */
  key: string;
  /** The lock a waiter waits on. */
  lock: string;
  /** Which instance it belongs to: session serial, grant token, or waiter seq. */
  serial: number;
}

function before(a: Deadline, b: Deadline): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

export class DeadlineHeap {
  private readonly items: Deadline[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): Deadline | undefined {
    return this.items[0];
  }

  push(item: Deadline): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(items[i] as Deadline, items[parent] as Deadline)) break;
      [items[i], items[parent]] = [items[parent] as Deadline, items[i] as Deadline];
      i = parent;
    }
  }

  pop(): Deadline {
    const items = this.items;
    assert(items.length > 0, 'pop from an empty deadline heap');
    const top = items[0] as Deadline;
    const last = items.pop() as Deadline;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < items.length && before(items[l] as Deadline, items[m] as Deadline)) m = l;
        if (r < items.length && before(items[r] as Deadline, items[m] as Deadline)) m = r;
        if (m === i) break;
        [items[i], items[m]] = [items[m] as Deadline, items[i] as Deadline];
        i = m;
      }
    }
    return top;
  }

  /** Every entry, for snapshots and invariant checks (no particular order). */
  entries(): readonly Deadline[] {
    return this.items;
  }
}
