// Simulated clients. Each one behaves like LockClient (lib/client/client.ts) over a fake
// connection to one node at a time: `hello` first (with the resume_token on every new
// connection), one state-changing request at a time with a `request_id`, keepalives every
// ttl/3, and the same request re-sent with the same request_id after `unavailable`, a closed
// connection or a node that seems stuck. It never gives up on a request, so it always learns
// how its requests ended and what it holds.
//
// The workload: preempt / acquire (with and without timeout_ms, sometimes with lease_ms) /
// release (with and without token) / append to the file named like the lock, with its token and
// unique data / check and read (linearizable or stale_ok) / bye / switching nodes. Every final
// answer is checked against the log (checkers.ts) when it arrives, and the history is kept.
//
// Besides safety, a client checks one liveness promise at every moment: a node that holds an open
// connection answers every request that cannot block (everything but acquire) in bounded time
// (unavailableAfterMs for commands, about twice that for reads: it answers `unavailable` when
// nothing better is possible).
import { Prng } from '../core/prng';
import type { Answer } from '../protocol/answers';
import type { Request, RequestId } from '../protocol/schemas';
import type { PushEvent } from '../io/front-door';
import { liveness, correctness } from './failure';
import type { ConnOwner, Participant, SimCluster, SimConn, SimNode } from './sim-cluster';

type OpKind = 'preempt' | 'acquire' | 'release' | 'append' | 'check' | 'read' | 'bye';

/** Request bodies without `id` (each send gets a fresh `id` on its connection). */
type Body = Record<string, unknown> & { action: OpKind };

interface Op {
  n: number;
  kind: OpKind;
  body: Body;
  requestId: string | null;
  lock: string;
  invokeAt: number;
  /** Index of the last write acknowledged to anyone when this op was invoked (reads). */
  lowIndex: number;
  stale: boolean;
  /** An acquire may wait without bound; anything else must be answered in time. */
  mayBlock: boolean;
  wireId: number | null;
  sentAt: number;
  retryAt: number;
  unavailableSince: number | null;
  attempts: number;
}

export interface HistoryRecord {
  client: string;
  n: number;
  kind: OpKind;
  requestId: string | null;
  body: string;
  invokeAt: number;
  completeAt: number;
  attempts: number;
  answer: string;
}

export interface ClientStats {
  completed: number;
  unavailable: number;
  reconnects: number;
  sessionsLost: number;
  mismatches: number;
}

type ConnState = 'none' | 'hello' | 'ready';

export class SimClient implements ConnOwner, Participant {
  readonly stats: ClientStats = { completed: 0, unavailable: 0, reconnects: 0, sessionsLost: 0, mismatches: 0 };
  readonly history: HistoryRecord[] = [];
  readonly ackedAppends: { client: string; file: string; data: string }[] = [];
  private readonly prng: Prng;
  private conn: SimConn | null = null;
  private connState: ConnState = 'none';
  private helloWireId: number | null = null;
  private helloSentAt = 0;
  private resumeToken: string | null = null;
  private needHello = false;
  private readonly held = new Map<string, number>();
  private op: Op | null = null;
  private keepalive: { wireId: number; sentAt: number } | null = null;
  private nextKeepaliveAt = 0;
  private nextActionAt = 0;
  private reconnectAt = 0;
  private mode: 'active' | 'winddown' = 'active';
  /** Wind-down: how many lock names were released without a token so far. */
  private unsureReleases = 0;
  private nodeCursor: number;
  private wireSeq = 0;
  private opSeq = 0;
  private appendSeq = 0;
  private wakeAt = Infinity;
  readonly ttlMs: number;
  readonly graceMs: number;

  constructor(private readonly cluster: SimCluster, readonly name: string, seed: number, home: number) {
    this.prng = new Prng(seed);
    this.nodeCursor = home;
    this.ttlMs = this.prng.pick([1500, 3000, 5000]);
    // Most clients ask for a grace period, so that moving to another node keeps the session.
    this.graceMs = this.prng.chance(0.8) ? this.ttlMs : 0;
  }

  get idle(): boolean {
    return this.mode === 'winddown' && this.op === null && this.held.size === 0 && this.unsureReleases >= this.cluster.lockNames.length;
  }

