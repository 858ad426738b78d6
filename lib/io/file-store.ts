// Materialises the guarded files under `--data/files/` so an operator can look at them. The
// replicated state is the truth; these files are a copy written after each applied append and
// rewritten whole at start-up. Names may contain '/', and both `a` and `a/b` are valid names, so
// each name maps to one flat file with '/' written as '%2F' ('%' is not allowed in names).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from './atomic-file';
import type { Logger } from './logger';

export function fileNameOnDisk(name: string): string {
  return name.replace(/\//g, '%2F');
}

export class FileStore {
  /** Appends to one file are chained so they land in apply order. */
  private readonly chains = new Map<string, Promise<void>>();

  constructor(private readonly dir: string, private readonly logger: Logger) {}

  async init(files: Iterable<[string, string]>): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true });
    for (const [name, data] of files) await writeFileAtomic(this.pathOf(name), data);
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
