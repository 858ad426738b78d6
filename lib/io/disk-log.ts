// The write-ahead log of Raft entries (DESIGN §7): append-only segment files in one directory.
//
//   <dir>/00000000000000000001.seg   entries 1..k      (the name is the index of its first entry)
//   <dir>/0000000000000000000k+1.seg entries k+1..     (the last segment is the one written to)
//
// Each segment is a run of records, little-endian:
//
//   +-----------+-----------+----------+----------+---------------+
//   | u32 body  | u32 crc32 | u64      | u64      | payload       |
//   | bytes     | of body   | index    | term     | (opaque)      |
//   +-----------+-----------+----------+----------+---------------+
//                           '------------- body ------------------'
//
// A crash can leave the tail of the last write torn: a short header, a short body, a body whose
// crc does not match, or stale bytes that parse but are not the next index. open() finds the
// first record that is not the expected next one, cuts the file there and removes every later
// segment, so a torn record is never handed to Raft. Everything before the cut was covered by an
// fsync that completed, or was never acknowledged.
//
// Durability: every mutation is serialized through one queue. An append is one writev on a
// handle opened O_DSYNC: durable when it returns, like write + fdatasync, in one trip through
// the thread pool instead of two. In 'batch' mode, appends that queue up behind a running flush
// are merged into the next single durable write (group commit). Creating or removing a segment
// fsyncs the directory, because the file's own fsync does not cover its name.
//
// Preallocation: with fsync on, the last segment is kept ahead of the appends with zeros,
// written (not fallocated: ext4 would convert unwritten extents on each append, a metadata
// commit again) in the background, in steps that grow from 64 KiB to 4 MiB. An append that only
// overwrites bytes the file already has changes no metadata, so its durable write skips the
// journal commit: on the development machine that cut the median latency of a small durable
// append by about a quarter. A zero header is where the records end;
// open() cuts the zeros off the last segment (they are made again) so that nothing a torn write
// left behind them can ever be read as a record. Appends never write into a range that is being
// zeroed (they wait for it), and every operation that replaces or cuts the file waits for the
// zeroing first.
import { constants as fsConstants, promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { AssertionError, assert } from '../core/assert';
import { fsyncDirectory, makeDirectoryDurable } from './atomic-file';
import { crc32 } from './crc32';

export type FsyncMode = 'always' | 'batch' | 'never';

export interface LogEntry {
  index: number;
  term: number;
  /** The encoded command: opaque bytes to the log. */
  data: Buffer;
}

export interface DiskLogOptions {
  /**
   * 'always' and 'batch' both make every append durable before it resolves; 'batch' also merges
   * appends that queued up behind a running flush into one write + fsync. 'never' skips every
   * fsync (tests and benchmarks only: a crash can lose acknowledged entries).
   */
  fsync: FsyncMode;
  /** A segment is closed once it reaches this size; the batch that crosses it still goes in
   *  whole, so a segment can exceed it by one batch. Default 64 MiB. */
  segmentBytesMax?: number;
  /** Called when open() cuts a torn tail, e.g. `(event, fields) => logger.warn(event, fields)`. */
  onWarn?: (event: string, fields: Record<string, unknown>) => void;
  /** Start-up replay in the pass that open() makes anyway (see OpenReplay). */
  replay?: OpenReplay;
}

/**
 * Start-up replay done by open() itself. open() reads and checks every record to find a torn
 * tail; handing the entries over in that same pass saves reading and checking a million records
 * a second time. onEntry is called in index order for every entry with index >= from that open()
 * keeps: a cut only ever removes records after the first bad one, and none of those is handed
 * over. The payload is bytes[start, end), a view into the read buffer that is valid only during
 * the call (decode it or copy it).
 */
export interface OpenReplay {
  from: number;
  onEntry: (index: number, term: number, bytes: Buffer, start: number, end: number) => void;
}

const fsyncModes: readonly FsyncMode[] = ['always', 'batch', 'never'];
export const segmentBytesMaxDefault = 64 * 1024 * 1024;
const recordHeaderBytes = 8;
const entryHeaderBytes = 16;
/** One entry is one command, bounded by a frame; a length past this bound is a torn header. */
export const recordBodyBytesMax = 16 * 1024 * 1024;
/** Every checkpointStride-th record's offset is kept, so a seek scans at most that many. */
const checkpointStride = 128;
const readChunkBytes = 1024 * 1024;
/** Bounds on one merged group commit (the first append of a group is always taken whole). */
const appendsPerGroupMax = 1024;
const groupBytesMax = 16 * 1024 * 1024;
const segmentNameDigits = 20;
const segmentNamePattern = /^\d{20}\.seg$/;
/** Preallocation steps: the first is small (a short-lived log writes little), each next one
 *  twice the last, up to the largest. A step starts when less than half a step is left. */
const preallocateBytesFirst = 64 * 1024;
const preallocateBytesMax = 4 * 1024 * 1024;
const zeroBytes = 1024 * 1024;
let zeros: Buffer | null = null;

assert(recordBodyBytesMax <= 0xffffffff, 'a body length fits its u32 field');
assert(groupBytesMax >= recordBodyBytesMax, 'a group can hold the largest record');

interface Segment {
  /** Index of its first record, and its file name. */
  baseIndex: number;
  /** baseIndex - 1 while empty. Invariant: lastIndex >= baseIndex - 1. */
  lastIndex: number;
  /** Term of lastIndex; for an empty segment, the term before it (0 if unknown). */
  lastTerm: number;
  sizeBytes: number;
  /** checkpointsBytes[k] is the offset of record baseIndex + k * checkpointStride. */
  checkpointsBytes: number[];
}

interface EncodedBatch {
  records: Buffer;
  count: number;
  firstIndex: number;
  firstTerm: number;
  lastIndex: number;
  lastTerm: number;
}

interface Pending {
  resolve: () => void;
  reject: (error: unknown) => void;
}
type AppendOp = Pending & { kind: 'append'; batch: EncodedBatch };
/** `mutates`: a failure part-way leaves the files in an unknown state (see DiskLog.failure). */
type TaskOp = Pending & { kind: 'task'; name: string; mutates: boolean; run: () => Promise<void> };
type Op = AppendOp | TaskOp;

export class DiskLog {
  private readonly queue: Op[] = [];
  private draining = false;
  private closed = false;
  /** The first I/O error of a mutation. The disk state is then unknown (a failed fsync may have
   *  dropped dirty pages), so every later call fails with it and the node must restart. */
  private failure: unknown = null;
  /** Bytes of the last segment's file: its records, then the zeros made ahead of them. */
  private tailFileBytes: number;
  /** The zeroing running now, and where it starts (appends must stay below it). */
  private preallocation: Promise<void> | null = null;
  private preallocationFrom = Infinity;
  private preallocateBytesNext = preallocateBytesFirst;
  /** Set when zeroing failed once: it is only a speed-up, the log goes on without it. */
  private preallocationOff = false;

  private constructor(
    private readonly dir: string,
    private readonly fsync: FsyncMode,
    private readonly segmentBytesMax: number,
    /** Oldest first; never empty. The last one is the one appended to. */
    private readonly segments: Segment[],
    /** Open for writing on the last segment. */
    private handle: FileHandle,
  ) {
    // open() cut any zeros off the last segment: the file ends at its last record.
    this.tailFileBytes = this.tail.sizeBytes;
  }

  /** Opens (creating if needed) the log in `dir`, cutting a torn tail left by a crash, and
   *  hands its entries to options.replay if given. */
  static async open(dir: string, options: DiskLogOptions): Promise<DiskLog> {
    assert(fsyncModes.includes(options.fsync), `fsync must be one of ${fsyncModes.join(', ')}`);
    assert(options.replay === undefined || Number.isSafeInteger(options.replay.from), 'replay from is an integer');
    const segmentBytesMax = options.segmentBytesMax ?? segmentBytesMaxDefault;
    assert(Number.isSafeInteger(segmentBytesMax), 'segmentBytesMax is an integer');
    assert(segmentBytesMax > 0, 'segmentBytesMax is positive');
    const sync = options.fsync !== 'never';
    await makeDirectoryDurable(dir);
    const segments = await loadSegments(dir, sync, options.onWarn ?? (() => undefined), options.replay ?? null);
    if (segments.length === 0) {
      await createSegmentFile(dir, 1, sync).then((created) => created.close());
      segments.push(emptySegment(1, 0));
    }
    const handle = await fs.open(segmentPath(dir, segments[segments.length - 1].baseIndex), writeFlags(sync));
    return new DiskLog(dir, options.fsync, segmentBytesMax, segments, handle);
  }

  /** Index of the first stored entry: 1 for a new log, later after compactPrefix or reset. */
  get firstIndex(): number {
    return this.segments[0].baseIndex;
  }

  /** Index of the last durable entry (an append still in flight is not counted yet);
   *  firstIndex - 1 (0 for a new log) when empty. */
  get lastIndex(): number {
    return this.tail.lastIndex;
  }

  /**
   * Reads entries [from, to] in order from disk, calling onEntry for each (start-up replay and
   * follower catch-up). `to` defaults to lastIndex. Each entry's data is its own copy. Runs in
   * the same queue as appends, so keep catch-up reads bounded with `to`.
   */
  replay(from: number, onEntry: (entry: LogEntry) => void, to?: number): Promise<void> {
    return this.enqueueTask('replay', false, () => this.replayNow(from, onEntry, to ?? this.lastIndex));
  }

  /**
   * Appends entries (contiguous with lastIndex, terms not decreasing) with one write, durable
   * when written (O_DSYNC) unless fsync is 'never'; resolves once they are durable. Calls run
   * in call order.
   */
  append(entries: LogEntry[]): Promise<void> {
    let batch: EncodedBatch;
    try {
      // Encoding here, at call time, overlaps it with the flush that may be running.
      batch = encodeBatch(entries);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => this.enqueue({ kind: 'append', batch, resolve, reject }));
  }

  /** Raft conflict truncation (paper §5.3): durably removes every entry with index >= fromIndex. */
  truncateSuffix(fromIndex: number): Promise<void> {
    return this.enqueueTask('truncateSuffix', true, () => this.truncateSuffixNow(fromIndex));
  }

  /**
   * Log compaction after a durable snapshot (paper §7): deletes whole segments whose entries are
   * all <= throughIndex, oldest first, but never the segment holding lastIndex.
   */
  compactPrefix(throughIndex: number): Promise<void> {
    return this.enqueueTask('compactPrefix', true, () => this.compactPrefixNow(throughIndex));
  }

  /**
   * Discards the whole log so that the next append starts at nextIndex: for a follower that
   * installs a snapshot past its log (paper §7, "discard the entire log"). A crash part-way can
   * leave a prefix of the old log or an empty log at 1; the caller then resets again, since
   * lastIndex is below the snapshot.
   */
  reset(nextIndex: number): Promise<void> {
    return this.enqueueTask('reset', true, () => this.resetNow(nextIndex));
  }

  /** Waits for queued work, then closes the file. Later calls fail; a second close is a no-op. */
  close(): Promise<void> {
    return this.enqueueTask('close', false, async () => {
      if (this.closed) return;
      this.closed = true;
      await this.preallocationSettled();
      await this.handle.close();
    });
  }

  private get tail(): Segment {
    return this.segments[this.segments.length - 1];
  }

  private get sync(): boolean {
    return this.fsync !== 'never';
  }

  // --- The queue: one operation on the files at a time, in call order. ---

  private enqueueTask(name: string, mutates: boolean, run: () => Promise<void>): Promise<void> {
    return new Promise((resolve, reject) => this.enqueue({ kind: 'task', name, mutates, run, resolve, reject }));
  }

  private enqueue(op: Op): void {
    this.queue.push(op);
    if (!this.draining) void this.drain();
  }

  // runAppends and runTask settle every op and never throw, so the loop always empties the queue.
  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (this.queue.length > 0) {
        const op = this.queue.shift()!;
        if (op.kind === 'append') {
          await this.runAppends(this.takeAppendGroup(op));
        } else {
          await this.runTask(op);
        }
      }
    } finally {
      this.draining = false;
    }
  }

  /** In 'batch' and 'never' mode, appends queued behind `first` join its write and fsync. */
  private takeAppendGroup(first: AppendOp): AppendOp[] {
    const group = [first];
    if (this.fsync === 'always') return group;
    let groupBytes = first.batch.records.length;
    while (group.length < appendsPerGroupMax && this.queue.length > 0) {
      const next = this.queue[0];
      if (next.kind !== 'append') break;
      if (groupBytes + next.batch.records.length > groupBytesMax) break;
      groupBytes += next.batch.records.length;
      group.push(next);
      this.queue.shift();
    }
    return group;
  }

  private async runTask(op: TaskOp): Promise<void> {
    // close() still runs after a failure, to release the file handle.
    if (op.name !== 'close') {
      const refusal = this.refusal(op.name);
      if (refusal !== null) return op.reject(refusal);
    }
    try {
      await op.run();
      op.resolve();
    } catch (error) {
      // An AssertionError is thrown by the checks that run before any file is touched.
      if (op.mutates && !(error instanceof AssertionError)) this.failure ??= error;
      op.reject(error);
    }
  }

  private refusal(name: string): unknown {
    if (this.failure !== null) return this.failure;
    if (this.closed) return new AssertionError(`DiskLog.${name} after close`);
    return null;
  }

  /** Checks each append against the tail as it will be once the earlier ones are written; a
   *  misfit is rejected alone and never reaches the disk. The rest share one write + fsync. */
  private async runAppends(group: AppendOp[]): Promise<void> {
    const accepted: AppendOp[] = [];
    let lastIndex = this.lastIndex;
    let lastTerm = this.tail.lastTerm;
    for (const op of group) {
      const refusal = this.refusal('append') ?? appendMisfit(op.batch, lastIndex, lastTerm);
      if (refusal !== null) {
        op.reject(refusal);
        continue;
      }
      accepted.push(op);
      if (op.batch.count > 0) {
        lastIndex = op.batch.lastIndex;
        lastTerm = op.batch.lastTerm;
      }
    }
    try {
      await this.writeBatches(accepted.map((op) => op.batch));
    } catch (error) {
      this.failure ??= error;
      for (const op of accepted) op.reject(error);
      return;
    }
    for (const op of accepted) op.resolve();
  }

  private async writeBatches(batches: EncodedBatch[]): Promise<void> {
    const buffers = batches.filter((batch) => batch.count > 0).map((batch) => batch.records);
    if (buffers.length === 0) return;
    if (this.tail.lastIndex >= this.tail.baseIndex && this.tail.sizeBytes >= this.segmentBytesMax) {
      await this.rotate();
    }
    const segment = this.tail;
    let writeEndBytes = segment.sizeBytes;
    for (const buffer of buffers) writeEndBytes += buffer.length;
    if (writeEndBytes > this.preallocationFrom) await this.preallocationSettled();
    // With fsync on, the handle is O_DSYNC: the write returns once its data (and the size that
    // finds it) is on the disk, like write + fdatasync but one trip through the thread pool.
    await writeAll(this.handle, buffers, segment.sizeBytes);
    // The in-memory tail moves only once the bytes are durable, so a reader never sees more.
    for (const batch of batches) {
      if (batch.count > 0) addBatch(segment, batch);
    }
    this.tailFileBytes = Math.max(this.tailFileBytes, segment.sizeBytes);
    this.preallocate();
  }

  /** Starts zeroing the next step of the last segment if the appends are getting close to the
   *  end of what is zeroed (see "Preallocation" above). Never past segmentBytesMax. */
  private preallocate(): void {
    if (!this.sync || this.preallocation !== null || this.preallocationOff) return;
    const from = this.tailFileBytes;
    const ahead = from - this.tail.sizeBytes;
    if (ahead >= this.preallocateBytesNext / 2 || from >= this.segmentBytesMax) return;
    const bytes = Math.min(this.preallocateBytesNext, this.segmentBytesMax - from);
    this.preallocateBytesNext = Math.min(preallocateBytesMax, this.preallocateBytesNext * 2);
    this.preallocationFrom = from;
    this.preallocation = writeZeros(this.handle, from, bytes)
      .then(() => {
        this.tailFileBytes = Math.max(this.tailFileBytes, from + bytes);
      }, () => {
        this.preallocationOff = true;
      })
      .finally(() => {
        this.preallocation = null;
        this.preallocationFrom = Infinity;
      });
  }

  /** Waits for a running zeroing; the operations that close, cut or replace the file call it. */
  private async preallocationSettled(): Promise<void> {
    if (this.preallocation !== null) await this.preallocation;
  }

  /** Starts a new segment at lastIndex + 1. The old one is already durable (or 'never'). */
  private async rotate(): Promise<void> {
    await this.preallocationSettled();
    const previous = this.tail;
    const handle = await createSegmentFile(this.dir, previous.lastIndex + 1, this.sync);
    await this.handle.close();
    this.handle = handle;
    this.tailFileBytes = 0;
    this.segments.push(emptySegment(previous.lastIndex + 1, previous.lastTerm));
  }

  // --- Tasks, run one at a time by the queue. ---

  private async replayNow(from: number, onEntry: (entry: LogEntry) => void, to: number): Promise<void> {
    assert(Number.isSafeInteger(from), 'replay from is an integer');
    assert(Number.isSafeInteger(to), 'replay to is an integer');
    assert(from >= this.firstIndex, `replay from ${from} is not compacted (first ${this.firstIndex})`);
    assert(to <= this.lastIndex, `replay to ${to} is stored (last ${this.lastIndex})`);
    for (const segment of this.segments) {
      const through = Math.min(to, segment.lastIndex);
      if (through < from) continue;
      if (segment.baseIndex > to) break;
      const start = seekPoint(segment, Math.max(from, segment.baseIndex));
      const end = await withReadHandle(this.dir, segment, (handle) =>
        scanRecords(handle, start.offsetBytes, start.index, 0, (record) => {
          if (record.index >= from) {
            const data = Buffer.from(record.chunk.subarray(record.dataStart, record.dataEnd));
            onEntry({ index: record.index, term: record.term, data });
          }
          return record.index < through;
        }),
      );
      if (end.lastIndex < through) throw damaged(segment, end);
    }
  }

  private async truncateSuffixNow(fromIndex: number): Promise<void> {
    assert(Number.isSafeInteger(fromIndex), 'truncateSuffix fromIndex is an integer');
    if (fromIndex > this.lastIndex) return;
    assert(fromIndex >= this.firstIndex, 'compacted entries are committed and never conflict');
    const position = this.segments.findIndex((segment) => fromIndex <= segment.lastIndex);
    const segment = this.segments[position];
    assert(segment.baseIndex <= fromIndex, 'segments are contiguous');
    await this.preallocationSettled();
    const cut = await this.locate(position, fromIndex);
    const removing = this.segments.length - 1 > position;
    if (removing) {
      await this.handle.close();
      // Newest first: a crash part-way leaves a contiguous prefix of the old log.
      while (this.segments.length - 1 > position) {
        await fs.unlink(segmentPath(this.dir, this.tail.baseIndex));
        this.segments.pop();
      }
      this.handle = await fs.open(segmentPath(this.dir, segment.baseIndex), writeFlags(this.sync));
    }
    await this.handle.truncate(cut.offsetBytes);
    if (this.sync) await this.handle.sync();
    if (this.sync && removing) await fsyncDirectory(this.dir);
    segment.lastIndex = fromIndex - 1;
    segment.lastTerm = cut.previousTerm;
    segment.sizeBytes = cut.offsetBytes;
    this.tailFileBytes = cut.offsetBytes;
    segment.checkpointsBytes.length = Math.ceil((fromIndex - segment.baseIndex) / checkpointStride);
  }

  /** Finds where record `index` starts in segments[position], and the term of index - 1. */
  private async locate(position: number, index: number): Promise<{ offsetBytes: number; previousTerm: number }> {
    const segment = this.segments[position];
    let previousTerm = position > 0 ? this.segments[position - 1].lastTerm : 0;
    let offsetBytes = -1;
    const start = seekPoint(segment, Math.max(index - 1, segment.baseIndex));
    const end = await withReadHandle(this.dir, segment, (handle) =>
      scanRecords(handle, start.offsetBytes, start.index, 0, (record) => {
        if (record.index === index - 1) previousTerm = record.term;
        if (record.index === index) offsetBytes = record.offsetBytes;
        return record.index < index;
      }),
    );
    if (offsetBytes < 0) throw damaged(segment, end);
    return { offsetBytes, previousTerm };
  }

  private async compactPrefixNow(throughIndex: number): Promise<void> {
    assert(Number.isSafeInteger(throughIndex), 'compactPrefix throughIndex is an integer');
    let removed = 0;
    // Oldest first: a crash part-way leaves a contiguous suffix of the old log.
    while (this.segments.length > 1) {
      const oldest = this.segments[0];
      if (oldest.lastIndex > throughIndex || oldest.lastIndex >= this.lastIndex) break;
      await fs.unlink(segmentPath(this.dir, oldest.baseIndex));
      this.segments.shift();
      removed += 1;
    }
    if (this.sync && removed > 0) await fsyncDirectory(this.dir);
  }

  private async resetNow(nextIndex: number): Promise<void> {
    assert(Number.isSafeInteger(nextIndex), 'reset nextIndex is an integer');
    assert(nextIndex >= 1, 'reset nextIndex is at least 1');
    await this.preallocationSettled();
    await this.handle.close();
    // Newest first, as in truncateSuffix: every intermediate state is a prefix of the old log.
    while (this.segments.length > 0) {
      await fs.unlink(segmentPath(this.dir, this.tail.baseIndex));
      this.segments.pop();
    }
    this.handle = await createSegmentFile(this.dir, nextIndex, this.sync);
    this.tailFileBytes = 0;
    this.segments.push(emptySegment(nextIndex, 0));
  }
}

