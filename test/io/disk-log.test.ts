// DiskLog against a real temp directory: what goes in comes back after a reopen, a torn tail
// left by a crash is cut (never misread), and truncation, compaction and rotation keep the
// segment files consistent with what replay returns.
import { expect } from 'chai';
import { constants as fsConstants, promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { AssertionError } from '../../lib/core/assert';
import { DiskLog, DiskLogOptions, LogEntry } from '../../lib/io/disk-log';

interface Warning {
  event: string;
  fields: Record<string, unknown>;
}

let root: string;
let dir: string;
const warnings: Warning[] = [];
const opened: DiskLog[] = [];

function options(extra: Partial<DiskLogOptions> = {}): DiskLogOptions {
  return { fsync: 'batch', onWarn: (event, fields) => warnings.push({ event, fields }), ...extra };
}

async function open(extra: Partial<DiskLogOptions> = {}): Promise<DiskLog> {
  const log = await DiskLog.open(dir, options(extra));
  opened.push(log);
  return log;
}

function entry(index: number, term = 1, text = `command-${index}`): LogEntry {
  return { index, term, data: Buffer.from(text) };
}

function entries(first: number, last: number, term = 1): LogEntry[] {
  const result: LogEntry[] = [];
  for (let index = first; index <= last; index++) result.push(entry(index, term));
  return result;
}

async function replayAll(log: DiskLog, from = log.firstIndex, to?: number): Promise<LogEntry[]> {
  const result: LogEntry[] = [];
  await log.replay(from, (e) => result.push(e), to);
  return result;
}

/** Opens the log with a start-up replay from `from` and hands back what it was given, copied. */
async function openReplaying(from: number, extra: Partial<DiskLogOptions> = {}): Promise<{ log: DiskLog; seen: LogEntry[] }> {
  const seen: LogEntry[] = [];
  const log = await open({
    ...extra,
    replay: { from, onEntry: (index, term, bytes, start, end) => seen.push({ index, term, data: Buffer.from(bytes.subarray(start, end)) }) },
  });
  return { log, seen };
}

/** Entries as comparable plain values. */
function plain(list: LogEntry[]): Array<[number, number, string]> {
  return list.map((e) => [e.index, e.term, e.data.toString('hex')]);
}

async function segmentNames(): Promise<string[]> {
  return (await fs.readdir(dir)).filter((name) => name.endsWith('.seg')).sort();
}

function segmentName(baseIndex: number): string {
  return `${String(baseIndex).padStart(20, '0')}.seg`;
}

async function lastSegmentPath(): Promise<string> {
  const names = await segmentNames();
  return path.join(dir, names[names.length - 1]);
}

async function expectRejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  expect.fail('expected the promise to reject');
}

beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'latchkey-disk-log-'));
  dir = path.join(root, 'log');
  warnings.length = 0;
});

afterEach(async () => {
  for (const log of opened.splice(0)) await log.close();
  await fs.rm(root, { recursive: true, force: true });
});

