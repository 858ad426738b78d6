// Story tests for the consensus core (STYLE §6.11, §6.13): each test is a short script on the
// in-memory harness with an exact expected outcome. References are to Ongaro & Ousterhout 2014
// ("§5.4.2", "Figure 8") and Ongaro's thesis ("thesis §9.6" pre-vote, "§6.2" check-quorum,
// "§6.4" read-index). The harness also checks Election Safety and State Machine Safety on
// every step, and that no ready() ever truncates an applied entry.
import { expect } from 'chai';
import { Harness, type Message } from '../helpers/raft-harness';
import type { AppendRequest, VoteRequest, VoteResponse } from '../../lib/raft/messages';

const ET = 1000; // election timeout (ms); the harness default
const HB = 100; // heartbeat (ms)

function voteRequest(from: string, to: string, term: number, lastTerm: number, lastIndex: number, pre = false): VoteRequest {
  return { type: 'vote', from, to, term, lastTerm, lastIndex, pre };
}

function voteResponses(messages: Message[]): VoteResponse[] {
  return messages.filter((m): m is VoteResponse => m.type === 'vote_resp');
}

function isAppend(m: Message): m is AppendRequest<string> {
  return m.type === 'append';
}

/** A 3-node cluster where 1 leads term 1 and has committed `data` on all three. */
function threeNodes(seed: number, data: string[] = []): Harness {
  const h = new Harness(['1', '2', '3'], { seed });
  h.elect('1');
  for (const item of data) h.propose('1', item);
  h.stabilize();
  return h;
}

