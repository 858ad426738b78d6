// The replica: turns client requests into commands, and applied commands back into answers
// (DESIGN §1 and §5). It holds no sockets, timers or clock of its own: the shell passes the
// monotonic time into every call, hands proposals to the log, and feeds committed entries back
// through `applyCommitted`. Connections are the front doors' `ClientConnection` interface, so
// the deterministic simulation can drive it with fakes.
//
// Who answers: the node that holds the connection answers from what it sees applied. Each
// proposed command carries `origin = node#seq`; when an entry with one of our origins is applied,
// the request waiting under that seq gets the answer. A queued acquire is answered later, when
// an applied entry's `granted` or `wait_ended` effect names its (client, lock).
import { assert } from '../core/assert';
import { errorAnswer, type Answer } from '../protocol/answers';
import type { ErrorCode } from '../protocol/errors';
import type { Request, RequestId } from '../protocol/schemas';
import type { Command, ConnId } from '../locks/commands';
import { apply, type Effect } from '../locks/state-machine';
import { checkLock, createLockState, nextDeadlineAt, readFile, type LockState } from '../locks/state';
import type { ClientConnection, StatusInfo } from '../io/front-door';

export interface ReplicaConfig {
  nodeId: string;
  /** Distinguishes this process's connection ids from an earlier run's (connections die with
   *  the process, sessions bound to them must not be confused with new ones). */
  bootId: string;
  members: string[];
  sessionTtlMsDefault: number;
  /** How long cluster time may go without a committed entry while deadlines are pending. */
  idleTickMs: number;
  /** Draws the unguessable resume secret of a new session (randomness stays outside apply). */
  newSecret: () => string;
}

/** A request waiting for the entry it proposed. */
interface PendingAnswer {
  conn: ConnState;
  id: RequestId;
  /** Fields only the answering node knows, added to the applied answer (hello: node, leader). */
  extra?: Record<string, unknown>;
}

interface ConnState {
  readonly conn: ClientConnection;
  /** The session key in commands: unique per TCP connection, null for HTTP. */
  readonly key: ConnId;
  clientId: string | undefined;
  /** A hello for this connection is proposed and not applied yet. */
  helloPending: boolean;
  closed: boolean;
}

export interface AppliedEntry {
  index: number;
  command: Command;
  answer: Answer | null;
  effects: Effect[];
}

export class Replica {
  readonly state: LockState;
  private readonly config: ReplicaConfig;
  private proposals: Command[] = [];
  private readonly pending = new Map<string, PendingAnswer>();
  /** Queued acquires by `client \0 lock`. */
  private readonly waiting = new Map<string, PendingAnswer[]>();
  /** Keepalives waiting for the next touch entry. */
  private touchClients = new Set<string>();
  private touchAnswers: PendingAnswer[] = [];
  private readonly connsByKey = new Map<string, ConnState>();
  private originSeq = 0;
  private connSeq = 0;
  /** Cluster time: resumes from the last applied time and advances by the monotonic clock. */
  private timeBase = 0;
  private monoBase = 0;
  private lastStampedAt = 0;
  private tickInFlight = false;
  private lastProposalMono = 0;
  private shuttingDown = false;

  constructor(config: ReplicaConfig, state: LockState = createLockState()) {
    this.config = config;
    this.state = state;
  }

  /** Call once after replaying the log, with the monotonic time: cluster time goes on from the
   *  last applied command's time (DESIGN §3). */
  start(monoNow: number): void {
    this.timeBase = this.state.now;
    this.monoBase = monoNow;
    this.lastStampedAt = this.state.now;
    this.lastProposalMono = monoNow;
  }

  clusterNow(monoNow: number): number {
    return Math.max(this.lastStampedAt, this.timeBase + (monoNow - this.monoBase));
  }

  get serving(): boolean {
    return !this.shuttingDown;
  }

  beginShutdown(): void {
    this.shuttingDown = true;
  }

  // ---- connections ----

  open(conn: ClientConnection): ConnState {
    const key = conn.kind === 'http' ? null : `${this.config.nodeId}/${this.config.bootId}/${++this.connSeq}`;
    const state: ConnState = { conn, key, clientId: undefined, helloPending: false, closed: false };
    if (key !== null) this.connsByKey.set(key, state);
    return state;
  }

  close(state: ConnState, monoNow: number): void {
    if (state.closed) return;
    state.closed = true;
    if (state.key === null) return;
    this.connsByKey.delete(state.key);
    const client = state.clientId;
    if (client === undefined) return;
    const session = this.state.sessions.get(client);
    if ((session !== undefined && session.conn === state.key) || state.helloPending) {
      this.propose({ type: 'disconnected', at: 0, client, conn: state.key }, monoNow);
    }
  }

  // ---- requests ----

