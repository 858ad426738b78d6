// Raft's persistent currentTerm and votedFor (paper Figure 2, "Persistent state on all servers"),
// which must be on disk before any vote or append is answered (DESIGN §7). The file is tiny and
// rewritten whole with writeFileAtomic, so a crash leaves either the old state or the new one.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { assert } from '../core/assert';
import { writeFileAtomic } from './atomic-file';

export interface HardState {
  term: number;
  votedFor: string | null;
}

export const hardStateFileName = 'hard-state.json';
/** Bumped if the file format ever changes, so an old binary refuses a new file. */
const hardStateVersion = 1;
/** A node id is short; anything larger than this is not a hard-state file we wrote. */
const hardStateBytesMax = 4096;

/** Reads the hard state in `dir`; a missing file (a node that never voted) is term 0, no vote. */
export async function readHardState(dir: string): Promise<HardState> {
  let text: string;
  try {
    text = await fs.readFile(path.join(dir, hardStateFileName), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { term: 0, votedFor: null };
    throw error;
  }
  return decodeHardState(text);
}

/**
 * Durably replaces the hard state in `dir` (created if missing) before resolving. Overlapping
 * calls land in call order: nothing is awaited before writeFileAtomic queues the write.
 */
export async function writeHardState(dir: string, state: HardState): Promise<void> {
  assertHardState(state);
  const fields = { version: hardStateVersion, term: state.term, votedFor: state.votedFor };
  const text = `${JSON.stringify(fields)}\n`;
  assert(Buffer.byteLength(text) <= hardStateBytesMax, 'hard state fits its bound');
  await writeFileAtomic(path.join(dir, hardStateFileName), text);
}

function assertHardState(state: HardState): void {
  assert(Number.isSafeInteger(state.term), 'term is an integer');
  assert(state.term >= 0, 'term is not negative');
  assert(state.votedFor === null || typeof state.votedFor === 'string', 'votedFor is a string or null');
  assert(state.votedFor !== '', 'votedFor is not empty');
}

// The file was written atomically, so a malformed one is not a torn write: it is a bug or a
// damaged disk, and guessing a term could let this node vote twice. Refuse to start instead.
function decodeHardState(text: string): HardState {
  if (Buffer.byteLength(text) > hardStateBytesMax) throw corrupt('file too large');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw corrupt('not JSON');
  }
  if (typeof value !== 'object' || value === null) throw corrupt('not an object');
  const fields = value as Record<string, unknown>;
  if (fields.version !== hardStateVersion) throw corrupt(`unknown version ${String(fields.version)}`);
  const { term, votedFor } = fields;
  if (typeof term !== 'number' || !Number.isSafeInteger(term) || term < 0) throw corrupt('bad term');
  if (votedFor !== null && (typeof votedFor !== 'string' || votedFor === '')) throw corrupt('bad votedFor');
  return { term, votedFor };
}

function corrupt(reason: string): Error {
  return new Error(`hard state file is corrupt: ${reason}`);
}