// --- Records: encoding (append) and scanning (open, replay, truncate). ---

function encodeBatch(entries: readonly LogEntry[]): EncodedBatch {
  let totalBytes = 0;
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    assert(Number.isSafeInteger(entry.index), 'entry index is an integer');
    assert(entry.index >= 1, 'entry index is at least 1');
    assert(Number.isSafeInteger(entry.term), 'entry term is an integer');
    assert(entry.term >= 0, 'entry term is not negative');
    assert(entry.data instanceof Uint8Array, 'entry data is bytes');
    assert(entryHeaderBytes + entry.data.length <= recordBodyBytesMax, 'entry fits recordBodyBytesMax');
    if (i > 0) {
      assert(entry.index === entries[i - 1].index + 1, 'batch indexes are contiguous');
      assert(entry.term >= entries[i - 1].term, 'batch terms do not decrease');
    }
    totalBytes += recordHeaderBytes + entryHeaderBytes + entry.data.length;
  }
  const records = Buffer.allocUnsafe(totalBytes);
  let at = 0;
  for (const entry of entries) {
    const bodyBytes = entryHeaderBytes + entry.data.length;
    const bodyStart = at + recordHeaderBytes;
    records.writeUInt32LE(bodyBytes, at);
    writeU64(records, bodyStart, entry.index);
    writeU64(records, bodyStart + 8, entry.term);
    records.set(entry.data, bodyStart + entryHeaderBytes);
    records.writeUInt32LE(crc32(records, bodyStart, bodyStart + bodyBytes), at + 4);
    at = bodyStart + bodyBytes;
  }
  assert(at === totalBytes, 'batch filled exactly');
  const count = entries.length;
  return {
    records,
    count,
    firstIndex: count > 0 ? entries[0].index : 0,
    firstTerm: count > 0 ? entries[0].term : 0,
    lastIndex: count > 0 ? entries[count - 1].index : 0,
    lastTerm: count > 0 ? entries[count - 1].term : 0,
  };
}

