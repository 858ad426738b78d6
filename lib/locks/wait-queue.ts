// The FIFO queue of one lock's waiters (PROTOCOL §4: first come at the leader, first served).
// Removing a waiter that timed out is O(1): it is dropped from the index and skipped when it
// reaches the front; the array is compacted once the dead prefix is large.

export interface Waiter {
  client: string;
  /** Unique per enqueue, so a stale timeout for an earlier wait of the same client is ignored. */
  seq: number;
  enqueuedAt: number;
  /** Cluster time at which the wait times out, or null to wait forever. */
  deadline: number | null;
  leaseMs: number | undefined;
  /** request_ids of the acquires waiting on this one queue position. */
  reqs: string[];
}

export class WaitQueue {
  // A lock has a queue only while someone waits (state.ts, pushWaiter), so the queue itself
  // needs no lazy parts.
  private items: (Waiter | null)[] = [];
  private head = 0;
  private readonly byClient = new Map<string, Waiter>();

  get length(): number {
    return this.byClient.size;
  }

  get(client: string): Waiter | undefined {
    return this.byClient.get(client);
  }

  push(waiter: Waiter): void {
    this.items.push(waiter);
    this.byClient.set(waiter.client, waiter);
  }

  /** Removes and returns the first live waiter. */
  shift(): Waiter | undefined {
    const items = this.items;
    const byClient = this.byClient;
    while (this.head < items.length) {
      const waiter = items[this.head];
      items[this.head] = null;
      this.head++;
      if (waiter !== null && waiter !== undefined && byClient.get(waiter.client) === waiter) {
        byClient.delete(waiter.client);
        this.compact();
        return waiter;
      }
    }
    this.compact();
    return undefined;
  }

  remove(client: string): Waiter | undefined {
    const waiter = this.byClient.get(client);
    if (waiter === undefined) return undefined;
    this.byClient.delete(client);
    const at = this.items.indexOf(waiter, this.head);
    if (at >= 0) this.items[at] = null;
    this.compact();
    return waiter;
  }

  /** Live waiters in queue order. */
  toArray(): Waiter[] {
    const out: Waiter[] = [];
    const items = this.items;
    for (let i = this.head; i < items.length; i++) {
      const waiter = items[i];
      if (waiter !== null && waiter !== undefined && this.byClient.get(waiter.client) === waiter) out.push(waiter);
    }
    return out;
  }

  private compact(): void {
    if (this.byClient.size === 0) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 32 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}
