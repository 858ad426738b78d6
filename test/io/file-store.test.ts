// The on-disk copies of guarded files: every name the contract allows gets a file the file
// system accepts, and a copy that cannot be written never stops the node.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import { FileStore, fileNameOnDisk } from '../../lib/io/file-store';
import { silentLogger } from '../../lib/io/logger';

describe('io/file-store', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'latchkey-files-'));
  });

  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('maps the longest names (256 characters, 128 slashes) to distinct names under NAME_MAX', () => {
    const names = ['a'.repeat(256), `${'a/'.repeat(127)}ab`, `${'a/'.repeat(127)}ac`, 'plain/name'];
    const disk = names.map(fileNameOnDisk);
    expect(new Set(disk).size).to.equal(names.length);
    for (const d of disk) expect(Buffer.byteLength(d)).to.be.at.most(200);
    expect(fileNameOnDisk('plain/name')).to.equal('plain%2Fname');
  });

  it('writes and appends to files with the longest names, at start-up and after', async () => {
    const store = new FileStore(path.join(dir, 'files'), silentLogger);
    const long = `${'x/'.repeat(127)}yz`;
    await store.init([[long, 'first ']]);
    store.append(long, 'second');
    await store.drain();
    const written = await fs.readFile(path.join(dir, 'files', fileNameOnDisk(long)), 'utf8');
    expect(written).to.equal('first second');
  });
});