function appendMisfit(batch: EncodedBatch, lastIndex: number, lastTerm: number): AssertionError | null {
  if (batch.count === 0) return null;
  if (batch.firstIndex !== lastIndex + 1) {
    return new AssertionError(`append at ${batch.firstIndex} is not contiguous with last index ${lastIndex}`);
  }
  if (batch.firstTerm < lastTerm) {
    return new AssertionError(`append term ${batch.firstTerm} is below last term ${lastTerm}`);
  }
  return null;
}

/** Records the batch just written at the end of `segment`: checkpoints, size and tail. */
function addBatch(segment: Segment, batch: EncodedBatch): void {
  assert(batch.firstIndex === segment.lastIndex + 1, 'batch continues the segment');
  let at = 0;
  for (let index = batch.firstIndex; index <= batch.lastIndex; index++) {
    if ((index - segment.baseIndex) % checkpointStride === 0) segment.checkpointsBytes.push(segment.sizeBytes + at);
    at += recordHeaderBytes + batch.records.readUInt32LE(at);
  }
  assert(at === batch.records.length, 'batch walked exactly');
  segment.sizeBytes += at;
  segment.lastIndex = batch.lastIndex;
  segment.lastTerm = batch.lastTerm;
}

// A u64 is written as two u32 halves: indexes and terms are safe integers (< 2^53), and this
// avoids a BigInt per field.
function writeU64(buffer: Buffer, at: number, value: number): void {
  buffer.writeUInt32LE(value % 0x100000000, at);
  buffer.writeUInt32LE(Math.floor(value / 0x100000000), at + 4);
}