  describe(): string {
    const op = this.op;
    const what = op === null ? 'no op' : `${op.kind} ${op.requestId ?? ''} since ${Math.round(op.invokeAt)} (sent ${op.wireId === null ? 'no' : `at ${Math.round(op.sentAt)}`}, ${op.attempts} attempts)`;
    return `${this.name} on ${this.conn?.node.id ?? '-'} (${this.connState}) ${what}, holds ${[...this.held].map(([l, t]) => `${l}@${t}`).join(',') || 'nothing'}`;
  }

  start(): void {
    this.nextActionAt = this.cluster.now + this.prng.next() * 50;
    this.wake(0);
    const poll = (): void => {
      this.step();
      this.cluster.schedule(50, `poll ${this.name}`, poll);
    };
    this.cluster.schedule(50 + this.prng.next() * 50, `poll ${this.name}`, poll);
  }

  windDown(): void {
    this.mode = 'winddown';
    this.wake(0);
  }

  private wake(delayMs: number): void {
    const at = this.cluster.now + delayMs;
    if (at >= this.wakeAt && this.wakeAt > this.cluster.now) return;
    this.wakeAt = at;
    this.cluster.schedule(delayMs, `wake ${this.name}`, () => {
      if (this.wakeAt === at) this.wakeAt = Infinity;
      this.step();
    });
  }

  // ---- the client's loop ----

  private step(): void {
    const now = this.cluster.now;
    this.checkWatchdogs(now);
    if (this.conn === null) {
      if (now >= this.reconnectAt) this.connect();
      else this.wake(this.reconnectAt - now);
      return;
    }
    if (this.connState !== 'ready') return;
    if (this.needHello) {
      this.sendHello();
      return;
    }
    if (this.keepalive === null && now >= this.nextKeepaliveAt) this.sendKeepalive();
    if (this.op === null) this.nextOp(now);
    const op = this.op;
    if (op !== null && op.wireId === null) {
      if (now >= op.retryAt) this.sendOp(op);
      else this.wake(op.retryAt - now);
    }
  }

  /** The one liveness promise that holds at all times (see the header). */
  private checkWatchdogs(now: number): void {
    const conn = this.conn;
    if (conn === null || !conn.open) return;
    // A command is answered `unavailable` once it waited unavailableAfterMs; a linearizable read
    // is re-sent after each leader change or resendAfterMs and times out unavailableAfterMs
    // after its last send, so it may take up to about twice as long.
    const commandMs = this.cluster.unavailableAfterMs + 500;
    const readMs = 2 * this.cluster.unavailableAfterMs + 500;
    const late = (sentAt: number, boundMs = commandMs): boolean => now - sentAt > boundMs;
    if (this.connState === 'hello' && late(this.helloSentAt)) {
      liveness(`${conn.node.id} never answered ${this.name}'s hello sent at ${Math.round(this.helloSentAt)}`);
    }
    if (this.keepalive !== null && late(this.keepalive.sentAt)) {
      liveness(`${conn.node.id} never answered ${this.name}'s keepalive sent at ${Math.round(this.keepalive.sentAt)}`);
    }
    const op = this.op;
    if (op !== null && op.wireId !== null && !op.mayBlock && late(op.sentAt, op.kind === 'check' || op.kind === 'read' ? readMs : commandMs)) {
      liveness(`${conn.node.id} never answered ${this.name}'s ${op.kind} ${op.requestId ?? ''} sent at ${Math.round(op.sentAt)}`);
    }
  }

  private connect(): void {
    const nodes = this.cluster.nodes;
    const node = nodes[this.nodeCursor % nodes.length] as SimNode;
    this.nodeCursor = (this.nodeCursor + 1) % nodes.length;
    this.stats.reconnects++;
    this.conn = this.cluster.connect(this, node);
    this.keepalive = null;
    if (this.op !== null) this.op.wireId = null;
    this.sendHello();
  }

  private sendHello(): void {
    const conn = this.conn;
    if (conn === null) return;
    this.needHello = false;
    this.connState = 'hello';
    this.helloWireId = ++this.wireSeq;
    this.helloSentAt = this.cluster.now;
    const hello: Record<string, unknown> = { id: this.helloWireId, action: 'hello', client_id: this.name, ttl_ms: this.ttlMs, grace_ms: this.graceMs };
    if (this.resumeToken !== null) hello['resume_token'] = this.resumeToken;
    this.cluster.send(conn, hello as unknown as Request);
  }

