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
  /** Entries up to here have been handed out to be persisted (the write may still be in flight);
   *  they are not handed out again. */
  persistingIndex = 0;

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

  /**
   * Start-up: appends what was read back from disk, all at once (a restart may bring back a
   * million entries). Entries at or below lastIndex are skipped; the rest must continue the log
   * without gaps and without lowering the term. `entries` is copied, not kept.
   */
  load(entries: readonly Entry<P>[]): void {
    let from = 0;
    while (from < entries.length && (entries[from] as Entry<P>).index <= this.lastIndex) from++;
    let index = this.lastIndex;
    let term = this.lastTerm;
    for (let i = from; i < entries.length; i++) {
      const entry = entries[i] as Entry<P>;
      assert(entry.index === index + 1, 'loaded entries continue the log without a gap');
      assert(entry.term >= term, 'loaded entries do not lower the term');
      index = entry.index;
      term = entry.term;
    }
    this.entries = this.entries.concat(from === 0 ? entries : entries.slice(from));
  }

  /** Drops every entry with index >= `from` (a conflict, §5.3). */
  truncateFrom(from: number): void {
    assert(from > this.snapshotIndex, `truncate at ${from} below the snapshot ${this.snapshotIndex}`);
    if (from > this.lastIndex) return;
    this.entries.length = from - this.snapshotIndex - 1;
    if (this.stableIndex >= from) this.stableIndex = from - 1;
    if (this.persistingIndex >= from) this.persistingIndex = from - 1;
  }

  /** Forgets entries up to `index` after a snapshot that covers them. */
  compact(index: number): void {
    const term = this.termAt(index);
    assert(term !== undefined, `compact at ${index} outside the log`);
    this.entries = this.entries.slice(index - this.snapshotIndex);
    this.snapshotIndex = index;
    this.snapshotTerm = term;
    if (this.stableIndex < index) this.stableIndex = index;
    if (this.persistingIndex < index) this.persistingIndex = index;
  }

  /** Replaces the whole log by a snapshot's position (a follower far behind). */
  restore(index: number, term: number): void {
    this.entries = [];
    this.snapshotIndex = index;
    this.snapshotTerm = term;
    this.stableIndex = index;
    this.persistingIndex = index;
  }

  /** Entries not yet durable nor handed out to be persisted. */
  unstable(): Entry<P>[] {
    const from = Math.max(this.stableIndex, this.persistingIndex) + 1;
    return from > this.lastIndex ? [] : this.slice(from, this.lastIndex);
  }

  /** The last entry handed out for persisting: the caller's write of it is in flight. */
  markPersisting(index: number): void {
    if (index > this.persistingIndex) this.persistingIndex = index;
  }

  /** A write of `entries` finished: the prefix of them still in the log is durable. */
  markStable(entries: readonly Entry<P>[]): void {
    for (let i = entries.length - 1; i >= 0; i--) {
      const entry = entries[i] as Entry<P>;
      if (this.termAt(entry.index) === entry.term) {
        if (entry.index > this.stableIndex) this.stableIndex = entry.index;
        return;
      }
    }
  }
}
