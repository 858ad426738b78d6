// What the scenario runner records: one entry per client operation, with the time it was
// invoked and the time its answer came back (ms since the run started), as the checker needs.

export type OpKind = 'acquire' | 'preempt' | 'release' | 'append' | 'check' | 'read';

export interface HistoryOp {
  client: string;
  kind: OpKind;
  lock: string;
  invokedMs: number;
  /** Null when no answer came back (the client crashed or the request failed in transit). */
  completedMs: number | null;
  ok: boolean;
  /** Error code when !ok. */
  code?: string;
  /** The grant's token (acquire/preempt), or the token an append or release used. */
  token?: number;
  /** append: the data written; read: the data returned. */
  data?: string;
  file?: string;
}

export class History {
  readonly ops: HistoryOp[] = [];
  private readonly startedMs: number;

  constructor(private readonly now: () => number) {
    this.startedMs = now();
  }

  elapsedMs(): number {
    return this.now() - this.startedMs;
  }

  invoke(client: string, kind: OpKind, lock: string, extra: Partial<HistoryOp> = {}): HistoryOp {
    const op: HistoryOp = { client, kind, lock, invokedMs: this.elapsedMs(), completedMs: null, ok: false, ...extra };
    this.ops.push(op);
    return op;
  }

  complete(op: HistoryOp, result: { ok: true; token?: number; data?: string } | { ok: false; code: string }): void {
    op.completedMs = this.elapsedMs();
    op.ok = result.ok;
    if (result.ok) {
      if (result.token !== undefined) op.token = result.token;
      if (result.data !== undefined && op.kind === 'read') op.data = result.data;
    } else {
      op.code = result.code;
    }
  }
}