  private sendKeepalive(): void {
    const conn = this.conn as SimConn;
    const wireId = ++this.wireSeq;
    this.keepalive = { wireId, sentAt: this.cluster.now };
    this.cluster.send(conn, { id: wireId, action: 'keepalive', client_id: this.name });
  }

  private sendOp(op: Op): void {
    const conn = this.conn as SimConn;
    op.wireId = ++this.wireSeq;
    op.sentAt = this.cluster.now;
    op.attempts++;
    this.cluster.send(conn, { ...op.body, id: op.wireId } as unknown as Request);
  }

  /** Drops the connection and moves on to the next node. */
  private switchNode(delayMs: number): void {
    if (this.conn !== null) this.cluster.close(this.conn);
    this.conn = null;
    this.connState = 'none';
    this.keepalive = null;
    if (this.op !== null) {
      this.op.wireId = null;
      this.op.unavailableSince = null;
    }
    this.reconnectAt = this.cluster.now + delayMs;
    this.wake(delayMs);
  }

  // ---- the workload ----

  private nextOp(now: number): void {
    if (this.mode === 'winddown') {
      const first = this.held.entries().next();
      if (first.done !== true) {
        const [lock, token] = first.value;
        this.begin('release', { action: 'release', lock_name: lock, client_id: this.name, token }, lock, false);
        return;
      }
      // Then every other lock, without a token: what this client believes it holds can be
      // wrong in one way the protocol allows. After its session expired, a request on the same
      // connection opened a new one implicitly and was granted there; the next hello then
      // shows a new resume token, which reads as "everything was lost". A real client would
      // hold that lock, unknowingly, for as long as it keeps its session alive.
      const unsure = this.cluster.lockNames[this.unsureReleases];
      if (unsure === undefined) return;
      this.unsureReleases++;
      this.begin('release', { action: 'release', lock_name: unsure, client_id: this.name }, unsure, false);
      return;
    }
    if (now < this.nextActionAt) {
      this.wake(this.nextActionAt - now);
      return;
    }
    const p = this.prng;
    const locks = this.cluster.lockNames;
    const heldLocks = [...this.held.keys()];
    const r = p.next();
    if (heldLocks.length > 0 && r < 0.35) {
      const lock = p.pick(heldLocks);
      const token = this.held.get(lock) as number;
      const data = `<${this.name}#${++this.appendSeq}@${token}>`;
      this.begin('append', { action: 'append', file: lock, data, lock_name: lock, token, client_id: this.name }, lock, false);
    } else if (heldLocks.length > 0 && r < 0.55) {
      const lock = p.pick(heldLocks);
      const body: Body = { action: 'release', lock_name: lock, client_id: this.name };
      if (p.chance(0.7)) body['token'] = this.held.get(lock);
      this.begin('release', body, lock, false);
    } else if (r < 0.63) {
      const lock = p.pick(locks);
      const stale = p.chance(0.3);
      this.begin('check', { action: 'check', lock_name: lock, ...(stale ? { stale_ok: true } : {}) }, lock, stale);
    } else if (r < 0.70) {
      const lock = p.pick(locks);
      const stale = p.chance(0.3);
      this.begin('read', { action: 'read', file: lock, ...(stale ? { stale_ok: true } : {}) }, lock, stale);
    } else if (r < 0.705) {
      this.begin('bye', { action: 'bye', client_id: this.name }, '', false);
    } else if (r < 0.72) {
      // Move to another node (the session follows with the resume_token).
      this.nodeCursor = p.int(0, this.cluster.nodes.length - 1);
      this.switchNode(p.next() * 20);
    } else {
      const free = locks.filter((l) => !this.held.has(l));
      if (free.length === 0) {
        this.nextActionAt = now + p.next() * 100;
        this.wake(this.nextActionAt - now);
        return;
      }
      const lock = p.pick(free);
      const body: Body = { action: p.chance(0.3) ? 'preempt' : 'acquire', lock_name: lock, client_id: this.name };
      // Waiting without a timeout only while holding nothing: clients that hold one lock and wait
      // forever for another can deadlock, and then never wind down.
      if (body.action === 'acquire' && (heldLocks.length > 0 || p.chance(0.6))) body['timeout_ms'] = p.pick([0, 50, 300, 1000, 3000]);
      if (p.chance(0.1)) body['lease_ms'] = p.pick([100, 500, 2000]);
      this.begin(body.action, body, lock, false);
    }
  }

