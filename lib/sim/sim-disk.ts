// One node's disk in the simulation: exactly what the real shell (lib/io/node.ts) would have
// written, operation by operation, so a restart loads it as node.ts start() does.
//
// The real node writes through three independent queues, each running its operations one at a
// time in call order: the term/vote file and the snapshot file (writeFileAtomic chains writes to
// one path) and the log (DiskLog serializes truncate, append, reset and compact, and merges
// appends that queued up behind a running flush into one write + fsync: group commit). The three
// queues run concurrently, and every operation takes simulated time.
//
// A crash stops every queue: finished operations are durable, queued ones never happened, and
// the running one may be partly done the way the real files can be left: a torn append keeps a
// prefix of its (merged) batch, an interrupted truncate or reset leaves a prefix of the old log
// (DiskLog removes segments newest first), an interrupted compaction leaves a suffix; the
// atomic files are all or nothing. The log is kept as DiskLog keeps it (firstIndex..lastIndex,
// contiguous), and the checks DiskLog makes are made too: a write it would refuse fails the run.
import type { Command } from '../locks/commands';
import type { HardState } from '../raft/raft';
import type { Entry, Snapshot } from '../raft/messages';
import type { Prng } from '../core/prng';
import { SimFailure } from './failure';

export interface DiskImage {
  hardState: HardState;
  snapshot: Snapshot | null;
  entries: Entry<Command>[];
}

/** An entry as the log stores it: its command as bytes (JSON), exactly as node.ts writes it. */
export interface StoredEntry {
  index: number;
  term: number;
  json: string;
}

export type DiskOp =
  | { kind: 'hard_state'; hardState: HardState }
  | { kind: 'snapshot'; snapshot: Snapshot }
  | { kind: 'reset'; nextIndex: number }
  | { kind: 'truncate'; from: number }
  | { kind: 'append'; entries: StoredEntry[] }
  | { kind: 'compact'; through: number };

type Channel = 'hard_state' | 'snapshot' | 'log';

interface Queued {
  op: DiskOp;
  done: () => void;
}

export interface DiskHooks {
  schedule(delayMs: number, tag: string, run: () => void): void;
  /** How long the next operation takes. */
  durationMs(): number;
  /** An operation started and will take `durationMs` (the cluster may decide to crash midway). */
  onStart(durationMs: number): void;
}

export interface DiskOptions {
  /** Model DiskLog.reset as it is (a crash part-way leaves a prefix of the old log or an empty
   *  log at 1). When false, an interrupted reset did not happen at all. */
  tornReset: boolean;
}

function channelOf(op: DiskOp): Channel {
  return op.kind === 'hard_state' ? 'hard_state' : op.kind === 'snapshot' ? 'snapshot' : 'log';
}

export function storedEntries(entries: readonly Entry<Command>[]): StoredEntry[] {
  return entries.map((entry) => ({ index: entry.index, term: entry.term, json: JSON.stringify(entry.data) }));
}

export class SimDisk {
  // What is durable.
  private hardState: HardState = { term: 0, votedFor: null };
  private snapshot: Snapshot | null = null;
  /** The log as DiskLog holds it: entries firstIndex..firstIndex+length-1. */
  private firstIndex = 1;
  private entries: string[] = [];
  private entryTerms: number[] = [];
  // What is being written.
  private readonly queues = new Map<Channel, Queued[]>([['hard_state', []], ['snapshot', []], ['log', []]]);
  private readonly running = new Map<Channel, Queued[]>();
  /** Bumped by a crash: completions scheduled before it are void. */
  private epoch = 0;
  tornWrites = 0;

  constructor(private readonly nodeId: string, private readonly options: DiskOptions, private readonly hooks: DiskHooks) {}

  get lastIndex(): number {
    return this.firstIndex + this.entries.length - 1;
  }

  /** The index of the snapshot on disk (0 if none): what a restart would start from. */
  get snapshotIndex(): number {
    return this.snapshot?.index ?? 0;
  }

