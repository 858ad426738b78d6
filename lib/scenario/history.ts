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
  /** The grant's token (acquire/preempt), or the token an append or release used; for a check,
   *  the token it returned (if recorded). */
  token?: number;
  /** append: the data written; read: the data returned. */
  data?: string;
  file?: string;
  /** check: the owner it returned (null: free). Left out, an ok check means "the caller saw
   *  itself as the owner" and a `check_mismatch` failure means "it saw someone else or nobody"
   *  (the runner's preempt-check loop records it that way). */
  owner?: string | null;
  /** On an acquire/preempt grant: the client was later told (or decided) that this grant is
   *  lost — by a `lost` event (session or lease expiry) or by its own clock. */
  lost?: boolean;
  /** When the loss became known to the client (ms since the run started), if it did. */
  lostMs?: number;
  /** Why: `session_expired` and `lease_expired` are the server's word (a `lost` event), so the
   *  grant certainly ended before `lostMs`; any other reason (the client's own clock) only means
   *  it may have ended. */
  lostReason?: string;
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

  complete(
    op: HistoryOp,
    result: { ok: true; token?: number; data?: string; owner?: string | null } | { ok: false; code: string },
  ): void {
    op.completedMs = this.elapsedMs();
    op.ok = result.ok;
    if (result.ok) {
      if (result.token !== undefined) op.token = result.token;
      if (result.data !== undefined && op.kind === 'read') op.data = result.data;
      if (result.owner !== undefined && op.kind === 'check') op.owner = result.owner;
    } else {
      op.code = result.code;
    }
  }

  /** Marks a grant (the acquire/preempt op that got it) as lost, now. Only the first loss counts. */
  markLost(op: HistoryOp, reason?: string): void {
    if (op.lost === true) return;
    op.lost = true;
    op.lostMs = this.elapsedMs();
    if (reason !== undefined) op.lostReason = reason;
  }
}