  private begin(kind: OpKind, body: Body, lock: string, stale: boolean): void {
    const n = ++this.opSeq;
    const stateChanging = kind !== 'check' && kind !== 'read';
    const requestId = stateChanging ? `${this.name}-r${n}` : null;
    if (requestId !== null) body['request_id'] = requestId;
    this.op = {
      n, kind, body, requestId, lock,
      invokeAt: this.cluster.now,
      lowIndex: this.cluster.checker.ackedIndex,
      stale,
      mayBlock: kind === 'acquire',
      wireId: null, sentAt: 0, retryAt: this.cluster.now, unavailableSince: null, attempts: 0,
    };
  }

  // ---- what comes back ----

  onAnswer(conn: SimConn, id: RequestId | null, answer: Answer, refIndex: number): void {
    if (conn !== this.conn) return;
    if (id === this.helloWireId && this.connState === 'hello') this.onHello(answer);
    else if (this.keepalive !== null && id === this.keepalive.wireId) this.onKeepalive(answer);
    else if (this.op !== null && id === this.op.wireId) this.onOpAnswer(this.op, answer, refIndex);
    this.wake(0);
  }

  private onHello(answer: Answer): void {
    this.helloWireId = null;
    if (answer.ok) {
      const token = answer['resume_token'] as string;
      if (this.resumeToken !== null && token !== this.resumeToken) this.sessionLost('new session');
      this.resumeToken = token;
      this.connState = 'ready';
      return;
    }
    const code = answer.error.code;
    if (code === 'unavailable' || code === 'shutting_down') {
      this.stats.unavailable++;
      this.switchNode(20 + this.prng.next() * 100);
      return;
    }
    if (code === 'client_mismatch') {
      // Our session lives on a connection we cannot resume (its token was never seen, e.g. an
      // implicit session opened on a node that then crashed): wait for it to expire.
      this.stats.mismatches++;
      this.switchNode(this.ttlMs / 3);
      return;
    }
    correctness(`${this.name}'s hello got ${JSON.stringify(answer)}`);
  }

  private onKeepalive(answer: Answer): void {
    const sentAt = this.keepalive?.sentAt ?? this.cluster.now;
    this.keepalive = null;
    if (answer.ok) {
      this.cluster.checker.noteKeepaliveAnswered(this.name, sentAt);
      this.nextKeepaliveAt = this.cluster.now + this.ttlMs / 3;
      return;
    }
    this.stats.unavailable++;
    this.nextKeepaliveAt = this.cluster.now + 100;
    if (answer.error.message.includes('session')) this.needHello = true;
  }

  private onOpAnswer(op: Op, answer: Answer, refIndex: number): void {
    const now = this.cluster.now;
    op.wireId = null;
    if (!answer.ok && (answer.error.code === 'unavailable' || answer.error.code === 'shutting_down')) {
      this.stats.unavailable++;
      if (answer.error.message.includes('session')) this.needHello = true;
      op.unavailableSince ??= now;
      op.retryAt = now + 20 + this.prng.next() * 150;
      // Stuck on a node cut off from the majority: try the next one (LockClient does after half
      // its request timeout); a node that is shutting down: at once.
      if (answer.error.code === 'shutting_down' || now - op.unavailableSince > 1000) this.switchNode(this.prng.next() * 50);
      return;
    }
    if (!answer.ok && answer.error.code === 'client_mismatch' && op.kind !== 'check' && op.kind !== 'read') {
      // The session moved to another connection of ours meanwhile: say hello here, then retry.
      this.stats.mismatches++;
      this.needHello = true;
      op.retryAt = now;
      return;
    }
    this.complete(op, answer, refIndex);
  }