function readU64(buffer: Buffer, at: number): number {
  return buffer.readUInt32LE(at) + buffer.readUInt32LE(at + 4) * 0x100000000;
}

/** One record as the scan sees it. The scan hands the same object to every call of its visitor,
 *  refilled, so a visitor copies out what it keeps. */
interface RecordView {
  index: number;
  term: number;
  offsetBytes: number;
  /** The payload is chunk[dataStart, dataEnd); chunk is reused after the visitor returns. */
  chunk: Buffer;
  dataStart: number;
  dataEnd: number;
}

type ScanStop =
  | 'end'
  /** Zeros where the next header would be: the preallocated rest of the file. */
  | 'preallocated'
  | 'visitor'
  | 'short_header'
  | 'short_body'
  | 'bad_length'
  | 'crc_mismatch'
  | 'index_gap'
  | 'term_regression';

interface ScanEnd {
  stop: ScanStop;
  /** Offset just past the last good record: where a torn tail is cut. */
  endBytes: number;
  lastIndex: number;
  lastTerm: number;
}

/**
 * Reads records from offset startBytes, expecting index firstIndex next and no term below
 * previousTerm, and calls visit for each good one until it returns false. Stops at the end of the
 * file or at the first record that is not good, and says which. Reads in bounded chunks, so a
 * 64 MiB segment is never held in memory whole. A start-up scan visits a million records: the
 * loop awaits only when the chunk runs out and allocates nothing per record.
 */