describe('DiskLog: open, append, replay', () => {
  it('creates the directory and starts empty at index 1', async () => {
    const log = await open();
    expect(log.firstIndex).to.equal(1);
    expect(log.lastIndex).to.equal(0);
    expect(await segmentNames()).to.deep.equal([segmentName(1)]);
    expect(await replayAll(log)).to.deep.equal([]);
  });

  it('round-trips entries through close and reopen, byte for byte', async () => {
    const log = await open();
    // Empty, binary and larger-than-one-read-chunk payloads, and terms past 2^32.
    const big = Buffer.alloc(3 * 1024 * 1024 + 7, 0xab);
    const written: LogEntry[] = [
      { index: 1, term: 1, data: Buffer.alloc(0) },
      { index: 2, term: 1, data: Buffer.from([0, 1, 2, 255, 0]) },
      { index: 3, term: 2 ** 33 + 5, data: big },
      { index: 4, term: 2 ** 33 + 5, data: Buffer.from('{"op":"acquire"}') },
    ];
    await log.append(written.slice(0, 2));
    await log.append(written.slice(2));
    expect(log.lastIndex).to.equal(4);
    await log.close();

    const { log: reopened, seen } = await openReplaying(1);
    expect(reopened.firstIndex).to.equal(1);
    expect(reopened.lastIndex).to.equal(4);
    expect(plain(await replayAll(reopened))).to.deep.equal(plain(written));
    expect(plain(seen)).to.deep.equal(plain(written));
    expect(warnings).to.deep.equal([]);
  });

  it('replays a sub-range [from, to], including ranges that start past a checkpoint', async () => {
    const log = await open();
    await log.append(entries(1, 400));
    expect(plain(await replayAll(log, 1))).to.deep.equal(plain(entries(1, 400)));
    expect(plain(await replayAll(log, 131, 135))).to.deep.equal(plain(entries(131, 135)));
    expect(plain(await replayAll(log, 257, 257))).to.deep.equal(plain(entries(257, 257)));
    expect(plain(await replayAll(log, 390))).to.deep.equal(plain(entries(390, 400)));
    expect(await replayAll(log, 401)).to.deep.equal([]);
  });

  it('hands each replayed entry its own copy of the data', async () => {
    const log = await open();
    await log.append(entries(1, 3));
    const seen = await replayAll(log);
    seen[0].data.fill(0);
    expect(plain(seen.slice(1))).to.deep.equal(plain(entries(2, 3)));
    expect(plain(await replayAll(log))).to.deep.equal(plain(entries(1, 3)));
  });

  it('replays while it opens: every kept entry from `from` on, in order, across segments', async () => {
    const log = await open({ segmentBytesMax: 200 });
    for (let index = 1; index <= 300; index += 7) await log.append(entries(index, Math.min(index + 6, 300)));
    await log.close();
    expect((await segmentNames()).length).to.be.greaterThan(2);
    const all = await openReplaying(1, { segmentBytesMax: 200 });
    expect(plain(all.seen)).to.deep.equal(plain(entries(1, 300)));
    expect(plain(all.seen)).to.deep.equal(plain(await replayAll(all.log)));
    await all.log.close();
    expect(plain((await openReplaying(290)).seen)).to.deep.equal(plain(entries(290, 300)));
    expect((await openReplaying(301)).seen).to.deep.equal([]);
  });

  it('rejects an append that is not contiguous or lowers the term, and stays usable', async () => {
    const log = await open();
    await log.append(entries(1, 3, 2));
    expect(await expectRejection(log.append([entry(5)]))).to.be.instanceOf(AssertionError);
    expect(await expectRejection(log.append([entry(3)]))).to.be.instanceOf(AssertionError);
    expect(await expectRejection(log.append([entry(4, 1)]))).to.be.instanceOf(AssertionError);
    expect(await expectRejection(log.append([entry(4), entry(6)]))).to.be.instanceOf(AssertionError);
    expect(log.lastIndex).to.equal(3);
    await log.append([entry(4, 2)]);
    expect(plain(await replayAll(log))).to.deep.equal(plain(entries(1, 4, 2)));
  });

  it('refuses replay of compacted or missing indexes', async () => {
    const log = await open();
    await log.append(entries(1, 3));
    expect(await expectRejection(log.replay(0, () => undefined))).to.be.instanceOf(AssertionError);
    expect(await expectRejection(log.replay(1, () => undefined, 4))).to.be.instanceOf(AssertionError);
  });

  it('refuses calls after close', async () => {
    const log = await open();
    await log.close();
    expect(await expectRejection(log.append([entry(1)]))).to.be.instanceOf(AssertionError);
    await log.close();
  });
});

/** Where the records of a segment file end: the first zero header, or the end of the file. */
async function recordsEndBytes(file: string): Promise<number> {
  const bytes = await fs.readFile(file);
  let at = 0;
  while (at + 8 <= bytes.length && bytes.readUInt32LE(at) !== 0) at += 8 + bytes.readUInt32LE(at);
  return Math.min(at, bytes.length);
}