  request(cs: ConnState, request: Request, monoNow: number): void {
    if (this.shuttingDown) {
      this.answer(cs, request.id, errorAnswer('shutting_down', 'the node is shutting down'));
      return;
    }
    switch (request.action) {
      case 'status':
        this.answer(cs, request.id, { ok: true, ...this.status() });
        return;
      case 'check':
        this.noteContact(cs);
        this.answer(cs, request.id, checkLock(this.state, request.lock_name));
        return;
      case 'read':
        this.noteContact(cs);
        this.answer(cs, request.id, readFile(this.state, request.file));
        return;
      default:
        break;
    }
    // Everything else names a client_id, which binds the connection (PROTOCOL §4 Sessions).
    const client = request.client_id;
    if (cs.clientId === undefined) cs.clientId = client;
    else if (cs.clientId !== client) {
      this.answer(cs, request.id, errorAnswer('client_mismatch', `this connection belongs to client_id ${cs.clientId}`));
      return;
    }
    if (request.action === 'hello') {
      cs.helloPending = true;
      this.proposeFor(cs, request.id, {
        type: 'hello', at: 0, client, conn: cs.key, implicit: false,
        ttlMs: request.ttl_ms ?? this.config.sessionTtlMsDefault, graceMs: request.grace_ms ?? 0,
        ...(request.resume_token === undefined ? {} : { resume: request.resume_token }),
        fresh: this.config.newSecret(),
      }, monoNow, { node: this.config.nodeId, leader: this.config.nodeId });
      return;
    }
    this.ensureSession(cs, client, monoNow);
    const req = request.action === 'keepalive' ? undefined : request.request_id;
    const common = { at: 0, client, conn: cs.key, ...(req === undefined ? {} : { req }) };
    switch (request.action) {
      case 'keepalive':
        this.touchClients.add(client);
        this.touchAnswers.push({ conn: cs, id: request.id });
        return;
      case 'preempt':
        this.proposeFor(cs, request.id, { type: 'preempt', ...common, lock: request.lock_name, ...opt('leaseMs', request.lease_ms) }, monoNow);
        return;
      case 'acquire':
        this.proposeFor(cs, request.id, {
          type: 'acquire', ...common, lock: request.lock_name,
          ...opt('timeoutMs', request.timeout_ms), ...opt('leaseMs', request.lease_ms),
        }, monoNow);
        return;
      case 'release':
        this.proposeFor(cs, request.id, { type: 'release', ...common, lock: request.lock_name, ...opt('token', request.token) }, monoNow);
        return;
      case 'append':
        this.proposeFor(cs, request.id, {
          type: 'append', ...common, lock: request.lock_name, token: request.token, file: request.file, data: request.data,
        }, monoNow);
        return;
      case 'bye':
        this.proposeFor(cs, request.id, { type: 'bye', ...common }, monoNow);
        return;
      default: {
        const never: never = request;
        assert(false, `unhandled action ${JSON.stringify(never)}`);
      }
    }
  }

  status(): StatusInfo {
    return {
      node: this.config.nodeId,
      role: 'leader',
      term: 1,
      leader: this.config.nodeId,
      commit_index: this.state.appliedIndex,
      members: this.config.members,
    };
  }

  /** Opens the session implicitly for a first request that was not a hello (PROTOCOL §4). */
  private ensureSession(cs: ConnState, client: string, monoNow: number): void {
    if (cs.helloPending) return;
    const session = this.state.sessions.get(client);
    if (session !== undefined && session.conn === cs.key) return;
    cs.helloPending = true;
    this.propose({
      type: 'hello', at: 0, client, conn: cs.key, implicit: true,
      ttlMs: this.config.sessionTtlMsDefault, graceMs: 0, fresh: this.config.newSecret(),
    }, monoNow, this.pendingOrigin(cs, null));
  }

  /** Reads and checks from a connection with a session count as contact (PROTOCOL §4: the
   *  session ends when no request from it reached the cluster for ttl_ms). */
  private noteContact(cs: ConnState): void {
    if (cs.clientId !== undefined && this.state.sessions.get(cs.clientId)?.conn === cs.key) {
      this.touchClients.add(cs.clientId);
    }
  }

  // ---- proposing ----

  private pendingOrigin(cs: ConnState, id: RequestId | null, extra?: Record<string, unknown>): string {
    const origin = `${this.config.nodeId}#${++this.originSeq}`;
    if (id !== null) this.pending.set(origin, { conn: cs, id, ...(extra === undefined ? {} : { extra }) });
    else this.pending.set(origin, { conn: cs, id: '', extra: { internal: true } });
    return origin;
  }

  private proposeFor(cs: ConnState, id: RequestId, command: Command, monoNow: number, extra?: Record<string, unknown>): void {
    this.propose(command, monoNow, this.pendingOrigin(cs, id, extra));
  }

  private propose(command: Command, monoNow: number, origin?: string): void {
    command.at = this.stamp(monoNow);
    if (origin !== undefined) command.origin = origin;
    this.proposals.push(command);
    this.lastProposalMono = monoNow;
  }

  private stamp(monoNow: number): number {
    const at = this.clusterNow(monoNow);
    this.lastStampedAt = at;
    return at;
  }