async function scanRecords(
  handle: FileHandle,
  startBytes: number,
  firstIndex: number,
  previousTerm: number,
  visit: (record: RecordView) => boolean,
): Promise<ScanEnd> {
  let chunk = Buffer.allocUnsafe(readChunkBytes);
  let chunkStartBytes = startBytes; // File offset of chunk[0].
  let filled = 0;
  let at = 0;
  let index = firstIndex;
  let term = previousTerm;
  const stop = (why: ScanStop): ScanEnd => ({
    stop: why,
    endBytes: chunkStartBytes + at,
    lastIndex: index - 1,
    lastTerm: term,
  });
  // Makes chunk[at, at + bytes) valid if the file has that much; false at the end of the file.
  const need = async (bytes: number): Promise<boolean> => {
    if (filled - at >= bytes) return true;
    chunk.copyWithin(0, at, filled);
    chunkStartBytes += at;
    filled -= at;
    at = 0;
    if (bytes > chunk.length) {
      // One record larger than a chunk (bounded by recordBodyBytesMax): grow to fit it.
      const larger = Buffer.allocUnsafe(bytes);
      chunk.copy(larger, 0, 0, filled);
      chunk = larger;
    }
    while (filled < bytes) {
      const { bytesRead } = await handle.read(chunk, filled, chunk.length - filled, chunkStartBytes + filled);
      if (bytesRead === 0) return false;
      filled += bytesRead;
    }
    return true;
  };
  const record: RecordView = { index: 0, term: 0, offsetBytes: 0, chunk, dataStart: 0, dataEnd: 0 };
  for (;;) {
    if (filled - at < recordHeaderBytes && !(await need(recordHeaderBytes))) {
      return stop(filled === at ? 'end' : 'short_header');
    }
    const bodyBytes = chunk.readUInt32LE(at);
    if (bodyBytes === 0 && chunk.readUInt32LE(at + 4) === 0) return stop('preallocated');
    if (bodyBytes < entryHeaderBytes || bodyBytes > recordBodyBytesMax) return stop('bad_length');
    if (filled - at < recordHeaderBytes + bodyBytes && !(await need(recordHeaderBytes + bodyBytes))) return stop('short_body');
    const bodyStart = at + recordHeaderBytes;
    const bodyEnd = bodyStart + bodyBytes;
    if (crc32(chunk, bodyStart, bodyEnd) !== chunk.readUInt32LE(at + 4)) return stop('crc_mismatch');
    const recordIndex = readU64(chunk, bodyStart);
    const recordTerm = readU64(chunk, bodyStart + 8);
    if (recordIndex !== index) return stop('index_gap');
    if (recordTerm < term) return stop('term_regression');
    record.index = index;
    record.term = recordTerm;
    record.offsetBytes = chunkStartBytes + at;
    record.chunk = chunk;
    record.dataStart = bodyStart + entryHeaderBytes;
    record.dataEnd = bodyEnd;
    at = bodyEnd;
    index += 1;
    term = recordTerm;
    if (!visit(record)) return stop('visitor');
  }
}