  private complete(op: Op, answer: Answer, refIndex: number): void {
    const checker = this.cluster.checker;
    if (op.kind === 'check') {
      checker.checkCheckAnswer(this.name, op.lock, answer, op.lowIndex, refIndex, op.stale);
    } else if (op.kind === 'read') {
      checker.checkReadAnswer(this.name, op.lock, answer, op.lowIndex, refIndex, op.stale);
    } else {
      checker.checkWriteAnswer(this.name, op.requestId as string, op.kind, answer);
    }
    this.learn(op, answer);
    this.stats.completed++;
    this.history.push({
      client: this.name, n: op.n, kind: op.kind, requestId: op.requestId, body: JSON.stringify(op.body),
      invokeAt: op.invokeAt, completeAt: this.cluster.now, attempts: op.attempts, answer: JSON.stringify(answer),
    });
    this.cluster.note(`${this.name} ${op.kind} ${op.requestId ?? op.lock} -> ${JSON.stringify(answer)}`);
    this.op = null;
    this.nextActionAt = this.cluster.now + this.prng.next() * 50;
  }

  /** What the answer tells this client about what it holds. */
  private learn(op: Op, answer: Answer): void {
    switch (op.kind) {
      case 'preempt':
      case 'acquire':
        if (answer.ok) {
          const token = answer['token'] as number;
          this.cluster.checker.checkGrantAck(this.name, op.lock, token);
          this.held.set(op.lock, token);
        }
        return;
      case 'release':
        // Released, or not ours (any more): either way we do not hold it.
        if (answer.ok || answer.error.code === 'not_owner' || answer.error.code === 'stale_token') this.held.delete(op.lock);
        return;
      case 'append':
        if (answer.ok) this.ackedAppends.push({ client: this.name, file: op.lock, data: op.body['data'] as string });
        else if (answer.error.code === 'not_owner' || answer.error.code === 'stale_token') this.held.delete(op.lock);
        return;
      case 'bye':
        if (answer.ok) {
          this.held.clear();
          this.resumeToken = null;
          this.needHello = true;
        }
        return;
      case 'check':
      case 'read':
        return;
      default: {
        const never: never = op.kind;
        throw new Error(`unknown op ${String(never)}`);
      }
    }
  }

  private sessionLost(why: string): void {
    this.stats.sessionsLost++;
    this.cluster.note(`${this.name} lost its session (${why}); held ${[...this.held.keys()].join(',') || 'nothing'}`);
    this.held.clear();
  }

  onPush(conn: SimConn, event: PushEvent): void {
    if (conn !== this.conn || event.event !== 'lost') return;
    const lock = event['lock_name'] as string;
    this.cluster.checker.checkLostEvent(this.name, lock, event['token'], event['reason']);
    if (this.held.get(lock) === event['token']) this.held.delete(lock);
  }

  onClosed(conn: SimConn): void {
    if (conn !== this.conn) return;
    // The node crashed (or refused the connection): try the next one shortly.
    this.switchNode(10 + this.prng.next() * 50);
  }
}

/** A client driven by a test script: it sends exactly what it is told and keeps every answer. */
export class ScriptedClient implements ConnOwner, Participant {
  conn: SimConn | null = null;
  readonly answers = new Map<RequestId, Answer>();
  readonly events: PushEvent[] = [];
  closedCount = 0;
  private wireSeq = 0;

  constructor(private readonly cluster: SimCluster, readonly name: string) {}

  get idle(): boolean {
    return true;
  }

  windDown(): void {}

  describe(): string {
    return this.name;
  }

  connect(node: SimNode): void {
    this.conn = this.cluster.connect(this, node);
  }

  /** Sends a request on the current connection; returns its wire id. */
  send(body: Record<string, unknown>): number {
    const id = ++this.wireSeq;
    this.cluster.send(this.conn as SimConn, { ...body, id } as unknown as Request);
    return id;
  }

  close(): void {
    if (this.conn !== null) this.cluster.close(this.conn);
    this.conn = null;
  }

  onAnswer(conn: SimConn, id: RequestId | null, answer: Answer): void {
    if (conn === this.conn && id !== null) this.answers.set(id, answer);
  }

  onPush(conn: SimConn, event: PushEvent): void {
    if (conn === this.conn) this.events.push(event);
  }

  onClosed(conn: SimConn): void {
    if (conn === this.conn) {
      this.closedCount++;
      this.conn = null;
    }
  }
}
