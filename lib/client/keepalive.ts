// Background keepalives for one session, and the client's pessimistic view of whether that
// session is still alive (DESIGN §3).
//
// An answered keepalive proves the cluster saw the session alive at some moment after the
// keepalive was SENT (the server answers only after a majority confirmed its leadership). So the
// client may trust its locks until `sentAt + ttl - margin` of the last answered keepalive, and
// not a moment longer: measuring from the answer instead would credit the time the request
// spent in flight, which the server never saw.

/** Keepalives go out this many times per ttl, so one lost or slow answer is not yet fatal. */
export const keepalivesPerTtl = 3;

/**
 * How much earlier than the server the client gives up. It absorbs clock-rate differences and
 * a late timer; a tenth of the ttl is far more than either, and still leaves 2/3 of the ttl
 * between the last keepalive and the deadline for the next one to be answered.
 */
export function safetyMarginMs(ttlMs: number): number {
  return Math.max(1, Math.ceil(ttlMs / 10));
}

export interface KeepaliveDeps {
  /** Sends one keepalive; resolves with performance.now() of the attempt that was answered. */
  send(): Promise<number>;
  /** Called once each time the client stops being sure its session is alive. */
  onOverdue(): void;
}

export class Keepalive {
  private readonly deps: KeepaliveDeps;
  private ttlMs = 0;
  /** performance.now() when the last answered keepalive (or hello) was sent. */
  private confirmedSentAtMs = -Infinity;
  private tickTimer: NodeJS.Timeout | null = null;
  private overdueTimer: NodeJS.Timeout | null = null;
  private inFlight = false;

  constructor(deps: KeepaliveDeps) {
    this.deps = deps;
  }

  get running(): boolean {
    return this.tickTimer !== null;
  }

  /** Starts (or re-times, when the server granted another ttl) the keepalive loop. */
  start(ttlMs: number): void {
    if (this.running && ttlMs === this.ttlMs) return;
    this.stop();
    this.ttlMs = ttlMs;
    // Timers are unref'd: a client that holds nothing must not keep the process alive by
    // itself (its socket does that while it is open).
    this.tickTimer = setInterval(() => this.tick(), Math.max(1, Math.floor(ttlMs / keepalivesPerTtl)));
    this.tickTimer.unref();
    this.armOverdue();
  }

  stop(): void {
    if (this.tickTimer !== null) clearInterval(this.tickTimer);
    if (this.overdueTimer !== null) clearTimeout(this.overdueTimer);
    this.tickTimer = null;
    this.overdueTimer = null;
  }

  /** Records that the cluster answered a session request that was sent at `sentAtMs`. */
  confirm(sentAtMs: number): void {
    if (sentAtMs <= this.confirmedSentAtMs) return;
    this.confirmedSentAtMs = sentAtMs;
    if (this.running) this.armOverdue();
  }

  /** Until when (performance.now()) the client may trust that its session is alive. */
  sureUntilMs(): number {
    return this.confirmedSentAtMs + this.ttlMs - safetyMarginMs(this.ttlMs);
  }

  isSure(nowMs: number): boolean {
    return nowMs < this.sureUntilMs();
  }

  private tick(): void {
    // One keepalive at a time: a second one on the same stuck connection proves nothing more.
    if (this.inFlight) return;
    this.inFlight = true;
    this.deps.send().then(
      (sentAtMs) => { this.inFlight = false; this.confirm(sentAtMs); },
      () => { this.inFlight = false; },
    );
  }

  private armOverdue(): void {
    if (this.overdueTimer !== null) clearTimeout(this.overdueTimer);
    const delayMs = Math.max(0, this.sureUntilMs() - performance.now());
    if (!Number.isFinite(delayMs)) return;
    this.overdueTimer = setTimeout(() => {
      this.overdueTimer = null;
      if (!this.isSure(performance.now())) this.deps.onOverdue();
      else this.armOverdue();
    }, delayMs);
    this.overdueTimer.unref();
  }
}
