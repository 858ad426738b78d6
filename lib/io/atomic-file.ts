// Whole-file replacement that survives a crash at any point: a reader sees either the old
// contents or the new ones, never a mix (DESIGN §7: "write temp, fsync, rename, fsync the
// directory"). Used for the Raft hard state and for snapshots.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { assert } from '../core/assert';

/**
 * Makes the directory entries of `dir` durable: after creating, renaming or removing a file, the
 * file's own fsync does not cover its name, so a crash could forget the change.
 */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Creates `dir` and any missing parents, and makes each new directory's name durable (its entry
 * lives in its parent, which is fsynced). Does nothing to a directory that already exists.
 */
export async function makeDirectoryDurable(dir: string): Promise<void> {
  const target = path.resolve(dir);
  const created = await fs.mkdir(target, { recursive: true });
  if (created === undefined) return;
  // `created` is the shallowest new directory; every one from it down to `target` is new.
  for (let current = target; ; current = path.dirname(current)) {
    await fsyncDirectory(path.dirname(current));
    if (current === created) break;
    assert(current !== path.dirname(current), 'mkdir reported a directory above the target');
  }
}

// Writes to one path are chained in call order. Without this, two overlapping writes (a term bump
// and then a vote) could share the temp file or rename out of order, and the older state would
// win on disk.
const writesByPath = new Map<string, Promise<void>>();

/**
 * Replaces `target` with `data` (or its pieces, in order) atomically and durably: the promise resolves only after the new
 * contents and the rename are both on disk. Missing parent directories are created.
 * Calls for the same path take effect in call order, so a caller must not await anything between
 * deciding what to write and calling this. `data` is read when the write runs, after the earlier
 * ones: leave it unchanged until the promise settles.
 */
export function writeFileAtomic(target: string, data: Buffer | string | readonly string[]): Promise<void> {
  assert(!target.endsWith('.tmp'), 'the target is not itself a temp file');
  const key = path.resolve(target);
  const previous = writesByPath.get(key) ?? Promise.resolve();
  // The chain continues even if the previous write failed: that failure belongs to its caller.
  const current = previous.catch(() => undefined).then(() => writeNow(key, data));
  writesByPath.set(key, current);
  const forget = (): void => {
    if (writesByPath.get(key) === current) writesByPath.delete(key);
  };
  current.then(forget, forget);
  return current;
}

async function writeNow(target: string, data: Buffer | string | readonly string[]): Promise<void> {
  // A fixed temp name (not a random one) so that a crash leaves at most one stray file per target,
  // which the next write overwrites. The per-path chain above keeps it private to one write.
  const temp = `${target}.tmp`;
  await makeDirectoryDurable(path.dirname(target));
  const handle = await fs.open(temp, 'w');
  try {
    try {
      if (typeof data === 'string' || Buffer.isBuffer(data)) await handle.writeFile(data);
      // Pieces one after the other: never the bytes of the whole file at once in memory.
      else for (const chunk of data) await handle.writeFile(chunk);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temp, target);
  } catch (error) {
    await fs.rm(temp, { force: true }).catch(() => undefined);
    throw error;
  }
  await fsyncDirectory(path.dirname(target));
}
