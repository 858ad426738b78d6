// The handle a LockClient returns for one grant of one lock. Its `signal` is the caller's one
// place to learn that the lock is gone (or may be gone): work done under the lock should stop
// when it aborts, because from then on the fencing token may already belong to someone else.
import { LatchkeyError } from '../protocol/errors';

/**
 * Why a handle's signal aborted.
 * - `session_expired`, `lease_expired`: the server said so with a `lost` event.
 * - `session_ended`: the session is gone (the client was closed, or a reconnect found that the
 *   server had ended the session and opened a new one).
 * - `keepalive_overdue`: on the client's own clock, no keepalive was answered for ttl minus a
 *   safety margin (DESIGN §3); the server may still think we hold it, so the client releases it.
 * - `lease_overdue`: `leaseMs` (minus a margin) passed since the request was first sent.
 * - `not_owner`: a release (or a newer grant of the same lock) showed the grant was gone.
 */
export type LostReason =
  | 'session_expired'
  | 'lease_expired'
  | 'session_ended'
  | 'keepalive_overdue'
  | 'lease_overdue'
  | 'not_owner';

/** What a Lock needs from the client that granted it. */
export interface LockHost {
  releaseLock(lock: Lock): Promise<void>;
  /** Re-evaluates the client's expiry rules now, so a late timer cannot leave a stale signal. */
  checkExpiry(): void;
}

const explanations: Record<LostReason, string> = {
  session_expired: 'the server expired the session',
  lease_expired: 'the lease ran out on the server',
  session_ended: 'the session ended',
  keepalive_overdue: 'no keepalive was answered in time, so the session may have expired',
  lease_overdue: 'the lease ran out on the client clock',
  not_owner: 'the server no longer lists this grant',
};

export class Lock implements AsyncDisposable {
  readonly name: string;
  /** The fencing token of this grant; pass it to whatever the lock protects. */
  readonly token: number;
  private readonly host: LockHost;
  private readonly controller = new AbortController();
  private lostReasonValue: LostReason | null = null;
  private releasedValue = false;
  private releasing: Promise<void> | null = null;
  /** performance.now() after which the lease may have run out; Infinity without a lease. */
  private leaseDeadlineMs = Infinity;
  private leaseTimer: NodeJS.Timeout | null = null;

  /** @internal Only a LockClient makes these. */
  constructor(host: LockHost, name: string, token: number) {
    this.host = host;
    this.name = name;
    this.token = token;
  }

  /**
   * Aborts once the lock is lost or may be lost (see LostReason); `signal.reason` is then a
   * LatchkeyError with code `not_owner`. Reading it re-checks the client clock first, so code
   * that was blocked past a deadline still sees the truth. It does not abort on `release()`.
   */
  get signal(): AbortSignal {
    if (this.lostReasonValue === null && !this.releasedValue) {
      this.host.checkExpiry();
      if (performance.now() >= this.leaseDeadlineMs) this.lose('lease_overdue');
    }
    return this.controller.signal;
  }

  get lostReason(): LostReason | null {
    return this.lostReasonValue;
  }

  get released(): boolean {
    return this.releasedValue;
  }

  /**
   * Releases this grant (with its token, so it never releases a later grant). Calling it again,
   * or after the client was closed, does nothing. On a lost handle a `not_owner` or
   * `stale_token` answer is expected and swallowed: the loss was already reported by `signal`.
   */
  release(): Promise<void> {
    if (this.releasedValue) return Promise.resolve();
    if (this.releasing === null) {
      this.releasing = this.host.releaseLock(this).catch((err: unknown) => {
        // A failed release (say `unavailable`) can be tried again.
        this.releasing = null;
        throw err;
      });
    }
    return this.releasing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  /** @internal Arms the client-side lease clock: lost at `deadlineMs` (performance.now()). */
  loseAt(deadlineMs: number): void {
    this.leaseDeadlineMs = deadlineMs;
    const delayMs = Math.max(0, deadlineMs - performance.now());
    this.leaseTimer = setTimeout(() => this.lose('lease_overdue'), delayMs);
    this.leaseTimer.unref();
  }

  /** @internal Aborts the signal once; returns false if the handle was already lost or released. */
  lose(reason: LostReason): boolean {
    if (this.lostReasonValue !== null || this.releasedValue) return false;
    this.lostReasonValue = reason;
    this.stopTimer();
    const message = `lock ${this.name} (token ${this.token}) lost: ${explanations[reason]}`;
    this.controller.abort(new LatchkeyError('not_owner', message));
    return true;
  }

  /** @internal */
  markReleased(): void {
    this.releasedValue = true;
    this.stopTimer();
  }

  private stopTimer(): void {
    if (this.leaseTimer !== null) clearTimeout(this.leaseTimer);
    this.leaseTimer = null;
  }
}
