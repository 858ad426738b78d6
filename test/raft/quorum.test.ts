// Quorum math as table tests (STYLE §6.5, after etcd-io/raft quorum/testdata/majority_commit.txt):
// each row is one voter configuration and the exact answer the paper's rules give for it.
import { expect } from 'chai';
import { committedIndex, majority, voteResult } from '../../lib/raft/quorum';

describe('raft quorum', () => {
  describe('majority(voters)', () => {
    const table: [voters: number, need: number][] = [
      [1, 1], [2, 2], [3, 2], [4, 3], [5, 3], [6, 4], [7, 4],
    ];
    for (const [voters, need] of table) {
      it(`${voters} voters need ${need}`, () => {
        expect(majority(voters)).to.equal(need);
      });
    }
  });

  describe('committedIndex(matches)', () => {
    // The highest index that a majority has stored: sort descending, take the majority-th.
    const table: [matches: number[], committed: number][] = [
      [[], 0],
      [[0], 0],
      [[7], 7],
      [[5, 3], 3], // two voters: both must have it
      [[5, 3, 7], 5], // STYLE §6.5
      [[7, 5, 3], 5], // order does not matter
      [[1, 1, 1], 1],
      [[0, 0, 9], 0], // one voter far ahead commits nothing
      [[9, 9, 0], 9], // one voter down does not block
      [[1, 2, 3, 4], 2], // four voters need three
      [[4, 4, 0, 0], 0],
      [[4, 4, 4, 0], 4],
      [[5, 4, 3, 2, 1], 3],
      [[10, 10, 2, 2, 2], 2], // Figure 8 shape: two ahead is a minority of five
      [[10, 10, 10, 2, 2], 10],
    ];
    for (const [matches, committed] of table) {
      it(`[${matches.join(',')}] -> ${committed}`, () => {
        const input = [...matches];
        expect(committedIndex(input)).to.equal(committed);
        expect(input, 'the input is not sorted in place').to.deep.equal(matches);
      });
    }
  });

  describe('voteResult(voters, granted, rejected)', () => {
    const table: [voters: number, granted: number, rejected: number, result: string][] = [
      [1, 1, 0, 'won'], // a single member elects itself
      [3, 1, 0, 'pending'],
      [3, 2, 0, 'won'],
      [3, 1, 1, 'pending'], // one outstanding vote can still decide
      [3, 1, 2, 'lost'],
      [3, 2, 1, 'won'],
      [3, 0, 3, 'lost'],
      [4, 2, 0, 'pending'],
      [4, 2, 1, 'pending'],
      [4, 2, 2, 'lost'], // a tie in an even cluster loses: 3 of 4 are needed
      [4, 3, 1, 'won'],
      [5, 2, 2, 'pending'],
      [5, 3, 0, 'won'],
      [5, 2, 3, 'lost'],
      [5, 1, 3, 'lost'],
    ];
    for (const [voters, granted, rejected, result] of table) {
      it(`${voters} voters, ${granted} granted, ${rejected} rejected -> ${result}`, () => {
        expect(voteResult(voters, granted, rejected)).to.equal(result);
      });
    }
  });
});
