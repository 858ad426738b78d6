// The in-memory view of the Raft log: entries after the last snapshot, with the position up to
// which they are known to be on disk (`stableIndex`). Invariant: snapshotIndex <= stableIndex
// <= lastIndex, and entries[i].index === snapshotIndex + 1 + i.
import { assert } from '../core/assert';
import type { Entry } from './messages';

export class RaftLog<P> {
  snapshotIndex = 0;
  snapshotTerm = 0;
  private entries: Entry<P>[] = [];
  /** Entries up to here are durable. */
  stableIndex = 0;

  get firstIndex(): number {
    return this.snapshotIndex + 1;
  }

  get lastIndex(): number {
    return this.snapshotIndex + this.entries.length;
  }

  get lastTerm(): number {
    return this.entries.length === 0 ? this.snapshotTerm : (this.entries[this.entries.length - 1] as Entry<P>).term;
  }

  /** The term of the entry at `index`, or undefined if it is compacted away or not there. */
  termAt(index: number): number | undefined {
    if (index === this.snapshotIndex) return this.snapshotTerm;
    if (index < this.snapshotIndex || index > this.lastIndex) return undefined;
    return (this.entries[index - this.snapshotIndex - 1] as Entry<P>).term;
  }

  entry(index: number): Entry<P> | undefined {
    if (index <= this.snapshotIndex || index > this.lastIndex) return undefined;
    return this.entries[index - this.snapshotIndex - 1];
  }

  /** Entries [from, to] inclusive, at most `max` of them. */
  slice(from: number, to: number, max = Infinity): Entry<P>[] {
    assert(from > this.snapshotIndex, `slice from ${from} is compacted (snapshot ${this.snapshotIndex})`);
    const end = Math.min(to, this.lastIndex, from + max - 1);
    if (end < from) return [];
    return this.entries.slice(from - this.snapshotIndex - 1, end - this.snapshotIndex);
  }

  append(entry: Entry<P>): void {
    assert(entry.index === this.lastIndex + 1, `append of ${entry.index} after ${this.lastIndex}`);
    assert(entry.term >= this.lastTerm, `append of term ${entry.term} after term ${this.lastTerm}`);
    this.entries.push(entry);
  }

  /** Drops every entry with index >= `from` (a conflict, §5.3). */
  truncateFrom(from: number): void {
    assert(from > this.snapshotIndex, `truncate at ${from} below the snapshot ${this.snapshotIndex}`);
    if (from > this.lastIndex) return;
    this.entries.length = from - this.snapshotIndex - 1;
    if (this.stableIndex >= from) this.stableIndex = from - 1;
  }

  /** Forgets entries up to `index` after a snapshot that covers them. */
  compact(index: number): void {
    const term = this.termAt(index);
    assert(term !== undefined, `compact at ${index} outside the log`);
    this.entries = this.entries.slice(index - this.snapshotIndex);
    this.snapshotIndex = index;
    this.snapshotTerm = term;
    if (this.stableIndex < index) this.stableIndex = index;
  }

  /** Replaces the whole log by a snapshot's position (a follower far behind). */
  restore(index: number, term: number): void {
    this.entries = [];
    this.snapshotIndex = index;
    this.snapshotTerm = term;
    this.stableIndex = index;
  }

  /** Entries not yet durable. */
  unstable(): Entry<P>[] {
    return this.stableIndex >= this.lastIndex ? [] : this.slice(this.stableIndex + 1, this.lastIndex);
  }
}
