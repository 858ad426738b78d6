// Fuzzing a live node (lib/fuzz): raw lines and model-checked request interleavings against a
// real single-member node in this process, a bounded number of cases each. The harness must
// also catch what it is there to catch: a planted crash in the node is found and shrunk to the
// one line that triggers it.
import { expect } from 'chai';
import { FuzzNode } from '../../lib/fuzz/fuzz-node';
import type { LinesCase } from '../../lib/fuzz/live-lines';
import { lineOf } from '../../lib/fuzz/live-lines';
import { formatFailure, runAsyncTarget } from '../../lib/fuzz/report';
import { liveLinesProperty, liveModelProperty } from '../../lib/fuzz/targets';
import { LatchkeyNode } from '../../lib/io/node';
import type { Request } from '../../lib/protocol/schemas';

const seed = 20240611;

describe('fuzz: a live node', function () {
  this.timeout(60000);
  const node = new FuzzNode();

  before(async () => {
    await node.start();
  });

  after(async () => {
    await node.stop();
  });

  it('answers every raw line exactly once and stays available over 300 cases', async () => {
    const result = await runAsyncTarget('lines', liveLinesProperty(node), { cases: 300, seed });
    expect(result.failure, formatFailure(result)).to.equal(null);
    expect(result.cases).to.equal(300);
  });

  it('agrees with the lock model over 150 random interleavings of valid requests', async () => {
    const result = await runAsyncTarget('model', liveModelProperty(node), { cases: 150, seed });
    expect(result.failure, formatFailure(result)).to.equal(null);
    expect(result.cases).to.equal(150);
  });

  it('catches a planted crash and shrinks it to the one line that triggers it', async () => {
    // The planted bug: a valid `read` of fz-file-2 throws inside the node's socket handler.
    const open = Object.getOwnPropertyDescriptor(LatchkeyNode.prototype, 'open')?.value as LatchkeyNode['open'];
    LatchkeyNode.prototype.open = function (this: LatchkeyNode, connection) {
      const handle = open.call(this, connection);
      return {
        get bound() {
          return handle.bound;
        },
        request: (request: Request) => {
          if (request.action === 'read' && request.file === 'fz-file-2') throw new Error('planted crash');
          handle.request(request);
        },
        close: () => handle.close(),
      };
    };
    // Mocha fails whichever test is running on an uncaught exception; here the fuzzer is the one
    // meant to notice it, so mocha's listeners step aside for this test (the node's own watch
    // comes back with it).
    await node.stop();
    const mochaListeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    try {
      await node.start();
      const result = await runAsyncTarget('lines', liveLinesProperty(node), { cases: 1000, seed });
      expect(result.failure, 'the planted crash was not found').to.not.equal(null);
      expect(result.failure?.message).to.include('the node crashed: Error: planted crash');
      const [shrunk] = result.failure?.value as [LinesCase];
      expect(shrunk.lines, formatFailure(result)).to.have.length(1);
      expect(lineOf(shrunk.lines[0]?.seed ?? 0).toString()).to.match(/"action":"read".*"file":"fz-file-2"/);
    } finally {
      await node.stop();
      for (const listener of mochaListeners) process.on('uncaughtException', listener);
      LatchkeyNode.prototype.open = open;
      await node.start();
    }
  });
});
