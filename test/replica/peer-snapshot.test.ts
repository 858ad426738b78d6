// A lagging follower is sent the same snapshot on every heartbeat until it answers: the state
// is encoded once, not once per heartbeat, and only while the log still continues it.
import { expect } from 'chai';
import { PeerSnapshot } from '../../lib/replica/peer-snapshot';
import type { Snapshot } from '../../lib/raft/messages';

describe('PeerSnapshot', () => {
  it('makes a snapshot once and sends it again while the log continues it', () => {
    const cache = new PeerSnapshot();
    let made = 0;
    let applied = 100;
    const make = (): Snapshot => ({ index: applied, term: 2, data: `state-${++made}` });
    const first = cache.get(90, make);
    applied = 130; // more was applied meanwhile: the old one is still a valid start
    expect(cache.get(90, make)).to.equal(first);
    expect(cache.get(100, make)).to.equal(first);
    expect(made).to.equal(1);
    // The log was compacted past it: a follower installing it could not continue from the log.
    const second = cache.get(101, make);
    expect(second).to.deep.equal({ index: 130, term: 2, data: 'state-2' });
  });

  it('forgets the snapshot once compaction passes it, and only then', () => {
    const cache = new PeerSnapshot();
    let made = 0;
    const make = (): Snapshot => ({ index: 50, term: 1, data: `state-${++made}` });
    cache.get(40, make);
    cache.forgetBefore(50);
    expect(cache.get(40, make).data).to.equal('state-1');
    cache.forgetBefore(51);
    expect(cache.get(40, make).data).to.equal('state-2');
  });
});
