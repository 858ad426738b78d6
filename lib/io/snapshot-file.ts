// The snapshot file (DIR/snapshot.json): one header line `{"format":2,"index":I,"term":T}`, a
// newline, then the state machine's snapshot text as it is. The first format was one JSON
// object `{"index","term","data"}` with the text as an escaped string inside: writing it took a
// second copy of the whole state, larger than the first (every quote escaped), and a third as
// the bytes written (issue 7: those copies outlived the write as resident memory). It is still
// read. JSON.stringify never writes a raw newline, which tells the two apart.
import type { Snapshot } from '../raft/messages';
import { writeFileAtomic } from './atomic-file';

const fileFormat = 2;
/** The text is written in slices of about this many UTF-16 units, each its own small buffer. */
const sliceUnits = 1 << 18;

/** The pieces of the file, in order; none splits a surrogate pair. */
export function snapshotFileChunks(snapshot: Snapshot): string[] {
  const chunks = [`${JSON.stringify({ format: fileFormat, index: snapshot.index, term: snapshot.term })}\n`];
  const text = snapshot.data;
  for (let at = 0; at < text.length;) {
    let end = Math.min(text.length, at + sliceUnits);
    // Never end a slice between the two halves of a pair: each slice is encoded on its own.
    if (end < text.length && isHighSurrogate(text.charCodeAt(end - 1))) end++;
    chunks.push(text.slice(at, end));
    at = end;
  }
  return chunks;
}

export function writeSnapshotFile(file: string, snapshot: Snapshot): Promise<void> {
  return writeFileAtomic(file, snapshotFileChunks(snapshot));
}

/** Reads either format; throws on anything else. */
export function parseSnapshotFile(text: string): Snapshot {
  const newline = text.indexOf('\n');
  if (newline < 0) {
    const old = JSON.parse(text) as Snapshot;
    if (!Number.isSafeInteger(old.index) || !Number.isSafeInteger(old.term) || typeof old.data !== 'string') {
      throw new Error('snapshot file: expected {"index","term","data"}');
    }
    return { index: old.index, term: old.term, data: old.data };
  }
  const header = JSON.parse(text.slice(0, newline)) as { format?: unknown; index?: unknown; term?: unknown };
  if (header.format !== fileFormat || !Number.isSafeInteger(header.index) || !Number.isSafeInteger(header.term)) {
    throw new Error(`snapshot file: unknown header ${text.slice(0, Math.min(newline, 200))}`);
  }
  return { index: header.index as number, term: header.term as number, data: text.slice(newline + 1) };
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
