// Materialises the guarded files under `--data/files/` so an operator can look at them. The
// replicated state is the truth; these files are a copy written after each applied append and
// rewritten whole at start-up. Names may contain '/', and both `a` and `a/b` are valid names, so
// each name maps to one flat file with '/' written as '%2F' ('%' is not allowed in names). A
// name too long for the file system (NAME_MAX is 255 bytes, and the atomic write adds a
// suffix) is cut and given a hash of the whole name after a '~', which names never contain.
//
// A copy that cannot be written is logged and skipped: it must never stop the node, whose
// replicated state stays the truth (found by the fuzzer: a snapshot holding such a file made
// start-up throw).
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from './atomic-file';
import type { Logger } from './logger';

/** Longest name written as is; leaves room for the atomic write's temporary suffix. */
const diskNameCharsMax = 200;

export function fileNameOnDisk(name: string): string {
  const flat = name.replace(/\//g, '%2F');
  if (flat.length <= diskNameCharsMax) return flat;
  const hash = createHash('sha256').update(name, 'utf8').digest('hex').slice(0, 32);
  return `${flat.slice(0, diskNameCharsMax - hash.length - 1)}~${hash}`;
}

export class FileStore {
  /** Appends to one file are chained so they land in apply order. */
  private readonly chains = new Map<string, Promise<void>>();

  constructor(private readonly dir: string, private readonly logger: Logger) {}

  /** Makes the directory hold exactly `files` (the state restored from a snapshot, or empty):
   *  every entry applied after that appends again, so the copies end up equal to the state. */
  async init(files: Iterable<[string, string]>): Promise<void> {
    await this.drain();
    await fs.mkdir(this.dir, { recursive: true });
    const keep = new Set<string>();
    for (const [name, data] of files) {
      keep.add(fileNameOnDisk(name));
      try {
        await writeFileAtomic(this.pathOf(name), data);
      } catch (err) {
        this.logger.error('file_materialize_failed', { file: name, error: (err as Error).message });
      }
    }
    for (const entry of await fs.readdir(this.dir)) {
      if (!keep.has(entry)) await fs.rm(path.join(this.dir, entry), { force: true, recursive: true });
    }
  }

  append(name: string, data: string): void {
    const previous = this.chains.get(name) ?? Promise.resolve();
    const next = previous
      .then(() => fs.appendFile(this.pathOf(name), data))
      .catch((err: Error) => this.logger.error('file_materialize_failed', { file: name, error: err.message }));
    this.chains.set(name, next);
    void next.then(() => {
      if (this.chains.get(name) === next) this.chains.delete(name);
    });
  }

  /** Waits for every queued append (clean shutdown). */
  async drain(): Promise<void> {
    await Promise.all([...this.chains.values()]);
  }

  private pathOf(name: string): string {
    return path.join(this.dir, fileNameOnDisk(name));
  }
}
