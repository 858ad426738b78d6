// The hard state (term, vote) and the atomic file write under it: a node that never voted reads
// term 0, what was written is what is read back, and overlapping writes land in call order.
import { expect } from 'chai';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { AssertionError } from '../../lib/core/assert';
import { writeFileAtomic } from '../../lib/io/atomic-file';
import { hardStateFileName, readHardState, writeHardState } from '../../lib/io/hard-state';

let root: string;

beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'latchkey-hard-state-'));
});

afterEach(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

async function expectRejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  expect.fail('expected the promise to reject');
}

describe('hard state', () => {
  it('reads term 0 and no vote when the file or the directory is missing', async () => {
    expect(await readHardState(root)).to.deep.equal({ term: 0, votedFor: null });
    expect(await readHardState(path.join(root, 'nope'))).to.deep.equal({ term: 0, votedFor: null });
  });

  it('reads back what was written, across overwrites, with no temp file left', async () => {
    const dir = path.join(root, 'data');
    await writeHardState(dir, { term: 3, votedFor: 'n2' });
    expect(await readHardState(dir)).to.deep.equal({ term: 3, votedFor: 'n2' });
    await writeHardState(dir, { term: 4, votedFor: null });
    expect(await readHardState(dir)).to.deep.equal({ term: 4, votedFor: null });
    await writeHardState(dir, { term: 2 ** 40, votedFor: 'node-with-a-longer-id' });
    expect(await readHardState(dir)).to.deep.equal({ term: 2 ** 40, votedFor: 'node-with-a-longer-id' });
    expect(await fs.readdir(dir)).to.deep.equal([hardStateFileName]);
  });

  it('lands overlapping writes in call order', async () => {
    const writes: Array<Promise<void>> = [];
    for (let term = 1; term <= 40; term++) writes.push(writeHardState(root, { term, votedFor: `n${term}` }));
    await Promise.all(writes);
    expect(await readHardState(root)).to.deep.equal({ term: 40, votedFor: 'n40' });
  });

  it('refuses to write an invalid state', async () => {
    expect(await expectRejection(writeHardState(root, { term: -1, votedFor: null }))).to.be.instanceOf(AssertionError);
    expect(await expectRejection(writeHardState(root, { term: 1.5, votedFor: null }))).to.be.instanceOf(AssertionError);
    expect(await expectRejection(writeHardState(root, { term: 1, votedFor: '' }))).to.be.instanceOf(AssertionError);
    expect(await readHardState(root)).to.deep.equal({ term: 0, votedFor: null });
  });

  it('refuses to guess when the file is damaged', async () => {
    const file = path.join(root, hardStateFileName);
    for (const text of ['', '{"version":1,"term":', '[]', '{"version":1,"term":-3,"votedFor":null}',
      '{"version":2,"term":3,"votedFor":null}', '{"version":1,"term":3,"votedFor":7}']) {
      await fs.writeFile(file, text);
      const error = await expectRejection(readHardState(root));
      expect((error as Error).message).to.match(/hard state file is corrupt/);
    }
  });
});

describe('writeFileAtomic', () => {
  it('creates and then replaces a file, leaving no temp file', async () => {
    const file = path.join(root, 'snapshot.bin');
    await writeFileAtomic(file, Buffer.from([1, 2, 3]));
    expect([...(await fs.readFile(file))]).to.deep.equal([1, 2, 3]);
    await writeFileAtomic(file, 'second');
    expect(await fs.readFile(file, 'utf8')).to.equal('second');
    expect(await fs.readdir(root)).to.deep.equal(['snapshot.bin']);
  });

  it('creates missing parent directories', async () => {
    const file = path.join(root, 'a', 'b', 'snapshot.bin');
    await writeFileAtomic(file, 'deep');
    expect(await fs.readFile(file, 'utf8')).to.equal('deep');
  });

  it('removes its temp file when the rename fails', async () => {
    // A non-empty directory cannot be replaced by a file, so the rename step fails.
    const target = path.join(root, 'occupied');
    await fs.mkdir(target);
    await fs.writeFile(path.join(target, 'keep'), 'x');
    await expectRejection(writeFileAtomic(target, 'new'));
    expect((await fs.readdir(root)).sort()).to.deep.equal(['occupied']);
    expect(await fs.readdir(target)).to.deep.equal(['keep']);
  });
});
