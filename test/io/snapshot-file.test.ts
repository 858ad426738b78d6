// The snapshot file: the header line and the text as it is, written in pieces that never split a
// surrogate pair; the first format (one JSON object with the text escaped inside) is still read.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import { parseSnapshotFile, snapshotFileChunks, writeSnapshotFile } from '../../lib/io/snapshot-file';

describe('snapshot file', () => {
  it('round-trips a large text with pairs at every slice boundary, byte for byte', async () => {
    const data = `{"v":2,"x":"${'a'.repeat((1 << 18) - 1)}${'😀'.repeat(300000)}\n"}`;
    const chunks = snapshotFileChunks({ index: 7, term: 3, data });
    expect(chunks.length).to.be.greaterThan(3);
    for (const chunk of chunks) expect(Buffer.from(chunk, 'utf8').toString('utf8')).to.equal(chunk);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'snapfile-'));
    try {
      const file = path.join(dir, 'snapshot.json');
      await writeSnapshotFile(file, { index: 7, term: 3, data });
      const text = await fs.readFile(file, 'utf8');
      expect(text.startsWith('{"format":2,"index":7,"term":3}\n')).to.equal(true);
      expect(parseSnapshotFile(text)).to.deep.equal({ index: 7, term: 3, data });
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('reads the first format', () => {
    const old = JSON.stringify({ index: 5, term: 2, data: '{"v":2,"a":"b\\nc"}' });
    expect(parseSnapshotFile(old)).to.deep.equal({ index: 5, term: 2, data: '{"v":2,"a":"b\\nc"}' });
  });

  it('refuses an unknown header', () => {
    expect(() => parseSnapshotFile('{"format":9,"index":1,"term":1}\n{}')).to.throw(/unknown header/);
  });
});