  get busy(): boolean {
    return this.running.size > 0;
  }

  /** Nothing running and nothing queued. */
  get idle(): boolean {
    if (this.running.size > 0) return false;
    for (const queue of this.queues.values()) if (queue.length > 0) return false;
    return true;
  }

  /** Queues an operation; `done` runs once it (and everything before it on its queue) is durable. */
  submit(op: DiskOp, done: () => void): void {
    const channel = channelOf(op);
    (this.queues.get(channel) as Queued[]).push({ op, done });
    if (!this.running.has(channel)) this.startNext(channel);
  }

  /** Runs `ops` one after the other (each issued when the previous is durable), then `done`. */
  sequence(ops: readonly DiskOp[], done: () => void): void {
    const next = (i: number): void => {
      const op = ops[i];
      if (op === undefined) done();
      else this.submit(op, () => next(i + 1));
    };
    next(0);
  }

  private startNext(channel: Channel): void {
    const queue = this.queues.get(channel) as Queued[];
    const head = queue.shift();
    if (head === undefined) return;
    const group = [head];
    // Group commit: appends waiting behind a running flush go out in one write + fsync.
    while (head.op.kind === 'append' && queue[0]?.op.kind === 'append') group.push(queue.shift() as Queued);
    this.running.set(channel, group);
    const ms = this.hooks.durationMs();
    const epoch = this.epoch;
    this.hooks.onStart(ms);
    this.hooks.schedule(ms, `disk ${this.nodeId} ${head.op.kind}`, () => {
      if (epoch !== this.epoch) return;
      this.running.delete(channel);
      for (const item of group) this.applyOp(item.op);
      for (const item of group) item.done();
      // A `done` may have submitted (and so started) the next operation already.
      if (!this.running.has(channel)) this.startNext(channel);
    });
  }

  /** The process died: what was running may be partly done, what was queued never happened. */
  crash(prng: Prng): void {
    this.epoch++;
    for (const [channel, group] of this.running) {
      if (prng.chance(0.5)) continue; // nothing of it reached the disk
      if (channel === 'log' && group.length > 0 && (group[0] as Queued).op.kind === 'append') {
        const all = group.flatMap((item) => (item.op as { entries: StoredEntry[] }).entries);
        this.applyPartial({ kind: 'append', entries: all }, prng);
      } else {
        this.applyPartial((group[0] as Queued).op, prng);
      }
    }
    this.running.clear();
    for (const queue of this.queues.values()) queue.length = 0;
  }

  private applyPartial(op: DiskOp, prng: Prng): void {
    switch (op.kind) {
      case 'append': {
        // A torn tail: a prefix of the batch made it (the CRC cuts the rest on open).
        const keep = prng.int(0, op.entries.length - 1);
        if (keep > 0) {
          this.tornWrites++;
          this.applyOp({ kind: 'append', entries: op.entries.slice(0, keep) });
        }
        return;
      }
      case 'truncate': {
        // Segments go newest first: a prefix of the old log is left, at least through from-1.
        if (op.from > this.lastIndex || op.from < this.firstIndex) return;
        this.tornWrites++;
        this.cutAfter(prng.int(op.from - 1, this.lastIndex));
        return;
      }
      case 'reset': {
        if (!this.options.tornReset) return;
        // DiskLog.reset removes segments newest first, then creates the new one: a prefix of the
        // old log is left, or (all removed, the new one not yet created) an empty log at 1.
        this.tornWrites++;
        const keep = prng.int(0, this.entries.length);
        if (keep === 0) {
          this.firstIndex = 1;
          this.entries = [];
          this.entryTerms = [];
        } else {
          this.cutAfter(this.firstIndex + keep - 1);
        }
        return;
      }
      case 'compact': {
        // Oldest segments first: part of the prefix is gone.
        const through = Math.min(op.through, this.lastIndex - 1);
        if (through < this.firstIndex) return;
        this.dropThrough(prng.int(this.firstIndex, through));
        return;
      }
      case 'hard_state':
      case 'snapshot':
        return; // atomic (write temp, fsync, rename): the old file is still there
      default: {
        const never: never = op;
        throw new Error(`unknown disk op ${JSON.stringify(never)}`);
      }
    }
  }