// --- Segment files. ---

function segmentName(baseIndex: number): string {
  return `${String(baseIndex).padStart(segmentNameDigits, '0')}.seg`;
}

function segmentPath(dir: string, baseIndex: number): string {
  return path.join(dir, segmentName(baseIndex));
}

function emptySegment(baseIndex: number, previousTerm: number): Segment {
  return { baseIndex, lastIndex: baseIndex - 1, lastTerm: previousTerm, sizeBytes: 0, checkpointsBytes: [] };
}

/** The checkpoint at or before `index` in `segment`: where a scan for it starts. */
function seekPoint(segment: Segment, index: number): { index: number; offsetBytes: number } {
  assert(index >= segment.baseIndex, 'seek inside the segment');
  assert(index <= segment.lastIndex, 'seek to a stored entry');
  const k = Math.floor((index - segment.baseIndex) / checkpointStride);
  assert(k < segment.checkpointsBytes.length, 'a checkpoint covers every stored entry');
  return { index: segment.baseIndex + k * checkpointStride, offsetBytes: segment.checkpointsBytes[k] };
}

/** Creates a new, empty segment file (O_EXCL: it must not exist) and makes its name durable. */
async function createSegmentFile(dir: string, baseIndex: number, sync: boolean): Promise<FileHandle> {
  const handle = await fs.open(segmentPath(dir, baseIndex), writeFlags(sync) | fsConstants.O_CREAT | fsConstants.O_EXCL);
  if (sync) await fsyncDirectory(dir);
  return handle;
}

