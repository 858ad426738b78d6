// The hand-built append line must say exactly what JSON.stringify of the message says, for any
// command text (quotes, newlines, lone surrogates, unicode names), and each command is encoded
// once however many followers and disk writes use it.
import { expect } from 'chai';
import fc from 'fast-check';
import { commandText, encodePeerMessage } from '../../lib/io/entry-codec';
import type { Command } from '../../lib/locks/commands';
import type { Entry } from '../../lib/raft/messages';
import type { PeerMessage } from '../../lib/replica/peer-messages';
import { awkwardString } from '../../lib/fuzz/arbitraries';

const command = fc.record({
  type: fc.constantFrom('preempt', 'release', 'append', 'hello'),
  at: fc.nat(),
  client: awkwardString(0, 20),
  lock: awkwardString(0, 20),
  data: fc.option(fc.jsonValue(), { nil: undefined }),
}) as unknown as fc.Arbitrary<Command>;

const entries = fc.array(fc.record({ term: fc.nat(), data: fc.option(command, { nil: null }) }), { maxLength: 8 })
  .map((list) => list.map((entry, i): Entry<Command> => ({ index: 1000 + i, term: entry.term, data: entry.data })));

const append = fc.record({
  term: fc.nat(), from: awkwardString(1, 8), to: awkwardString(1, 8), prevIndex: fc.nat(), prevTerm: fc.nat(),
  entries, commit: fc.nat(), read: fc.nat(),
}).map((m): PeerMessage => ({ type: 'append', ...m }));

describe('entry codec', () => {
  it('an append line parses to the same message as JSON.stringify gives', () => {
    fc.assert(fc.property(append, (message) => {
      expect(JSON.parse(encodePeerMessage(message))).to.deep.equal(JSON.parse(JSON.stringify(message)));
    }), { numRuns: 500 });
  });

  it('other messages are plain JSON', () => {
    const vote: PeerMessage = { type: 'vote', term: 3, from: 'n1', to: 'n2', lastIndex: 9, lastTerm: 2, pre: false };
    expect(encodePeerMessage(vote)).to.equal(JSON.stringify(vote));
  });

  it('encodes a command once and hands the same text to every user', () => {
    const data = { type: 'preempt', at: 5, client: 'c', lock: 'l' } as unknown as Command;
    const entry: Entry<Command> = { index: 1, term: 1, data };
    const first = commandText(entry);
    // The cache is keyed by the command object: a second call returns the stored text even if
    // the object were (wrongly) changed, which shows it did not encode again.
    (data as unknown as { at: number }).at = 6;
    expect(commandText(entry)).to.equal(first);
    expect(commandText({ index: 2, term: 1, data: null })).to.equal('null');
  });
});
