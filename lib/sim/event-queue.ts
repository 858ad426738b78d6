// The simulator's one queue of future events, ordered by (time, insertion order). Insertion
// order breaks ties, so two events at the same simulated millisecond always run in the order
// they were scheduled: that, and a single seeded Prng per concern, is what makes a run
// reproducible byte for byte from its seed (TigerBeetle's VOPR works the same way).
import { assert } from '../core/assert';

export interface SimEvent {
  at: number;
  seq: number;
  /** A short label for the trace hash and verbose output. */
  tag: string;
  run: () => void;
}

/** A binary min-heap of events (no library: the sim must not depend on iteration quirks). */
export class EventQueue {
  private readonly heap: SimEvent[] = [];
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  push(at: number, tag: string, run: () => void): void {
    assert(Number.isFinite(at), `event ${tag} at a non-finite time`);
    const event: SimEvent = { at, seq: ++this.seq, tag, run };
    const heap = this.heap;
    heap.push(event);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(event, heap[parent] as SimEvent)) break;
      heap[i] = heap[parent] as SimEvent;
      i = parent;
    }
    heap[i] = event;
  }

  peekAt(): number | undefined {
    return this.heap[0]?.at;
  }

  pop(): SimEvent | undefined {
    const heap = this.heap;
    const top = heap[0];
    if (top === undefined) return undefined;
    const last = heap.pop() as SimEvent;
    if (heap.length > 0) {
      let i = 0;
      const n = heap.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const child = r < n && before(heap[r] as SimEvent, heap[l] as SimEvent) ? r : l;
        if (!before(heap[child] as SimEvent, last)) break;
        heap[i] = heap[child] as SimEvent;
        i = child;
      }
      heap[i] = last;
    }
    return top;
  }
}

function before(a: SimEvent, b: SimEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