/** Flags of the handle appends go through: with fsync on, O_DSYNC makes each write durable
 *  when it returns (the log's writes are its appends; truncation still fsyncs on its own). */
function writeFlags(sync: boolean): number {
  return fsConstants.O_RDWR | (sync ? fsConstants.O_DSYNC : 0);
}

async function withReadHandle<T>(dir: string, segment: Segment, read: (handle: FileHandle) => Promise<T>): Promise<T> {
  const handle = await fs.open(segmentPath(dir, segment.baseIndex), 'r');
  try {
    return await read(handle);
  } finally {
    await handle.close();
  }
}

async function writeAll(handle: FileHandle, buffers: Buffer[], positionBytes: number): Promise<void> {
  let pending = buffers;
  let position = positionBytes;
  while (pending.length > 0) {
    const { bytesWritten } = await handle.writev(pending, position);
    assert(bytesWritten > 0, 'writev makes progress');
    position += bytesWritten;
    // A short write (rare for regular files) resumes after the bytes that did land.
    let skip = bytesWritten;
    while (pending.length > 0 && skip >= pending[0].length) {
      skip -= pending[0].length;
      pending = pending.slice(1);
    }
    if (skip > 0) pending = [pending[0].subarray(skip), ...pending.slice(1)];
  }
}