describe('raft', () => {
  describe('election', () => {
    it('a single-member cluster elects itself and commits a proposal', () => {
      const h = new Harness(['1'], { seed: 1 });
      h.campaign('1');
      h.stabilize();
      expect([h.raft('1').role, h.raft('1').term, h.raft('1').leader, h.raft('1').commitIndex]).to.deep.equal(['leader', 1, '1', 1]);
      expect(h.disk('1').hardState).to.deep.equal({ term: 1, votedFor: '1' });

      expect(h.propose('1', 'x')).to.equal(2);
      h.stabilize();
      expect(h.raft('1').commitIndex).to.equal(2);
      expect(h.applied('1')).to.deep.equal([{ index: 1, term: 1, data: null }, { index: 2, term: 1, data: 'x' }]);
      expect(h.disk('1').entries.map((e) => e.index)).to.deep.equal([1, 2]);
      expect(h.transcript).to.deep.equal([]); // nobody to talk to
    });

    it('3 nodes: pre-vote, vote, no-op commit, then proposals commit and apply in order everywhere', () => {
      const h = new Harness(['1', '2', '3'], { seed: 1 });
      h.campaign('1');
      h.stabilize();
      expect(h.transcript).to.deep.equal([
        '1->2 MsgPreVote Term:1 Log:0/0',
        '1->3 MsgPreVote Term:1 Log:0/0',
        '2->1 MsgPreVoteResp Term:1',
        '3->1 MsgPreVoteResp Term:1',
        '1->2 MsgVote Term:1 Log:0/0',
        '1->3 MsgVote Term:1 Log:0/0',
        '2->1 MsgVoteResp Term:1',
        '3->1 MsgVoteResp Term:1',
        '1->2 MsgApp Term:1 Log:0/0 Commit:0 Entries:[1/1 noop]',
        '1->3 MsgApp Term:1 Log:0/0 Commit:0 Entries:[1/1 noop]',
        '2->1 MsgAppResp Term:1 Match:1',
        '3->1 MsgAppResp Term:1 Match:1',
        '1->2 MsgApp Term:1 Log:1/1 Commit:1',
        '1->3 MsgApp Term:1 Log:1/1 Commit:1',
        '2->1 MsgAppResp Term:1 Match:1',
        '3->1 MsgAppResp Term:1 Match:1',
      ]);
      for (const id of h.ids) {
        expect([id, h.raft(id).term, h.raft(id).leader, h.raft(id).commitIndex]).to.deep.equal([id, 1, '1', 1]);
      }
      expect(h.disk('1').hardState).to.deep.equal({ term: 1, votedFor: '1' });
      expect(h.disk('2').hardState).to.deep.equal({ term: 1, votedFor: '1' });
      expect(h.disk('3').hardState).to.deep.equal({ term: 1, votedFor: '1' });

      h.transcript.length = 0;
      expect(h.propose('1', 'a')).to.equal(2);
      expect(h.propose('1', 'b')).to.equal(3);
      h.stabilize();
      expect(h.propose('1', 'c')).to.equal(4);
      h.stabilize();
      expect(h.transcript.slice(0, 4)).to.deep.equal([
        '1->2 MsgApp Term:1 Log:1/1 Commit:1 Entries:[1/2 "a"]',
        '1->3 MsgApp Term:1 Log:1/1 Commit:1 Entries:[1/2 "a"]',
        '1->2 MsgApp Term:1 Log:1/2 Commit:1 Entries:[1/3 "b"]',
        '1->3 MsgApp Term:1 Log:1/2 Commit:1 Entries:[1/3 "b"]',
      ]);
      const expected = [
        { index: 1, term: 1, data: null }, { index: 2, term: 1, data: 'a' },
        { index: 3, term: 1, data: 'b' }, { index: 4, term: 1, data: 'c' },
      ];
      for (const id of h.ids) {
        expect(h.applied(id), `applied on ${id}`).to.deep.equal(expected);
        expect(h.raft(id).commitIndex).to.equal(4);
        expect(h.disk(id).entries).to.deep.equal(expected);
      }
    });

    it('a leader counts itself toward a commit only once its own copy is durable', () => {
      const h = threeNodes(1);
      h.isolate('3');
      h.propose('1', 'x');
      const ready = h.takeReady('1'); // sendNow is out, nothing is on the leader's disk yet
      expect(ready?.entries.map((e) => e.index)).to.deep.equal([2]);
      h.deliver();
      h.processReady('2');
      h.deliver(); // 2 answers Match:2: one durable copy of two needed
      expect(h.raft('1').commitIndex).to.equal(1);
      h.completeReady('1', ready as NonNullable<typeof ready>);
      expect(h.raft('1').commitIndex).to.equal(2);
      h.stabilize();
      expect(h.appliedData('1')).to.deep.equal(['x']);
      expect(h.appliedData('2')).to.deep.equal(['x']);
    });

    it('a follower does not propose', () => {
      const h = threeNodes(1);
      expect(h.propose('2', 'x')).to.equal(null);
      expect(h.raft('2').log.lastIndex).to.equal(1);
    });
  });

  describe('vote rules (§5.2, §5.4.1)', () => {
    // Node 2 holds 1/1 (no-op) and 1/2 "a", is at term 1, and has not heard from the leader for
    // more than an election timeout, so only the log and vote rules decide.
    function voter(): Harness {
      const h = threeNodes(1, ['a']);
      expect(h.logTerms('2')).to.deep.equal([1, 1]);
      h.setNow(h.now + 2 * ET);
      return h;
    }

    it('refuses a candidate whose last term is lower, however long its log', () => {
      const h = voter();
      h.inject(voteRequest('3', '2', 2, 0, 9));
      const ready = h.processReady('2');
      expect(ready?.hardState).to.deep.equal({ term: 2, votedFor: null }); // the term still moves
      expect(voteResponses(ready?.messages ?? [])).to.deep.equal([{ type: 'vote_resp', term: 2, from: '2', to: '3', granted: false, pre: false }]);
    });

    it('refuses a candidate with the same last term and a shorter log', () => {
      const h = voter();
      h.inject(voteRequest('3', '2', 2, 1, 1));
      const ready = h.processReady('2');
      expect(ready?.hardState).to.deep.equal({ term: 2, votedFor: null });
      expect(voteResponses(ready?.messages ?? []).map((m) => m.granted)).to.deep.equal([false]);
      expect(h.raft('2').votedFor).to.equal(null);
    });

    it('grants an equal log, and the vote is in hardState of the same ready that carries the answer in messages', () => {
      const h = voter();
      h.inject(voteRequest('3', '2', 2, 1, 2));
      const ready = h.processReady('2');
      expect(ready?.hardState).to.deep.equal({ term: 2, votedFor: '3' });
      expect(ready?.sendNow).to.deep.equal([]); // never before the vote is durable
      expect(ready?.messages).to.deep.equal([{ type: 'vote_resp', term: 2, from: '2', to: '3', granted: true, pre: false }]);
      expect(h.disk('2').hardState).to.deep.equal({ term: 2, votedFor: '3' });
    });

    it('grants one vote per term: a second candidate of the same term is refused, the first may ask again', () => {
      const h = voter();
      h.inject(voteRequest('3', '2', 2, 1, 2));
      h.processReady('2');
      h.inject(voteRequest('1', '2', 2, 1, 5)); // a better log, but the vote is spent
      const second = h.processReady('2');
      expect(second?.hardState).to.equal(null);
      expect(voteResponses(second?.messages ?? []).map((m) => [m.to, m.granted])).to.deep.equal([['1', false]]);
      h.inject(voteRequest('3', '2', 2, 1, 2)); // a retransmission from the one we voted for
      const again = h.processReady('2');
      expect(voteResponses(again?.messages ?? []).map((m) => [m.to, m.granted])).to.deep.equal([['3', true]]);
      expect(h.raft('2').votedFor).to.equal('3');
    });

    it('a vote granted without a term change is still in hardState before its answer goes out', () => {
      const h = voter();
      h.inject(voteRequest('1', '2', 2, 1, 1)); // refused (shorter log), but term 2 is now durable
      expect(h.processReady('2')?.hardState).to.deep.equal({ term: 2, votedFor: null });
      h.inject(voteRequest('3', '2', 2, 1, 2));
      const ready = h.processReady('2');
      expect(ready?.hardState).to.deep.equal({ term: 2, votedFor: '3' });
      expect(ready?.sendNow).to.deep.equal([]);
      expect(voteResponses(ready?.messages ?? []).map((m) => [m.to, m.granted])).to.deep.equal([['3', true]]);
      expect(h.disk('2').hardState).to.deep.equal({ term: 2, votedFor: '3' });
    });

    it('pre-votes follow the same log rule and change neither term nor vote', () => {
      const h = voter();
      h.inject(voteRequest('3', '2', 2, 1, 1, true));
      h.inject(voteRequest('3', '2', 2, 1, 2, true));
      const ready = h.processReady('2');
      expect(ready?.hardState).to.equal(null);
      expect(voteResponses(ready?.messages ?? []).map((m) => [m.term, m.granted, m.pre])).to.deep.equal([[1, false, true], [2, true, true]]);
      expect([h.raft('2').term, h.raft('2').votedFor]).to.deep.equal([1, '1']);
    });

    it('a follower that heard from its leader within the election timeout refuses votes and pre-votes', () => {
      const h = threeNodes(1, ['a']);
      h.setNow(h.now + ET - 1);
      h.inject(voteRequest('3', '2', 2, 1, 2, true));
      h.inject(voteRequest('3', '2', 2, 1, 2));
      const ready = h.processReady('2');
      expect(ready?.hardState).to.equal(null);
      expect(voteResponses(ready?.messages ?? []).map((m) => [m.term, m.granted, m.pre])).to.deep.equal([[1, false, true], [1, false, false]]);
      expect([h.raft('2').term, h.raft('2').leader]).to.deep.equal([1, '1']);
    });
  });

  describe('pre-vote (thesis §9.6)', () => {
    it('a partitioned node keeps its term while it times out, and on rejoining does not disrupt the leader', () => {
      const h = threeNodes(1, ['a']);
      h.isolate('3');
      h.elapse(5 * ET);
      // It campaigned more than once, only ever with pre-votes, and still sits at term 1.
      const preVotes = h.transcript.filter((l) => l.startsWith('DROP 3->') && l.includes('MsgPreVote Term:2'));
      expect(preVotes.length).to.be.greaterThanOrEqual(4);
      expect(h.transcript.filter((l) => l.includes('3->') && l.includes(' MsgVote '))).to.deep.equal([]);
      expect([h.raft('3').term, h.raft('3').role]).to.deep.equal([1, 'precandidate']);
      h.propose('1', 'b');
      h.stabilize();

      h.heal();
      h.elapse(3 * ET);
      expect(h.currentLeaders()).to.deep.equal(['1']);
      expect([...h.leaders.entries()]).to.deep.equal([[1, '1']]); // nobody ever led another term
      for (const id of h.ids) {
        expect([id, h.raft(id).term, h.raft(id).leader, h.raft(id).commitIndex]).to.deep.equal([id, 1, '1', 3]);
        expect(h.appliedData(id)).to.deep.equal(['a', 'b']);
      }
    });
  });

  describe('check-quorum (thesis §6.2)', () => {
    it('a leader cut off from both followers steps down within two election timeouts; the others elect a higher term', () => {
      const h = threeNodes(1, ['a']);
      h.elapse(500);
      const cutAt = h.now;
      h.isolate('1');
      expect(h.propose('1', 'lost')).to.equal(3); // it still thinks it leads, but cannot commit
      let steppedDownAt: number | null = null;
      while (h.now < cutAt + 3 * ET) {
        h.elapse(HB);
        if (steppedDownAt === null && !h.raft('1').isLeader) steppedDownAt = h.now;
      }
      expect(steppedDownAt).to.not.equal(null);
      expect((steppedDownAt as number) - cutAt).to.be.at.most(2 * ET);
      expect([h.raft('1').role, h.raft('1').term, h.raft('1').leader, h.raft('1').commitIndex]).to.deep.equal(['follower', 1, null, 2]);
      expect(h.currentLeaders()).to.deep.equal(['2']);
      expect([h.raft('2').term, h.raft('3').term, h.raft('3').leader]).to.deep.equal([2, 2, '2']);

      h.heal();
      h.elapse(2 * ET);
      expect(h.currentLeaders()).to.deep.equal(['2']);
      for (const id of h.ids) {
        expect([id, h.raft(id).term, h.raft(id).leader, h.raft(id).commitIndex]).to.deep.equal([id, 2, '2', 3]);
        expect(h.logTerms(id)).to.deep.equal([1, 1, 2]); // "lost" was replaced by 2's no-op
        expect(h.appliedData(id)).to.deep.equal(['a']);
      }
    });
  });

  describe('log conflicts (§5.3)', () => {
    it('a deposed leader has its uncommitted entries truncated and replaced; committed ones stay', () => {
      const h = threeNodes(1, ['a']);
      h.isolate('1');
      h.propose('1', 'b');
      h.propose('1', 'c');
      h.stabilize();
      expect(h.logTerms('1')).to.deep.equal([1, 1, 1, 1]);
      expect(h.raft('1').commitIndex).to.equal(2);

      h.elect('2');
      expect(h.raft('2').term).to.equal(2);
      h.propose('2', 'd');
      h.stabilize();
      expect(h.raft('2').commitIndex).to.equal(4);

      h.heal();
      h.elapse(2 * HB);
      const truncations = h.readies('1').filter((r) => r.truncateFrom !== null).map((r) => r.truncateFrom);
      expect(truncations).to.deep.equal([3]); // just past the committed "a"
      for (const id of h.ids) {
        expect([id, h.raft(id).term, h.raft(id).leader, h.raft(id).commitIndex]).to.deep.equal([id, 2, '2', 4]);
        expect(h.logTerms(id)).to.deep.equal([1, 1, 2, 2]);
        expect(h.appliedData(id)).to.deep.equal(['a', 'd']);
        expect(h.disk(id).entries.map((e) => `${e.term}/${e.index} ${String(e.data)}`))
          .to.deep.equal(['1/1 null', '1/2 a', '2/3 null', '2/4 d']);
      }
      // "b" and "c" were never committed anywhere, so never applied anywhere.
      expect(h.ids.flatMap((id) => h.appliedData(id)).filter((d) => d === 'b' || d === 'c')).to.deep.equal([]);
    });
  });

  describe('Figure 8 (§5.4.2): an old-term entry is committed only through a current-term entry', () => {
    // Five nodes. (a) 1 leads term 1 and gets 1/2 "a" onto 2 only. (b) 5 leads term 2 without
    // it, appends its no-op 2/2 locally and crashes. (c) 1 restarts, leads term 3, and copies
    // 1/2 onto 3 and 4: now four of five hold it, yet it must not be committed. Then either (d) 1
    // crashes and 5 leads term 4 and overwrites index 2 everywhere (so committing 1/2 by
    // counting would have been unsafe), or (e) 1's own no-op 3/3 reaches a majority and commits
    // 1/2 along with it.
    function upToC(): Harness {
      const h = new Harness(['1', '2', '3', '4', '5'], { seed: 8 });
      h.elect('1');
      h.isolate('1');
      h.heal('1', '2');
      h.propose('1', 'a');
      h.stabilize();
      expect(h.logTerms('1')).to.deep.equal([1, 1]);
      expect(h.logTerms('2')).to.deep.equal([1, 1]);
      expect(h.logTerms('3')).to.deep.equal([1]);
      expect(h.raft('1').commitIndex).to.equal(1);
      h.crash('1');
      h.heal();

      // (b) 5 wins term 2 with 3 and 4 (2 is cut off), then its no-op never leaves it.
      h.isolate('2');
      h.elect('5', { drop: (m) => m.from === '5' && isAppend(m) });
      expect(h.raft('5').term).to.equal(2);
      h.crash('5');
      h.drop();
      expect(h.disk('5').entries.map((e) => `${e.term}/${e.index}`)).to.deep.equal(['1/1', '2/2']);
      expect(h.logTerms('3')).to.deep.equal([1]);

      // (c) 1 comes back and wins term 3 with 3 and 4, and copies 1/2 onto both; its no-op 3/3
      // is lost on the way every time a follower would have accepted it.
      h.restart('1');
      const wouldAcceptNoop3 = (m: Message): boolean => m.from === '1' && isAppend(m) && m.entries.some((e) => e.term === 3)
        && h.isUp(m.to) && h.raft(m.to).log.termAt(m.prevIndex) === m.prevTerm;
      h.elect('1', { drop: wouldAcceptNoop3 });
      expect(h.raft('1').term).to.equal(3);
      expect(h.logTerms('1')).to.deep.equal([1, 1, 3]);
      expect(h.logTerms('3')).to.deep.equal([1, 1]);
      expect(h.logTerms('4')).to.deep.equal([1, 1]);
      // 1/2 is on 1, 2, 3 and 4, a majority of five, and still not committed (nor applied).
      // (1 restarted with commit index 0: a commit index is not persisted, and this leader
      // cannot learn it until an entry of term 3 commits.)
      expect(h.raft('1').commitIndex).to.equal(0);
      expect(h.raft('3').commitIndex).to.equal(1);
      expect(h.ids.filter((id) => h.isUp(id)).flatMap((id) => h.appliedData(id))).to.deep.equal([]);
      return h;
    }

    it('(d) the entry on a majority, never committed, is overwritten by a later leader', () => {
      const h = upToC();
      h.crash('1');
      h.drop();
      h.heal();
      h.restart('5');
      h.elect('5');
      expect(h.raft('5').term).to.equal(4);
      h.propose('5', 'e');
      h.stabilize();
      for (const id of ['2', '3', '4', '5']) {
        expect(h.logTerms(id), `log of ${id}`).to.deep.equal([1, 2, 4, 4]);
        expect(h.raft(id).commitIndex).to.equal(4);
        expect(h.appliedData(id)).to.deep.equal(['e']);
      }
      expect(h.readies('3').map((r) => r.truncateFrom).filter((t) => t !== null)).to.deep.equal([2]);
      h.restart('1');
      h.elapse(2 * HB);
      expect(h.logTerms('1')).to.deep.equal([1, 2, 4, 4]);
      expect(h.appliedData('1')).to.deep.equal(['e']);
    });

    it('(e) once 3/3 is on a majority, 1/2 is committed with it', () => {
      const h = upToC();
      h.heal();
      h.elapse(2 * HB);
      expect(h.raft('1').commitIndex).to.equal(3);
      for (const id of ['1', '2', '3', '4']) {
        expect(h.logTerms(id), `log of ${id}`).to.deep.equal([1, 1, 3]);
        expect(h.appliedData(id)).to.deep.equal(['a']);
      }
    });
  });

  describe('catching up', () => {
    // The leader ticks (heartbeats with Commit:1 in its outbox), then answers move its commit
    // index to 2 before ready(): the followers must still hear of 2 in this round, not at the
    // next heartbeat. (An earlier tellCommit() skipped any peer with an append already queued,
    // whatever commit that append carried, and hasReady() did not notice.)
    it('followers learn a commit index that moved after a heartbeat was queued', () => {
      const h = threeNodes(1);
      h.propose('1', 'a');
      h.processReady('1');
      h.deliver();
      h.processReady('2');
      h.processReady('3');
      h.tick('1', h.now + HB); // heartbeats with Commit:1 wait in the leader's outbox
      h.deliver(); // the answers for "a": commit 2 on the leader
      expect(h.raft('1').commitIndex).to.equal(2);
      h.stabilize();
      expect(h.ids.map((id) => h.raft(id).commitIndex)).to.deep.equal([2, 2, 2]);
      expect(h.appliedData('2')).to.deep.equal(['a']);
    });

    it('a follower behind after a partition is backed up with the hint and catches up', () => {
      const h = threeNodes(1, ['a']);
      h.isolate('3');
      for (let i = 1; i <= 5; i++) h.propose('1', `b${i}`);
      h.stabilize();
      expect(h.raft('1').commitIndex).to.equal(7);
      expect(h.logTerms('3')).to.deep.equal([1, 1]);

      h.heal();
      h.transcript.length = 0;
      h.tick('1', h.now + HB);
      h.stabilize();
      expect(h.transcript.filter((l) => l.startsWith('1->3') || l.startsWith('3->1'))).to.deep.equal([
        '1->3 MsgApp Term:1 Log:1/7 Commit:7',
        '3->1 MsgAppResp Term:1 Rejected Hint:2',
        '1->3 MsgApp Term:1 Log:1/2 Commit:7 Entries:[1/3 "b1"]',
        '3->1 MsgAppResp Term:1 Match:3',
        '1->3 MsgApp Term:1 Log:1/3 Commit:7 Entries:[1/4 "b2", 1/5 "b3", 1/6 "b4", 1/7 "b5"]',
        '3->1 MsgAppResp Term:1 Match:7',
      ]);
      expect(h.raft('3').commitIndex).to.equal(7);
      expect(h.appliedData('3')).to.deep.equal(['a', 'b1', 'b2', 'b3', 'b4', 'b5']);
    });

    it('a follower far behind a compacted leader gets a snapshot, then the log tail', () => {
      const h = threeNodes(1, ['a']);
      h.isolate('3');
      for (let i = 1; i <= 6; i++) h.propose('1', `b${i}`);
      h.stabilize();
      h.compact('1', 6);
      expect([h.raft('1').log.snapshotIndex, h.raft('1').log.firstIndex, h.raft('1').log.lastIndex]).to.deep.equal([6, 7, 8]);

      h.heal();
      h.tick('1', h.now + HB);
      h.processReady('1');
      h.deliver(); // the heartbeat, refused by 3 (Hint:2)
      h.processReady('3');
      h.deliver(); // the refusal: 3 needs index 3, compacted away
      h.processReady('1');
      const snaps = h.queue.filter((m) => m.type === 'snapshot');
      expect(snaps.map((m) => [m.to, m.type === 'snapshot' ? m.snapshot.index : 0, m.term])).to.deep.equal([['3', 6, 1]]);
      h.deliver((m) => m.type === 'snapshot');
      expect(h.raft('3').commitIndex).to.equal(6);
      const ready = h.processReady('3');
      expect(ready?.snapshot).to.deep.include({ index: 6, term: 1 });
      expect(ready?.committed).to.deep.equal([]);
      expect(h.appliedData('3')).to.deep.equal(['a', 'b1', 'b2', 'b3', 'b4']); // from the snapshot

      h.stabilize();
      expect(h.raft('3').commitIndex).to.equal(8);
      expect([h.raft('3').log.snapshotIndex, h.raft('3').log.lastIndex]).to.deep.equal([6, 8]);
      expect(h.appliedData('3')).to.deep.equal(['a', 'b1', 'b2', 'b3', 'b4', 'b5', 'b6']);
      expect(h.disk('3').snapshot).to.deep.include({ index: 6, term: 1 });

      // And it comes back from that disk after a crash.
      h.crash('3');
      h.restart('3');
      expect([h.raft('3').log.snapshotIndex, h.raft('3').log.lastIndex, h.raft('3').commitIndex]).to.deep.equal([6, 8, 6]);
      h.elapse(HB);
      expect(h.appliedData('3')).to.deep.equal(['a', 'b1', 'b2', 'b3', 'b4', 'b5', 'b6']);
    });
  });

  describe('snapshots replacing a log', () => {
    // Raft §7: a snapshot that does not match the follower's log replaces all of it, on disk
    // too: the Ready carrying it says truncateFrom = snapshot index + 1, so a deposed leader's
    // uncommitted tail beyond the snapshot neither blocks the next append nor survives a restart.
    it('a follower restored from a snapshot leaves no stale tail on disk', () => {
      const h = threeNodes(1, ['a']);
      h.isolate('1');
      for (let i = 1; i <= 10; i++) h.propose('1', `b${i}`); // 1/3..1/12, never committed
      h.stabilize();
      h.elect('2');
      for (let i = 1; i <= 8; i++) h.propose('2', `c${i}`); // 2/3 (no-op), 2/4..2/11
      h.stabilize();
      h.compact('2', 9);
      h.heal();
      h.tick('2', h.now + HB);
      h.processReady('2');
      h.deliver((m) => m.type === 'snapshot');
      const ready = h.processReady('1');
      expect(ready?.snapshot).to.deep.include({ index: 9, term: 2 });
      expect(h.disk('1').entries.filter((e) => e.index > 9), 'stale tail on disk').to.deep.equal([]);
      h.crash('1');
      h.restart('1'); // today: AssertionError "append of term 1 after term 2"
      h.elapse(2 * HB);
      expect([h.raft('1').log.snapshotIndex, h.raft('1').log.lastIndex, h.raft('1').commitIndex]).to.deep.equal([9, 11, 11]);
      expect(h.logTerms('1')).to.deep.equal([2, 2]); // 2/10 "c7", 2/11 "c8"
      expect(h.appliedData('1')).to.deep.equal(h.appliedData('2'));
    });
  });

  describe('read index (thesis §6.4)', () => {
    it('the leader confirms a read after a heartbeat round answered by a majority, at the commit index of the time', () => {
      const h = threeNodes(1, ['a']);
      expect(h.readIndex('1', 'r1')).to.equal(true);
      h.propose('1', 'b'); // the commit index moves on after the read; the read keeps index 2
      const ready = h.processReady('1');
      expect(ready?.reads).to.deep.equal([]);
      const heartbeats = (ready?.sendNow ?? []).filter(isAppend).filter((m) => m.read === 1);
      expect(heartbeats.map((m) => m.to)).to.deep.equal(['2', '3', '2', '3']);

      h.deliver((m) => m.to === '2'); // only 2 answers: with the leader that is a majority
      h.processReady('2');
      h.drop((m) => m.to === '3');
      expect(h.processReady('1')).to.equal(null);
      h.deliver((m) => m.from === '2');
      expect(h.processReady('1')?.reads).to.deep.equal([{ ctx: 'r1', index: 2 }]);
      expect(h.reads('1')).to.deep.equal([{ ctx: 'r1', index: 2 }]);
      expect(h.raft('1').commitIndex).to.equal(3);
    });

    it('a follower refuses to serve a read index', () => {
      const h = threeNodes(1, ['a']);
      expect(h.readIndex('2', 'r1')).to.equal(false);
      h.stabilize();
      expect(h.reads('2')).to.deep.equal([]);
    });

    it('a new leader defers reads until its no-op is committed', () => {
      const h = new Harness(['1', '2', '3'], { seed: 1 });
      h.campaign('1');
      h.stabilize({ drop: (m) => isAppend(m) }); // elected, but its no-op goes nowhere
      expect([h.raft('1').isLeader, h.raft('1').commitIndex]).to.deep.equal([true, 0]);
      expect(h.readIndex('1', 'r1')).to.equal(true);
      h.tick('1', h.now + HB); // a heartbeat round answered by everyone confirms nothing yet
      h.stabilize({ drop: (m) => isAppend(m) && m.entries.length > 0 });
      expect(h.reads('1')).to.deep.equal([]);
      expect(h.raft('1').commitIndex).to.equal(0);
      h.tick('1', h.now + HB);
      h.stabilize();
      expect(h.raft('1').commitIndex).to.equal(1);
      expect(h.reads('1')).to.deep.equal([{ ctx: 'r1', index: 1 }]);
    });

    it('reads pending when leadership is lost are dropped, never confirmed', () => {
      const h = threeNodes(1, ['a']);
      expect(h.readIndex('1', 'r1')).to.equal(true);
      h.processReady('1'); // the read round is now in flight, and held there
      const held = h.queue.length;
      expect(held).to.equal(2);
      // The leader hears nothing for two election timeouts and steps down (check-quorum).
      const end = h.now + 2 * ET + HB;
      while (h.now < end && h.raft('1').isLeader) {
        h.tick('1', h.now + HB);
        h.processReady('1');
      }
      expect([h.raft('1').role, h.raft('1').term]).to.deep.equal(['follower', 1]);
      h.stabilize(); // now every held round and heartbeat is delivered and answered
      expect(h.reads('1')).to.deep.equal([]);
      // Even leading again later, in term 2, it confirms only reads started in term 2.
      h.elect('1');
      expect(h.raft('1').term).to.equal(2);
      expect(h.readIndex('1', 'r2')).to.equal(true);
      h.stabilize();
      expect(h.reads('1')).to.deep.equal([{ ctx: 'r2', index: 3 }]);
      expect(h.readies('1').flatMap((r) => r.reads)).to.deep.equal([{ ctx: 'r2', index: 3 }]);
    });

    it('answers to rounds sent before the read do not confirm it', () => {
      const h = threeNodes(1, ['a']);
      h.readIndex('1', 'r0');
      h.stabilize();
      expect(h.reads('1')).to.deep.equal([{ ctx: 'r0', index: 2 }]);
      h.propose('1', 'b');
      h.processReady('1'); // appends of round 1 in flight
      expect(h.readIndex('1', 'r1')).to.equal(true); // round 2, not yet sent
      h.deliver();
      h.processReady('2');
      h.processReady('3');
      const answers = h.deliver(); // both followers answer round 1
      expect(answers.map((m) => m.type === 'append_resp' ? [m.from, m.read] : [])).to.deep.equal([['2', 1], ['3', 1]]);
      expect(h.processReady('1')?.reads).to.deep.equal([]);
      h.stabilize();
      expect(h.reads('1')).to.deep.equal([{ ctx: 'r0', index: 2 }, { ctx: 'r1', index: 2 }]);
      expect(h.raft('1').commitIndex).to.equal(3);
    });
  });

  describe('restart', () => {
    it("a node's term, vote and log survive crash and restart", () => {
      const h = threeNodes(1, ['a', 'b']);
      h.crash('2');
      h.restart('2');
      const raft = h.raft('2');
      expect([raft.term, raft.votedFor, raft.role, raft.leader, raft.log.lastIndex, raft.log.stableIndex])
        .to.deep.equal([1, '1', 'follower', null, 3, 3]);
      expect(h.logTerms('2')).to.deep.equal([1, 1, 1]);
      expect(h.appliedData('2')).to.deep.equal([]); // the state machine restarts empty...
      h.elapse(HB);
      expect(h.raft('2').commitIndex).to.equal(3);
      expect(h.appliedData('2')).to.deep.equal(['a', 'b']); // ...and is rebuilt from the log
    });

    it('a restarted node never votes twice in the same term', () => {
      const h = threeNodes(1, ['a']);
      h.setNow(h.now + 2 * ET);
      h.inject(voteRequest('1', '3', 2, 1, 2));
      expect(voteResponses(h.processReady('3')?.messages ?? []).map((m) => m.granted)).to.deep.equal([true]);
      h.crash('3');
      h.restart('3');
      expect([h.raft('3').term, h.raft('3').votedFor]).to.deep.equal([2, '1']);
      h.inject(voteRequest('2', '3', 2, 1, 2));
      const ready = h.processReady('3');
      expect(voteResponses(ready?.messages ?? []).map((m) => [m.to, m.term, m.granted])).to.deep.equal([['2', 2, false]]);
      expect(h.disk('3').hardState).to.deep.equal({ term: 2, votedFor: '1' });
    });
  });

  describe('determinism', () => {
    function run(seed: number): string[] {
      const h = new Harness(['1', '2', '3', '4', '5'], { seed });
      h.elapse(3 * ET); // nobody is told to campaign: the seeded timeouts decide
      const first = h.currentLeaders()[0] as string;
      h.propose(first, 'x');
      h.isolate(first);
      h.elapse(3 * ET);
      const second = h.currentLeaders().filter((id) => id !== first)[0] as string;
      h.propose(second, 'y');
      h.crash(second);
      h.heal();
      h.elapse(3 * ET);
      h.restart(second);
      h.elapse(2 * ET);
      return [...h.transcript, `leaders ${[...h.leaders.entries()].join(' ')}`];
    }

    it('two runs with the same seed give identical transcripts', () => {
      const a = run(42);
      const b = run(42);
      expect(a.length).to.be.greaterThan(100);
      expect(a).to.deep.equal(b);
    });

    it('the seed is what decides: another seed gives another run', () => {
      expect(run(42)).to.not.deep.equal(run(43));
    });
  });
});