  /** Decides whether cluster time must be committed now: a deadline is due, or time has not
   *  been committed for a while and something is waiting on a deadline. */
  tick(monoNow: number): void {
    const next = nextDeadlineAt(this.state);
    if (next === null || this.tickInFlight) return;
    const now = this.clusterNow(monoNow);
    if (next <= now || monoNow - this.lastProposalMono >= this.config.idleTickMs) {
      this.tickInFlight = true;
      this.propose({ type: 'tick', at: 0 }, monoNow, `${this.config.nodeId}#tick`);
    }
  }

  /** Everything to append to the log now, in order; the touch of pending keepalives last. */
  takeProposals(monoNow: number): Command[] {
    if (this.touchAnswers.length > 0 || this.touchClients.size > 0) {
      const origin = `${this.config.nodeId}#${++this.originSeq}`;
      this.proposals.push({ type: 'touch', at: this.stamp(monoNow), clients: [...this.touchClients], origin });
      this.touchPending.set(origin, this.touchAnswers);
      this.touchClients = new Set();
      this.touchAnswers = [];
    }
    const out = this.proposals;
    this.proposals = [];
    return out;
  }

  get hasProposals(): boolean {
    return this.proposals.length > 0 || this.touchAnswers.length > 0 || this.touchClients.size > 0;
  }

  private readonly touchPending = new Map<string, PendingAnswer[]>();

  // ---- applying ----

  applyCommitted(index: number, command: Command): AppliedEntry {
    const { answer, effects } = apply(this.state, index, command);
    const origin = command.origin;
    if (origin !== undefined && origin.startsWith(`${this.config.nodeId}#`)) this.answerOrigin(origin, command, answer);
    for (const effect of effects) this.deliverEffect(effect);
    return { index, command, answer, effects };
  }

  private answerOrigin(origin: string, command: Command, answer: Answer | null): void {
    if (command.type === 'tick') {
      this.tickInFlight = false;
      return;
    }
    if (command.type === 'touch') {
      const answers = this.touchPending.get(origin) ?? [];
      this.touchPending.delete(origin);
      for (const p of answers) {
        const client = p.conn.clientId;
        const session = client === undefined ? undefined : this.state.sessions.get(client);
        if (session === undefined || session.conn !== p.conn.key) {
          this.answer(p.conn, p.id, errorAnswer('unavailable', 'the session ended; send the request again to open a new one'));
        } else {
          this.answer(p.conn, p.id, { ok: true, ttl_ms: session.ttlMs });
        }
      }
      return;
    }
    const p = this.pending.get(origin);
    if (p === undefined) return;
    this.pending.delete(origin);
    if (command.type === 'hello') p.conn.helloPending = false;
    if (p.extra?.['internal'] === true) return;
    if (answer === null) {
      if (command.type === 'acquire') this.wait(`${command.client}\u0000${command.lock}`, p);
      return;
    }
    this.answer(p.conn, p.id, p.extra === undefined || !answer.ok ? answer : { ...answer, ...p.extra });
  }

  private wait(key: string, p: PendingAnswer): void {
    const list = this.waiting.get(key);
    if (list === undefined) this.waiting.set(key, [p]);
    else list.push(p);
  }

  private deliverEffect(effect: Effect): void {
    switch (effect.kind) {
      case 'granted':
      case 'wait_ended': {
        const key = `${effect.client}\u0000${effect.lock}`;
        const list = this.waiting.get(key);
        if (list === undefined) return;
        this.waiting.delete(key);
        const answer: Answer = effect.kind === 'granted'
          ? { ok: true, lock_name: effect.lock, owner: effect.client, token: effect.token }
          : effect.answer;
        for (const p of list) this.answer(p.conn, p.id, answer);
        return;
      }
      case 'lost': {
        if (effect.conn === null) return;
        const cs = this.connsByKey.get(effect.conn);
        if (cs === undefined || cs.closed) return;
        cs.conn.push({ event: 'lost', lock_name: effect.lock, token: effect.token, reason: effect.reason });
        return;
      }
      case 'session_ended':
        return;
      default: {
        const never: never = effect;
        assert(false, `unhandled effect ${JSON.stringify(never)}`);
      }
    }
  }

  private answer(cs: ConnState, id: RequestId, answer: Answer): void {
    if (cs.closed) return;
    cs.conn.answer(id, answer);
  }

  /** Fails every request still waiting (shutdown). */
  failAll(code: ErrorCode, message: string): void {
    const answer = errorAnswer(code, message);
    for (const p of this.pending.values()) if (p.extra?.['internal'] !== true) this.answer(p.conn, p.id, answer);
    for (const list of this.waiting.values()) for (const p of list) this.answer(p.conn, p.id, answer);
    for (const list of this.touchPending.values()) for (const p of list) this.answer(p.conn, p.id, answer);
    for (const p of this.touchAnswers) this.answer(p.conn, p.id, answer);
    this.pending.clear();
    this.waiting.clear();
    this.touchPending.clear();
    this.touchAnswers = [];
  }
}

export type { ConnState };

function opt<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