/** Writes `bytes` zeros at `position` (preallocation). With write(), not writev(), so tests
 *  that count appends by their writev calls do not count these. */
async function writeZeros(handle: FileHandle, position: number, bytes: number): Promise<void> {
  zeros ??= Buffer.alloc(zeroBytes);
  for (let done = 0; done < bytes;) {
    const { bytesWritten } = await handle.write(zeros, 0, Math.min(zeros.length, bytes - done), position + done);
    assert(bytesWritten > 0, 'write makes progress');
    done += bytesWritten;
  }
}

/** Corruption found after open() validated the segment: the disk changed under us. */
function damaged(segment: Segment, end: ScanEnd): Error {
  return new Error(
    `log segment ${segmentName(segment.baseIndex)} is damaged: ${end.stop} after index ${end.lastIndex}`,
  );
}

// --- open(): scan every segment, cut at the first record that is not good. ---

type Warn = (event: string, fields: Record<string, unknown>) => void;

async function loadSegments(dir: string, sync: boolean, warn: Warn, replay: OpenReplay | null): Promise<Segment[]> {
  const names = (await fs.readdir(dir)).filter((name) => segmentNamePattern.test(name)).sort();
  const segments: Segment[] = [];
  for (let i = 0; i < names.length; i++) {
    const baseIndex = Number(names[i].slice(0, segmentNameDigits));
    if (!Number.isSafeInteger(baseIndex) || baseIndex < 1) {
      throw new Error(`log directory ${dir} holds a segment we did not write: ${names[i]}`);
    }
    const previous = segments.length > 0 ? segments[segments.length - 1] : null;
    if (previous !== null && baseIndex !== previous.lastIndex + 1) {
      await cutTail(dir, names.slice(i), null, sync);
      warn('disk_log_tail_cut', {
        dir,
        reason: 'segment_gap',
        segment: names[i],
        lastIndex: previous.lastIndex,
        segmentsRemoved: names.slice(i),
      });
      break;
    }
    const { segment, end, fileBytes } = await loadSegment(dir, baseIndex, previous?.lastTerm ?? 0, replay);
    segments.push(segment);
    if (end.stop === 'preallocated') {
      // Zeros past the last record: room made for appends, not damage. Only the last segment is
      // cut back to its records (the room is made again): bytes a torn write left further on
      // must never be read as records after the next appends.
      if (i === names.length - 1) await cutTail(dir, [], { name: names[i], offsetBytes: end.endBytes }, sync);
      continue;
    }
    if (end.stop !== 'end') {
      await cutTail(dir, names.slice(i + 1), { name: names[i], offsetBytes: end.endBytes }, sync);
      warn('disk_log_tail_cut', {
        dir,
        reason: end.stop,
        segment: names[i],
        offsetBytes: end.endBytes,
        bytesDropped: fileBytes - end.endBytes,
        lastIndex: end.lastIndex,
        segmentsRemoved: names.slice(i + 1),
      });
      break;
    }
  }
  return segments;
}

async function loadSegment(
  dir: string,
  baseIndex: number,
  previousTerm: number,
  replay: OpenReplay | null,
): Promise<{ segment: Segment; end: ScanEnd; fileBytes: number }> {
  const segment = emptySegment(baseIndex, previousTerm);
  const handle = await fs.open(segmentPath(dir, baseIndex), 'r');
  try {
    const fileBytes = (await handle.stat()).size;
    const end = await scanRecords(handle, 0, baseIndex, previousTerm, (record) => {
      if ((record.index - baseIndex) % checkpointStride === 0) segment.checkpointsBytes.push(record.offsetBytes);
      if (replay !== null && record.index >= replay.from) {
        replay.onEntry(record.index, record.term, record.chunk, record.dataStart, record.dataEnd);
      }
      return true;
    });
    segment.lastIndex = end.lastIndex;
    segment.lastTerm = end.lastTerm;
    segment.sizeBytes = end.endBytes;
    return { segment, end, fileBytes };
  } finally {
    await handle.close();
  }
}

/** Cuts `keep` (the segment with the first bad record) at its last good record, then removes
 *  the later segments `names`, newest first. */
async function cutTail(
  dir: string,
  names: string[],
  keep: { name: string; offsetBytes: number } | null,
  sync: boolean,
): Promise<void> {
  if (keep !== null) {
    const handle = await fs.open(path.join(dir, keep.name), 'r+');
    try {
      await handle.truncate(keep.offsetBytes);
      if (sync) await handle.sync();
    } finally {
      await handle.close();
    }
  }
  for (const name of [...names].reverse()) await fs.unlink(path.join(dir, name));
  if (sync && names.length > 0) await fsyncDirectory(dir);
}