describe('DiskLog: preallocation', () => {
  it('keeps zeros ahead of the appends with fsync on, none with fsync never, and cuts them at open', async () => {
    for (const fsync of ['batch', 'never'] as const) {
      const log = await open({ fsync });
      for (let i = 1; i <= 50; i++) await log.append([entry(i)]);
      const file = await lastSegmentPath();
      const records = await recordsEndBytes(file);
      const size = async (): Promise<number> => (await fs.stat(file)).size;
      // The zeroing runs in the background: wait for it to land.
      for (let i = 0; i < 100 && fsync === 'batch' && await size() === records; i++) await new Promise((r) => setTimeout(r, 10));
      if (fsync === 'batch') expect(await size(), 'zeros ahead').to.be.greaterThan(records);
      else expect(await size()).to.equal(records);
      await log.close();
      const reopened = await open({ fsync });
      expect(reopened.lastIndex).to.equal(50);
      expect(await size()).to.equal(records);
      expect(warnings).to.deep.equal([]);
      await reopened.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('an append into the range being zeroed waits for the zeroing', async () => {
    // Zeros are written with write(), appends with writev(): slow the zeros down so that the
    // appends behind the first one reach the range while it is still being zeroed.
    const probe = await fs.open(path.join(root, 'probe'), 'w');
    const prototype = Object.getPrototypeOf(probe) as { write: (...args: unknown[]) => Promise<unknown> };
    await probe.close();
    const original = prototype.write;
    prototype.write = function (this: unknown, ...args: unknown[]) {
      return new Promise((resolve) => setTimeout(resolve, 30)).then(() => original.apply(this, args));
    };
    const big = (index: number): LogEntry => entry(index, 1, `command-${index}-${'x'.repeat(1000)}`);
    try {
      const log = await open();
      const pending: Promise<void>[] = [];
      for (let first = 1; first <= 200; first += 20) pending.push(log.append(Array.from({ length: 20 }, (_, i) => big(first + i))));
      await Promise.all(pending);
      await log.close();
    } finally {
      prototype.write = original;
    }
    const replayed = await replayAll(await open());
    expect(replayed.map((e) => e.index)).to.deep.equal(Array.from({ length: 200 }, (_, i) => i + 1));
  });

  it('appends, truncates, rotates and compacts across the zeros without losing a record', async () => {
    const log = await open({ segmentBytesMax: 256 * 1024 });
    let last = 0;
    const big = (index: number): LogEntry => entry(index, 1, `command-${index}-${'x'.repeat(1000)}`);
    for (let round = 0; round < 40; round++) {
      const batch = Array.from({ length: 20 }, (_, i) => big(last + 1 + i));
      await log.append(batch);
      last += 20;
      if (round % 7 === 6) {
        await log.truncateSuffix(last - 5);
        last -= 6;
      }
    }
    expect((await segmentNames()).length).to.be.greaterThan(2);
    await log.close();
    const reopened = await open({ segmentBytesMax: 256 * 1024 });
    const replayed = await replayAll(reopened);
    expect(replayed.map((e) => e.index)).to.deep.equal(Array.from({ length: last }, (_, i) => i + 1));
    expect(replayed.every((e) => e.data.toString() === big(e.index).data.toString())).to.equal(true);
    expect(warnings).to.deep.equal([]);
  });
});

describe('DiskLog: torn tail after a crash', () => {
  /** Writes entries 1..10 in three batches, closes, and hands back the segment path. The file
   *  is cut to its records (the zeros made ahead of them are the next tests' subject), so each
   *  damage below is at the end of the file, where a crash leaves it. */
  async function writeTen(): Promise<string> {
    const log = await open();
    await log.append(entries(1, 4));
    await log.append(entries(5, 9));
    await log.append([entry(10)]);
    await log.close();
    const file = await lastSegmentPath();
    await fs.truncate(file, await recordsEndBytes(file));
    return file;
  }

  /** Reopens, expects entries 1..last and one cut with `reason`, then appends a new next entry
   *  and checks that it survives another reopen without any further cut. */
  async function expectCutTo(last: number, reason: string): Promise<void> {
    // The start-up replay in open() hands over exactly the entries before the cut, never the bad one.
    const { log, seen } = await openReplaying(1);
    expect(log.lastIndex).to.equal(last);
    expect(plain(seen)).to.deep.equal(plain(entries(1, last)));
    expect(plain(await replayAll(log))).to.deep.equal(plain(entries(1, last)));
    expect(warnings.map((w) => [w.event, w.fields.reason])).to.deep.equal([['disk_log_tail_cut', reason]]);
    await log.append([entry(last + 1, 2, 'after-the-cut')]);
    await log.close();

    warnings.length = 0;
    const reopened = await open();
    expect(reopened.lastIndex).to.equal(last + 1);
    const replayed = await replayAll(reopened);
    expect(plain(replayed)).to.deep.equal(plain([...entries(1, last), entry(last + 1, 2, 'after-the-cut')]));
    expect(warnings).to.deep.equal([]);
  }

  it('drops a last record whose body was cut short', async () => {
    const file = await writeTen();
    const { size } = await fs.stat(file);
    await fs.truncate(file, size - 3);
    await expectCutTo(9, 'short_body');
  });

  it('drops half a record header', async () => {
    const file = await writeTen();
    await fs.appendFile(file, Buffer.from([0x20, 0x00, 0x00]));
    await expectCutTo(10, 'short_header');
  });

  it('drops a last record with a flipped byte in its body', async () => {
    const file = await writeTen();
    const bytes = await fs.readFile(file);
    bytes[bytes.length - 2] ^= 0x40;
    await fs.writeFile(file, bytes);
    await expectCutTo(9, 'crc_mismatch');
  });

  it('takes a zero-filled tail for room made ahead, not damage: no cut warned, nothing lost', async () => {
    const file = await writeTen();
    await fs.appendFile(file, Buffer.alloc(4096));
    const { log, seen } = await openReplaying(1);
    expect(plain(seen)).to.deep.equal(plain(entries(1, 10)));
    expect(warnings).to.deep.equal([]);
    // The zeros are cut off at open, and made again ahead of later appends.
    expect((await fs.stat(file)).size).to.equal(await recordsEndBytes(file));
    await log.append([entry(11)]);
    await log.close();
    expect(plain(await replayAll(await open()))).to.deep.equal(plain(entries(1, 11)));
  });

  it('never reads a record a torn write left behind zeros', async () => {
    // A crash part-way through a large write can leave its first blocks unwritten (zeros) and a
    // later one on the disk. Here that later block is a record that passes every check as index
    // 13, placed exactly where records 11 and 12 of the next appends will end: were the zeros
    // not cut at open, the scan after those appends would read it as the log's entry 13.
    const file = await writeTen();
    const eleven = entry(11, 3, 'new-eleven');
    const twelve = entry(12, 3);
    const staleDir = await fs.mkdtemp(path.join(root, 'stale-'));
    const other = await DiskLog.open(staleDir, options({ fsync: 'never' }));
    await other.reset(13);
    await other.append([entry(13, 3, 'stale-13')]);
    await other.close();
    const stale13 = await fs.readFile(path.join(staleDir, segmentName(13)));
    const gapBytes = 2 * 24 + eleven.data.length + twelve.data.length;
    await fs.appendFile(file, Buffer.concat([Buffer.alloc(gapBytes), stale13]));
    // fsync never: no zeros made ahead, which would hide the stale record by chance.
    const log = await open({ fsync: 'never' });
    expect(log.lastIndex).to.equal(10);
    await log.append([eleven]);
    await log.append([twelve]);
    await log.close();
    expect(plain(await replayAll(await open()))).to.deep.equal(plain([...entries(1, 10), eleven, twelve]));
    expect(warnings).to.deep.equal([]);
  });

  it('drops a well-formed record that is not the next index (stale bytes)', async () => {
    const file = await writeTen();
    const bytes = await fs.readFile(file);
    // The first record (index 1) is valid on its own, so its crc matches; only its index is wrong.
    const firstRecordBytes = 8 + bytes.readUInt32LE(0);
    await fs.appendFile(file, bytes.subarray(0, firstRecordBytes));
    await expectCutTo(10, 'index_gap');
  });

  it('cuts inside an earlier segment and removes every later segment', async () => {
    const log = await open({ segmentBytesMax: 60 });
    for (let index = 1; index <= 12; index += 3) await log.append(entries(index, index + 2));
    await log.close();
    const names = await segmentNames();
    expect(names.length).to.be.greaterThan(2);
    // Corrupt the last byte of the second segment: its last record and every later file go.
    const second = path.join(dir, names[1]);
    const bytes = await fs.readFile(second);
    bytes[bytes.length - 1] ^= 0x01;
    await fs.writeFile(second, bytes);

    const { log: reopened, seen } = await openReplaying(1, { segmentBytesMax: 60 });
    const secondBase = Number(names[1].slice(0, 20));
    expect(reopened.lastIndex).to.be.lessThan(Number(names[2].slice(0, 20)) - 1);
    expect(reopened.lastIndex).to.be.at.least(secondBase - 1);
    expect(await segmentNames()).to.deep.equal(names.slice(0, 2));
    expect(plain(await replayAll(reopened))).to.deep.equal(plain(entries(1, reopened.lastIndex)));
    expect(plain(seen)).to.deep.equal(plain(entries(1, reopened.lastIndex)));
    expect(warnings[0].fields.segmentsRemoved).to.deep.equal(names.slice(2));
  });
});

describe('DiskLog: segments', () => {
  it('rotates past segmentBytesMax, names each segment by its first index, replays across them', async () => {
    const log = await open({ segmentBytesMax: 150 });
    for (let index = 1; index <= 30; index += 3) await log.append(entries(index, index + 2));
    const names = await segmentNames();
    expect(names.length).to.be.greaterThan(3);
    // Every segment starts where a batch started (a batch is never split across files).
    for (const name of names) expect((Number(name.slice(0, 20)) - 1) % 3).to.equal(0);
    for (const name of names) {
      const bytes = await fs.readFile(path.join(dir, name));
      // The first record's index (u64 LE at offset 8) matches the file name.
      expect(bytes.readUInt32LE(8)).to.equal(Number(name.slice(0, 20)));
    }
    expect(plain(await replayAll(log, 1))).to.deep.equal(plain(entries(1, 30)));
    expect(plain(await replayAll(log, 8, 23))).to.deep.equal(plain(entries(8, 23)));
    await log.close();

    const reopened = await open({ segmentBytesMax: 150 });
    expect(reopened.lastIndex).to.equal(30);
    expect(plain(await replayAll(reopened))).to.deep.equal(plain(entries(1, 30)));
    expect(await segmentNames()).to.deep.equal(names);
  });

  it('truncateSuffix removes the suffix durably, then new entries take those indexes', async () => {
    const log = await open({ segmentBytesMax: 150 });
    for (let index = 1; index <= 30; index += 3) await log.append(entries(index, index + 2));
    const before = await segmentNames();

    await log.truncateSuffix(8);
    expect(log.lastIndex).to.equal(7);
    // Segments that only held indexes >= 8 are gone.
    const after = await segmentNames();
    expect(after.length).to.be.lessThan(before.length);
    for (const name of after) expect(Number(name.slice(0, 20))).to.be.at.most(8);
    await log.append([entry(8, 2, 'new-8'), entry(9, 2, 'new-9')]);
    await log.close();

    const reopened = await open({ segmentBytesMax: 150 });
    expect(reopened.lastIndex).to.equal(9);
    const expected = [...entries(1, 7), entry(8, 2, 'new-8'), entry(9, 2, 'new-9')];
    expect(plain(await replayAll(reopened))).to.deep.equal(plain(expected));
    expect(warnings).to.deep.equal([]);
  });

  it('truncateSuffix at a segment base, at 1, and past the end', async () => {
    const log = await open({ segmentBytesMax: 150 });
    for (let index = 1; index <= 30; index += 3) await log.append(entries(index, index + 2));
    const base = Number((await segmentNames())[2].slice(0, 20));

    await log.truncateSuffix(base);
    expect(log.lastIndex).to.equal(base - 1);
    await log.truncateSuffix(base + 5);
    expect(log.lastIndex).to.equal(base - 1);
    await log.append([entry(base, 3)]);
    expect(plain(await replayAll(log))).to.deep.equal(plain([...entries(1, base - 1), entry(base, 3)]));

    await log.truncateSuffix(1);
    expect([log.firstIndex, log.lastIndex]).to.deep.equal([1, 0]);
    await log.close();
    const reopened = await open({ segmentBytesMax: 150 });
    expect([reopened.firstIndex, reopened.lastIndex]).to.deep.equal([1, 0]);
    await reopened.append([entry(1, 4)]);
    expect(plain(await replayAll(reopened))).to.deep.equal(plain([entry(1, 4)]));
  });

  it('compactPrefix deletes whole old segments, moves firstIndex, keeps the last entry', async () => {
    const log = await open({ segmentBytesMax: 150 });
    for (let index = 1; index <= 30; index += 3) await log.append(entries(index, index + 2));
    const names = await segmentNames();
    const bases = names.map((name) => Number(name.slice(0, 20)));

    // Through the middle of the third segment: the first two go, the third stays.
    await log.compactPrefix(bases[2] + 1);
    expect(await segmentNames()).to.deep.equal(names.slice(2));
    expect(log.firstIndex).to.equal(bases[2]);
    expect(plain(await replayAll(log))).to.deep.equal(plain(entries(bases[2], 30)));
    expect(await expectRejection(log.replay(bases[2] - 1, () => undefined))).to.be.instanceOf(AssertionError);

    // Everything: only the segment holding lastIndex survives.
    await log.compactPrefix(30);
    expect(await segmentNames()).to.deep.equal(names.slice(-1));
    expect(log.lastIndex).to.equal(30);
    expect(log.firstIndex).to.equal(bases[bases.length - 1]);
    await log.append([entry(31)]);
    await log.close();

    const reopened = await open({ segmentBytesMax: 150 });
    expect(reopened.firstIndex).to.equal(bases[bases.length - 1]);
    expect(reopened.lastIndex).to.equal(31);
    expect(plain(await replayAll(reopened))).to.deep.equal(plain(entries(bases[bases.length - 1], 31)));
  });

  it('compactPrefix keeps the segment holding lastIndex even behind an empty last segment', async () => {
    const log = await open({ segmentBytesMax: 150 });
    for (let index = 1; index <= 30; index += 3) await log.append(entries(index, index + 2));
    const names = await segmentNames();
    const lastBase = Number(names[names.length - 1].slice(0, 20));
    // The last segment is now empty; lastIndex lives in the one before it.
    await log.truncateSuffix(lastBase);
    await log.compactPrefix(lastBase - 1);
    expect(log.lastIndex).to.equal(lastBase - 1);
    expect(await segmentNames()).to.deep.equal(names.slice(-2));
    expect(plain(await replayAll(log, log.lastIndex))).to.deep.equal(plain([entry(lastBase - 1)]));
  });

  it('after compaction, truncating everything keeps the first index across a reopen', async () => {
    const log = await open({ segmentBytesMax: 150 });
    for (let index = 1; index <= 30; index += 3) await log.append(entries(index, index + 2));
    await log.compactPrefix(20);
    const first = log.firstIndex;
    expect(first).to.be.greaterThan(1);
    await log.truncateSuffix(first);
    expect([log.firstIndex, log.lastIndex]).to.deep.equal([first, first - 1]);
    await log.close();

    const reopened = await open({ segmentBytesMax: 150 });
    expect([reopened.firstIndex, reopened.lastIndex]).to.deep.equal([first, first - 1]);
    await reopened.append([entry(first, 2)]);
    expect(reopened.lastIndex).to.equal(first);
  });

  it('reset discards the log and starts it at a given index (snapshot install)', async () => {
    const log = await open({ segmentBytesMax: 150 });
    await log.append(entries(1, 20));
    await log.reset(100);
    expect([log.firstIndex, log.lastIndex]).to.deep.equal([100, 99]);
    expect(await segmentNames()).to.deep.equal([segmentName(100)]);
    await log.append([entry(100, 5)]);
    await log.close();

    const reopened = await open({ segmentBytesMax: 150 });
    expect([reopened.firstIndex, reopened.lastIndex]).to.deep.equal([100, 100]);
    expect(plain(await replayAll(reopened))).to.deep.equal(plain([entry(100, 5)]));
  });
});

describe('DiskLog: concurrent appends', () => {
  /** Counts writes on every FileHandle while `run` runs: with fsync on, each is one durable
   *  write (the append handle is O_DSYNC, see the next test). */
  async function countWrites(run: () => Promise<void>): Promise<number> {
    const probe = await fs.open(path.join(root, 'probe'), 'w');
    const prototype = Object.getPrototypeOf(probe) as { writev: (...args: unknown[]) => Promise<unknown> };
    await probe.close();
    const original = prototype.writev;
    let count = 0;
    prototype.writev = function (this: unknown, ...args: unknown[]) {
      count += 1;
      return original.apply(this, args);
    };
    try {
      await run();
    } finally {
      prototype.writev = original;
    }
    return count;
  }

  /** The open flags of the log's append handle, from /proc (Linux). */
  async function appendHandleFlags(log: DiskLog): Promise<number> {
    const fd = (log as unknown as { handle: { fd: number } }).handle.fd;
    const info = await fs.readFile(`/proc/self/fdinfo/${fd}`, 'utf8');
    return parseInt(/flags:\s+([0-7]+)/.exec(info)?.[1] ?? 'x', 8);
  }

  it('appends through an O_DSYNC handle with fsync on, and a plain one with fsync never', async () => {
    for (const fsync of ['batch', 'always', 'never'] as const) {
      const log = await open({ fsync, segmentBytesMax: 200 });
      // Also after rotating to a new segment, which opens a new handle.
      for (let i = 1; i <= 6; i++) await log.append([entry(i)]);
      expect((await appendHandleFlags(log)) & fsConstants.O_DSYNC, fsync).to.equal(fsync === 'never' ? 0 : fsConstants.O_DSYNC);
      await log.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  async function appendMany(log: DiskLog, batches: number): Promise<number> {
    const pending: Array<Promise<void>> = [];
    let next = 1;
    for (let i = 0; i < batches; i++) {
      const size = 1 + (i % 3);
      pending.push(log.append(entries(next, next + size - 1, 1 + Math.floor(i / 50))));
      next += size;
    }
    await Promise.all(pending);
    return next - 1;
  }

  for (const fsync of ['batch', 'always'] as const) {
    it(`keeps every one of 300 unawaited appends, in order (fsync ${fsync})`, async () => {
      const log = await open({ fsync, segmentBytesMax: 4096 });
      let last = 0;
      const syncs = await countWrites(async () => {
        last = await appendMany(log, 300);
      });
      expect(log.lastIndex).to.equal(last);
      // 'always' flushes each append on its own; 'batch' merges those that queued up.
      if (fsync === 'always') expect(syncs).to.equal(300);
      else expect(syncs).to.be.lessThan(30);
      await log.close();

      const reopened = await open({ fsync, segmentBytesMax: 4096 });
      const replayed = await replayAll(reopened);
      expect(replayed.map((e) => e.index)).to.deep.equal(Array.from({ length: last }, (_, i) => i + 1));
      expect(replayed.every((e, i) => e.data.toString() === `command-${i + 1}`)).to.equal(true);
      expect(warnings).to.deep.equal([]);
    });
  }

  it('rejects only the misfit in a merged group; the others are written', async () => {
    const log = await open();
    const first = log.append(entries(1, 2));
    const good = log.append(entries(3, 4));
    const misfit = expectRejection(log.append([entry(9)]));
    const after = log.append(entries(5, 6));
    await Promise.all([first, good, after]);
    expect(await misfit).to.be.instanceOf(AssertionError);
    expect(plain(await replayAll(log))).to.deep.equal(plain(entries(1, 6)));
  });

  it('runs truncateSuffix and appends in call order', async () => {
    const log = await open();
    const calls = [
      log.append(entries(1, 5)),
      log.truncateSuffix(3),
      log.append([entry(3, 2, 'x'), entry(4, 2, 'y')]),
    ];
    await Promise.all(calls);
    expect(plain(await replayAll(log))).to.deep.equal(plain([entry(1), entry(2), entry(3, 2, 'x'), entry(4, 2, 'y')]));
  });
});
