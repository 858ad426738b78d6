// RaftLog: the in-memory log view (entries after the snapshot plus how far they are durable).
// Invariant under test: snapshotIndex <= stableIndex <= lastIndex and entries are contiguous.
import { expect } from 'chai';
import { AssertionError } from '../../lib/core/assert';
import { RaftLog } from '../../lib/raft/log';
import type { Entry } from '../../lib/raft/messages';

function entry(index: number, term: number, data: string | null = `e${index}`): Entry<string> {
  return { index, term, data };
}

/** A log holding entries 1..terms.length with the given terms. */
function logOf(terms: number[]): RaftLog<string> {
  const log = new RaftLog<string>();
  terms.forEach((term, i) => log.append(entry(i + 1, term)));
  return log;
}

function indexes(entries: Entry<string>[]): number[] {
  return entries.map((e) => e.index);
}

describe('RaftLog', () => {
  it('starts empty at index 0, term 0', () => {
    const log = new RaftLog<string>();
    expect([log.firstIndex, log.lastIndex, log.lastTerm, log.stableIndex]).to.deep.equal([1, 0, 0, 0]);
    expect(log.termAt(0)).to.equal(0);
    expect(log.termAt(1)).to.equal(undefined);
    expect(log.unstable()).to.deep.equal([]);
  });

  describe('append', () => {
    it('accepts only the next index (contiguity)', () => {
      const log = logOf([1, 1]);
      expect(() => log.append(entry(4, 1))).to.throw(AssertionError, 'append of 4 after 2');
      expect(() => log.append(entry(2, 1))).to.throw(AssertionError, 'append of 2 after 2');
      log.append(entry(3, 2));
      expect([log.lastIndex, log.lastTerm]).to.deep.equal([3, 2]);
    });

    it('refuses a term lower than the last one (terms never decrease along a log)', () => {
      const log = logOf([1, 3]);
      expect(() => log.append(entry(3, 2))).to.throw(AssertionError, 'append of term 2 after term 3');
      expect(log.lastIndex).to.equal(2);
    });

    it('continues right after a snapshot', () => {
      const log = new RaftLog<string>();
      log.restore(10, 4);
      expect(() => log.append(entry(12, 4))).to.throw(AssertionError, 'append of 12 after 10');
      expect(() => log.append(entry(11, 3))).to.throw(AssertionError, 'append of term 3 after term 4');
      log.append(entry(11, 4));
      expect([log.firstIndex, log.lastIndex]).to.deep.equal([11, 11]);
    });
  });

  describe('load (start-up)', () => {
    it('takes entries read back from disk after the snapshot, skipping those it covers, and keeps no alias', () => {
      const log = new RaftLog<string>();
      log.restore(2, 1);
      const read = [entry(1, 1), entry(2, 1), entry(3, 1), entry(4, 2)];
      log.load(read);
      expect([log.firstIndex, log.lastIndex, log.lastTerm]).to.deep.equal([3, 4, 2]);
      expect(log.slice(3, 4)).to.deep.equal([entry(3, 1), entry(4, 2)]);
      read.push(entry(5, 2));
      expect(log.lastIndex).to.equal(4);
      log.append(entry(5, 2));
      expect(read.length).to.equal(5);
    });

    it('refuses a gap or a lower term and then leaves the log as it was', () => {
      const log = logOf([1, 2]);
      expect(() => log.load([entry(3, 2), entry(5, 2)])).to.throw(AssertionError, 'without a gap');
      expect(() => log.load([entry(3, 1)])).to.throw(AssertionError, 'do not lower the term');
      expect([log.lastIndex, log.lastTerm]).to.deep.equal([2, 2]);
      log.load([]);
      expect(log.lastIndex).to.equal(2);
    });
  });

  describe('termAt and entry around a snapshot', () => {
    // Snapshot at 5 (term 2), entries 6..8 with terms 2, 3, 3.
    function compacted(): RaftLog<string> {
      const log = logOf([1, 1, 2, 2, 2, 2, 3, 3]);
      log.stableIndex = 8;
      log.compact(5);
      return log;
    }
    const table: [index: number, term: number | undefined][] = [
      [0, undefined], [4, undefined], // compacted away
      [5, 2], // the snapshot's own position still answers
      [6, 2], [7, 3], [8, 3],
      [9, undefined], // past the end
    ];
    for (const [index, term] of table) {
      it(`termAt(${index}) = ${String(term)}`, () => {
        expect(compacted().termAt(index)).to.equal(term);
      });
    }

    it('entry() answers only for entries held in memory', () => {
      const log = compacted();
      expect(log.entry(5)).to.equal(undefined);
      expect(log.entry(6)).to.deep.equal(entry(6, 2));
      expect(log.entry(8)).to.deep.equal(entry(8, 3));
      expect(log.entry(9)).to.equal(undefined);
      expect([log.snapshotIndex, log.snapshotTerm, log.firstIndex, log.lastIndex, log.lastTerm]).to.deep.equal([5, 2, 6, 8, 3]);
    });

    it('lastTerm of a log holding only a snapshot is the snapshot term', () => {
      const log = logOf([1, 2]);
      log.stableIndex = 2;
      log.compact(2);
      expect([log.lastIndex, log.lastTerm]).to.deep.equal([2, 2]);
    });
  });

  describe('slice', () => {
    const table: [from: number, to: number, max: number, want: number[]][] = [
      [1, 5, Infinity, [1, 2, 3, 4, 5]],
      [2, 4, Infinity, [2, 3, 4]],
      [3, 3, Infinity, [3]],
      [4, 9, Infinity, [4, 5]], // `to` is clamped to lastIndex
      [6, 9, Infinity, []], // from past the end
      [4, 3, Infinity, []], // empty range
      [1, 5, 2, [1, 2]], // at most `max`
      [2, 5, 1, [2]],
      [5, 5, 3, [5]],
    ];
    for (const [from, to, max, want] of table) {
      it(`slice(${from}, ${to}, ${max}) = [${want.join(',')}]`, () => {
        expect(indexes(logOf([1, 1, 2, 2, 3]).slice(from, to, max))).to.deep.equal(want);
      });
    }

    it('refuses to read below the snapshot', () => {
      const log = logOf([1, 1, 2, 2, 3]);
      log.stableIndex = 5;
      log.compact(3);
      expect(() => log.slice(3, 5)).to.throw(AssertionError, 'slice from 3 is compacted (snapshot 3)');
      expect(indexes(log.slice(4, 5))).to.deep.equal([4, 5]);
    });

    it('returns a copy: changing it does not change the log', () => {
      const log = logOf([1, 1]);
      log.slice(1, 2).pop();
      expect(log.lastIndex).to.equal(2);
    });
  });

  describe('truncateFrom', () => {
    it('drops the entries from the index on and pulls stableIndex back', () => {
      const log = logOf([1, 1, 1, 1, 1]);
      log.stableIndex = 4;
      log.truncateFrom(3);
      expect([log.lastIndex, log.lastTerm, log.stableIndex]).to.deep.equal([2, 1, 2]);
      log.append(entry(3, 2));
      expect(indexes(log.unstable())).to.deep.equal([3]);
    });

    it('keeps stableIndex when the cut is past it', () => {
      const log = logOf([1, 1, 1, 1, 1]);
      log.stableIndex = 2;
      log.truncateFrom(4);
      expect([log.lastIndex, log.stableIndex]).to.deep.equal([3, 2]);
    });

    it('is a no-op past the end', () => {
      const log = logOf([1, 1]);
      log.stableIndex = 2;
      log.truncateFrom(3);
      expect([log.lastIndex, log.stableIndex]).to.deep.equal([2, 2]);
    });

    it('refuses to cut into the snapshot', () => {
      const log = logOf([1, 1, 1]);
      log.stableIndex = 3;
      log.compact(2);
      expect(() => log.truncateFrom(2)).to.throw(AssertionError, 'truncate at 2 below the snapshot 2');
      log.truncateFrom(3);
      expect([log.lastIndex, log.lastTerm]).to.deep.equal([2, 1]);
    });
  });

  describe('compact and restore', () => {
    it('compact forgets the prefix and keeps the tail', () => {
      const log = logOf([1, 1, 2, 2]);
      log.stableIndex = 4;
      log.compact(3);
      expect([log.snapshotIndex, log.snapshotTerm, log.firstIndex, log.lastIndex]).to.deep.equal([3, 2, 4, 4]);
      expect(indexes(log.slice(4, 4))).to.deep.equal([4]);
      log.compact(3); // compacting at the snapshot again changes nothing
      expect([log.snapshotIndex, log.lastIndex]).to.deep.equal([3, 4]);
    });

    it('compact raises stableIndex to the snapshot (a snapshot is durable)', () => {
      const log = logOf([1, 1, 1]);
      log.compact(2);
      expect(log.stableIndex).to.equal(2);
      expect(indexes(log.unstable())).to.deep.equal([3]);
    });

    it('compact refuses positions outside the log', () => {
      const log = logOf([1, 1, 1]);
      log.stableIndex = 3;
      expect(() => log.compact(4)).to.throw(AssertionError, 'compact at 4 outside the log');
      log.compact(2);
      expect(() => log.compact(1)).to.throw(AssertionError, 'compact at 1 outside the log');
    });

    it('restore replaces the whole log by the snapshot position', () => {
      const log = logOf([1, 1, 1]);
      log.restore(10, 3);
      expect([log.snapshotIndex, log.snapshotTerm, log.firstIndex, log.lastIndex, log.lastTerm, log.stableIndex])
        .to.deep.equal([10, 3, 11, 10, 3, 10]);
      expect(log.termAt(3)).to.equal(undefined);
      expect(log.unstable()).to.deep.equal([]);
    });
  });

  describe('unstable', () => {
    it('is everything after stableIndex', () => {
      const log = logOf([1, 1, 1, 2]);
      expect(indexes(log.unstable())).to.deep.equal([1, 2, 3, 4]);
      log.stableIndex = 2;
      expect(indexes(log.unstable())).to.deep.equal([3, 4]);
      log.stableIndex = 4;
      expect(log.unstable()).to.deep.equal([]);
    });
  });
});