  private applyOp(op: DiskOp): void {
    switch (op.kind) {
      case 'hard_state':
        this.hardState = { ...op.hardState };
        return;
      case 'snapshot':
        this.snapshot = { ...op.snapshot };
        return;
      case 'reset':
        this.firstIndex = op.nextIndex;
        this.entries = [];
        this.entryTerms = [];
        return;
      case 'truncate':
        if (op.from > this.lastIndex) return;
        if (op.from < this.firstIndex) this.refuse(`truncateSuffix(${op.from}) below the first index ${this.firstIndex}: compacted entries are committed and never conflict`);
        this.cutAfter(op.from - 1);
        return;
      case 'append': {
        const first = op.entries[0];
        if (first === undefined) return;
        if (first.index !== this.lastIndex + 1) this.refuse(`append of ${first.index} does not continue the log at ${this.lastIndex} (first ${this.firstIndex})`);
        for (const entry of op.entries) {
          const lastTerm = this.entryTerms[this.entryTerms.length - 1];
          if (lastTerm !== undefined && entry.term < lastTerm) this.refuse(`append of term ${entry.term} at ${entry.index} after term ${lastTerm}`);
          this.entries.push(entry.json);
          this.entryTerms.push(entry.term);
        }
        return;
      }
      case 'compact':
        // DiskLog.compactPrefix never removes the segment holding lastIndex.
        this.dropThrough(Math.min(op.through, this.lastIndex - 1));
        return;
      default: {
        const never: never = op;
        throw new Error(`unknown disk op ${JSON.stringify(never)}`);
      }
    }
  }

  private cutAfter(lastKept: number): void {
    const keep = Math.max(0, lastKept - this.firstIndex + 1);
    this.entries.length = Math.min(this.entries.length, keep);
    this.entryTerms.length = this.entries.length;
  }

  private dropThrough(through: number): void {
    const drop = through - this.firstIndex + 1;
    if (drop <= 0) return;
    this.entries = this.entries.slice(drop);
    this.entryTerms = this.entryTerms.slice(drop);
    this.firstIndex += drop;
  }

  private refuse(message: string): never {
    // The real DiskLog refuses this write; node.ts then stops serving for good.
    throw new SimFailure('crash', `disk of ${this.nodeId}: the log would refuse: ${message}`);
  }

  /** What node.ts start() reads back: term/vote, snapshot, and the log after the snapshot. */
  load(): DiskImage {
    const snapshot = this.snapshot === null ? null : { ...this.snapshot };
    // As node.ts start() does: a crash between writing the snapshot and resetting the log left a
    // log that ends before the snapshot; finish the reset.
    if (snapshot !== null) {
      const at = snapshot.index - this.firstIndex;
      const follows = this.lastIndex >= snapshot.index
        && (this.firstIndex === snapshot.index + 1 || (at >= 0 && this.entryTerms[at] === snapshot.term));
      if (!follows) this.applyOp({ kind: 'reset', nextIndex: snapshot.index + 1 });
    }
    const from = Math.max(this.firstIndex, (snapshot?.index ?? 0) + 1);
    const entries: Entry<Command>[] = [];
    for (let index = from; index <= this.lastIndex; index++) {
      const offset = index - this.firstIndex;
      entries.push({ index, term: this.entryTerms[offset] as number, data: JSON.parse(this.entries[offset] as string) as Command | null });
    }
    return { hardState: { ...this.hardState }, snapshot, entries };
  }

  describe(): string {
    return `term=${this.hardState.term} vote=${this.hardState.votedFor ?? '-'} snap=${this.snapshot?.index ?? 0}/${this.snapshot?.term ?? 0} log=${this.firstIndex}..${this.lastIndex}`;
  }
}
