// LockClient: the library side of PROTOCOL.md. One TCP (or TLS) connection at a time, NDJSON
// framing, pipelined requests matched by numeric `id`, automatic `hello`/resume and keepalives,
// and a pessimistic client-side view of which locks are still held (DESIGN §3).
//
// Failure handling in one place:
// - `unavailable` answers are retried on the same connection with backoff, within the request's
//   budget (requestTimeoutMs, or the acquire's timeoutMs if longer). After requestTimeoutMs/2 of
//   nothing but `unavailable` the node is probably cut off from the majority, so the client
//   moves to the next server.
// - A closed connection is replaced by one to the next server (round robin, backoff); after
//   `hello` with the resume_token, every pending request is re-sent as it was, with the same
//   `request_id`, so the cluster applies it at most once (PROTOCOL §4 "Retries are applied
//   once"). If no server answers `hello` within requestTimeoutMs, all pending requests reject
//   with `unavailable`.
import net from 'node:net';
import tls from 'node:tls';
import { parse as parseNdjson, type ParseOptions } from 'ndjson';
import { v4 as uuidv4 } from 'uuid';
import { frameBytesMax, durationMsMax, sessionTtlMsMax, sessionTtlMsMin } from '../core/limits';
import { LatchkeyError, isErrorCode, type ErrorCode } from '../protocol/errors';
import { validateRequest } from '../protocol/schemas';
import { Keepalive, safetyMarginMs } from './keepalive';
import { Lock, type LockHost, type LostReason } from './lock';

/** How often a client looks for grants it may hold without knowing (see suspect()). */
const suspectSweepMs = 1000;

export interface LockClientOptions {
  /** Every node as `HOST:PORT` (`[v6]:PORT` for IPv6). One is used at a time, round robin. */
  servers: readonly string[];
  /** The session's identity. Default: a fresh UUID v4. */
  clientId?: string;
  /** Session ttl asked for in `hello`; the server's answer wins. Default: the server's. */
  ttlMs?: number;
  /**
   * How long the session outlives a closed connection. Default: none sent, so a node that sees
   * the connection close ends the session; set it if the session must survive reconnects.
   */
  graceMs?: number;
  /** Sent as `auth` in `hello` when the cluster runs with --auth-token-file. */
  authToken?: string;
  /** Connect with TLS (the nodes run with --tls-*); without it, plain TCP. */
  tls?: LockClientTls;
  /** One TCP connect attempt (with TLS, the handshake too). Default 2000. */
  connectTimeoutMs?: number;
  /** Budget of a request (and of finding a server) before it rejects. Default 10000. */
  requestTimeoutMs?: number;
}

/**
 * How the client checks the nodes' certificates. The certificate must chain to `ca` (default:
 * Node's built-in roots) and name the address's host or IP, or `servername` when given.
 * `rejectUnauthorized: false` turns every check off: for tests only.
 */
export interface LockClientTls {
  ca?: string | Buffer;
  /** A client certificate and its key (the nodes accept clients without one). */
  cert?: string | Buffer;
  key?: string | Buffer;
  servername?: string;
  rejectUnauthorized?: boolean;
}

export interface AcquireOptions {
  /** Give up after this long in the queue (the server answers `timeout`). Default: forever. */
  timeoutMs?: number;
  /** The server releases the grant this long after granting it. */
  leaseMs?: number;
  /**
   * Aborting gives up waiting: the call rejects with a LatchkeyError of code `timeout` and name
   * `AbortError` (its `cause` is `signal.reason`), and the lock is released if it was granted
   * meanwhile.
   */
  signal?: AbortSignal;
}

export interface PreemptOptions {
  leaseMs?: number;
}

export interface ReadOptions {
  /** Let a follower answer from its own, possibly old, copy. */
  staleOk?: boolean;
}

export interface LockState {
  name: string;
  owner: string | null;
  token: number | null;
  waiters: number;
}

export interface ClusterStatus {
  node: string;
  role: 'leader' | 'follower' | 'candidate';
  term: number;
  leader: string | null;
  commitIndex: number;
  members: string[];
}

export interface AppendResult {
  file: string;
  /** The file's size in bytes after this append. */
  size: number;
}

type Wire = Record<string, unknown>;

/** How one request is bounded. */
interface Policy {
  /** `unavailable` answers are retried until this long after the request was issued. */
  budgetMs: number;
  /** Without any answer for this long, reject (null: wait as long as the connection lives). */
  watchdogMs: number | null;
  watchdogCode: ErrorCode;
  signal?: AbortSignal;
  /** A grant that arrives after the caller gave up (abort, watchdog) is handed here. */
  onLateAnswer?: (answer: Wire) => void;
  /** Called when the caller gives up on a request that was already sent. */
  onGiveUp?: () => void;
}

interface Pending {
  readonly id: number;
  readonly line: string;
  readonly policy: Policy;
  /** performance.now() when the request was issued: the earliest the cluster can apply it. */
  readonly issuedAtMs: number;
  /** performance.now() of the latest write, or -1 before the first. */
  sentAtMs: number;
  /** Written on the current connection (and not yet answered there). */
  written: boolean;
  /** The caller gave up; the request stays only to clean up a late grant. */
  detached: boolean;
  unavailableCount: number;
  timers: NodeJS.Timeout[];
  resolve(reply: Reply): void;
  reject(error: LatchkeyError): void;
  cleanup(): void;
}

interface Reply {
  answer: Wire;
  /** performance.now() when the answered attempt was sent. */
  sentAtMs: number;
}

interface Hello {
  id: number;
  settle(outcome: Wire | null): void;
}

/** A hello's outcome: its answer and when it was sent, the node's refusal, or null (no answer). */
type HelloOutcome = { answer: Wire; sentAtMs: number } | LatchkeyError | null;

const defaults = { connectTimeoutMs: 2000, requestTimeoutMs: 10000 };
/** PROTOCOL §1 `--session-ttl-ms` default, used only if a hello answer lacks ttl_ms. */
const serverTtlMsDefault = 10000;
/** Backoff between retries: doubles from the floor to the ceiling, with jitter. */
const backoffMsMin = 25;
const backoffMsMax = 1000;
/** Answers we accept: a `read` can return a whole file, far larger than a request frame. */
const answerBytesMax = 64 * 1024 * 1024;

export class LockClient implements LockHost {
  readonly clientId: string;
  private readonly servers: readonly string[];
  private readonly ttlMs: number | undefined;
  private readonly graceMs: number | undefined;
  private readonly authToken: string | undefined;
  private readonly tls: LockClientTls | undefined;
  private readonly connectTimeoutMs: number;
  private readonly requestTimeoutMs: number;

  private state: 'open' | 'closing' | 'closed' = 'open';
  private closing: Promise<void> | null = null;
  private idSeq = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly locks = new Map<string, Lock>();
  /** Locks a gave-up take may have been granted (see suspect()). */
  private readonly suspects = new Set<string>();
  private suspectTimer: NodeJS.Timeout | null = null;
  private readonly keepalive: Keepalive;
  private resumeToken: string | null = null;

  private socket: net.Socket | null = null;
  /** The socket answered `hello`: requests may be written. */
  private ready = false;
  private hello: Hello | null = null;
  private connecting: Promise<void> | null = null;
  private readyWaiters: Array<{ resolve(): void; reject(error: LatchkeyError): void }> = [];
  private serverIndex = 0;
  private unavailableSinceMs: number | null = null;

  constructor(options: LockClientOptions) {
    const opts = { ...defaults, ...options };
    validateOptions(opts);
    this.servers = [...opts.servers];
    this.clientId = opts.clientId ?? uuidv4();
    this.ttlMs = opts.ttlMs;
    this.graceMs = opts.graceMs;
    this.authToken = opts.authToken;
    this.tls = opts.tls === undefined ? undefined : { ...opts.tls };
    this.connectTimeoutMs = opts.connectTimeoutMs;
    this.requestTimeoutMs = opts.requestTimeoutMs;
    this.keepalive = new Keepalive({
      send: () => this.sendKeepalive(),
      onOverdue: () => this.loseAll('keepalive_overdue'),
    });
  }

  // ---------------------------------------------------------------- public API

  /** Connects and says `hello` now instead of on the first request. */
  connect(): Promise<void> {
    if (this.state !== 'open') return Promise.reject(closedError());
    if (this.ready) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.readyWaiters.push({ resolve, reject });
      this.ensureConnected();
    });
  }

  /** Takes the lock only if it is free; otherwise rejects `lock_held` (with `owner`). */
  async preempt(name: string, options: PreemptOptions = {}): Promise<Lock> {
    const body: Wire = { action: 'preempt', lock_name: name, client_id: this.clientId, request_id: uuidv4() };
    if (options.leaseMs !== undefined) body['lease_ms'] = options.leaseMs;
    const issuedAtMs = performance.now();
    const policy: Policy = { ...this.plainPolicy(), onGiveUp: () => this.suspect(name) };
    const { answer } = await this.call(body, policy);
    return this.granted(name, answer, issuedAtMs, options.leaseMs);
  }

  /** Waits in the lock's FIFO queue until granted, `timeout`, or `signal` aborts. */
  async acquire(name: string, options: AcquireOptions = {}): Promise<Lock> {
    const { timeoutMs, leaseMs, signal } = options;
    const body: Wire = { action: 'acquire', lock_name: name, client_id: this.clientId, request_id: uuidv4() };
    if (timeoutMs !== undefined) body['timeout_ms'] = timeoutMs;
    if (leaseMs !== undefined) body['lease_ms'] = leaseMs;
    const issuedAtMs = performance.now();
    const policy: Policy = {
      budgetMs: Math.max(this.requestTimeoutMs, timeoutMs ?? 0),
      // The server answers `timeout` itself; this only guards against an answer that never comes.
      watchdogMs: timeoutMs === undefined ? null : timeoutMs + this.requestTimeoutMs,
      watchdogCode: 'timeout',
      // The protocol has no way to leave a queue, so a grant that comes after the caller gave up
      // is released at once; and in case it was granted already, a release goes out now too.
      onLateAnswer: (answer) => this.releaseQuietly(name, answer['token']),
      onGiveUp: () => {
        // The client holds no grant of this name now, so a release without a token can only
        // release what this waiting acquire may have been granted; sent on this connection
        // before any later take, it cannot overtake one. If it cannot get through, suspect().
        if (!this.locks.has(name)) this.releaseQuietly(name, undefined);
        this.suspect(name);
      },
    };
    if (signal !== undefined) policy.signal = signal;
    const { answer } = await this.call(body, policy);
    return this.granted(name, answer, issuedAtMs, leaseMs);
  }

  /** Acquires, runs `fn`, and always releases, whatever `fn` does. */
  async withLock<T>(name: string, fn: (lock: Lock) => Promise<T> | T, options: AcquireOptions = {}): Promise<T> {
    const lock = await this.acquire(name, options);
    let result: T;
    try {
      result = await fn(lock);
    } catch (err) {
      // fn's error is the one the caller needs; a failed release must not hide it.
      await lock.release().catch(() => undefined);
      throw err;
    }
    await lock.release();
    return result;
  }

  async check(name: string, options: ReadOptions = {}): Promise<LockState> {
    const body: Wire = { action: 'check', lock_name: name };
    if (options.staleOk !== undefined) body['stale_ok'] = options.staleOk;
    const { answer } = await this.call(body, this.plainPolicy());
    return {
      name,
      owner: typeof answer['owner'] === 'string' ? answer['owner'] : null,
      token: typeof answer['token'] === 'number' ? answer['token'] : null,
      waiters: typeof answer['waiters'] === 'number' ? answer['waiters'] : 0,
    };
  }

  /** Appends `data` to `file` (default: the lock's name), guarded by the lock's token. */
  async append(lock: Lock, data: string, file: string = lock.name): Promise<AppendResult> {
    const body: Wire = {
      action: 'append', file, data, lock_name: lock.name, token: lock.token, client_id: this.clientId,
      request_id: uuidv4(),
    };
    const { answer } = await this.call(body, this.plainPolicy());
    return { file, size: expectNumber(answer, 'size') };
  }

  async read(file: string, options: ReadOptions = {}): Promise<string> {
    const body: Wire = { action: 'read', file };
    if (options.staleOk !== undefined) body['stale_ok'] = options.staleOk;
    const { answer } = await this.call(body, this.plainPolicy());
    const data = answer['data'];
    if (typeof data !== 'string') throw new LatchkeyError('internal', "the server's read answer has no data");
    return data;
  }

  async status(): Promise<ClusterStatus> {
    const { answer } = await this.call({ action: 'status' }, this.plainPolicy());
    return {
      node: String(answer['node']),
      role: answer['role'] as ClusterStatus['role'],
      term: expectNumber(answer, 'term'),
      leader: typeof answer['leader'] === 'string' ? answer['leader'] : null,
      commitIndex: expectNumber(answer, 'commit_index'),
      members: Array.isArray(answer['members']) ? answer['members'].map(String) : [],
    };
  }

  /**
   * Sends `bye` (ending the session and releasing its locks on the cluster), stops keepalives and
   * closes the socket. Never rejects: a failed bye only means the session ends by its ttl.
   * Pending requests reject with `shutting_down`; held locks abort with `session_ended`.
   */
  close(): Promise<void> {
    if (this.closing === null) this.closing = this.shutDown();
    return this.closing;
  }

  // ---------------------------------------------------------------- LockHost

  /** @internal Used by Lock.release(). */
  async releaseLock(lock: Lock): Promise<void> {
    if (this.state !== 'open') {
      lock.markReleased(); // `bye` released everything the session held
      return;
    }
    const body: Wire = {
      action: 'release', lock_name: lock.name, client_id: this.clientId, token: lock.token, request_id: uuidv4(),
    };
    try {
      await this.call(body, this.plainPolicy());
    } catch (err) {
      const gone = err instanceof LatchkeyError && (err.code === 'not_owner' || err.code === 'stale_token');
      if (!gone) throw err;
      this.forget(lock);
      // On a handle already known to be lost this is the expected answer; otherwise the loss is
      // news, so it is reported by the signal and by this rejection.
      if (lock.lostReason === null) {
        lock.lose('not_owner');
        throw err;
      }
    }
    this.forget(lock);
    lock.markReleased();
  }

  /** @internal */
  checkExpiry(): void {
    if (this.locks.size > 0 && !this.keepalive.isSure(performance.now())) this.loseAll('keepalive_overdue');
  }

  // ---------------------------------------------------------------- locks

  private granted(name: string, answer: Wire, issuedAtMs: number, leaseMs: number | undefined): Lock {
    const token = expectNumber(answer, 'token');
    const held = this.locks.get(name);
    // Taking a lock we already hold answers the same token: the same hold, so the same handle.
    if (held !== undefined && held.token === token) return held;
    if (held !== undefined) {
      held.lose('not_owner');
      this.forget(held);
    }
    const lock = new Lock(this, name, token);
    this.locks.set(name, lock);
    // The cluster granted no earlier than the request was issued, so counting the lease from
    // then can only end it early, never late.
    if (leaseMs !== undefined) lock.loseAt(issuedAtMs + leaseMs - safetyMarginMs(leaseMs));
    this.checkExpiry();
    return lock;
  }

  private forget(lock: Lock): void {
    if (this.locks.get(lock.name) === lock) this.locks.delete(lock.name);
  }

  private loseAll(reason: LostReason): void {
    const locks = [...this.locks.values()];
    this.locks.clear();
    for (const lock of locks) {
      lock.lose(reason);
      // Only our own clock gave up on it: the cluster may still list us as owner, and no one
      // should wait for a lock whose holder already stopped using it.
      if (reason === 'keepalive_overdue') lock.release().catch(() => undefined);
    }
    if (reason === 'keepalive_overdue' && this.socket !== null && this.servers.length > 1) {
      // The node we talk to has not confirmed the session for most of a ttl: try another.
      this.socket.destroy();
    }
  }

  /**
   * A preempt or acquire gave up without knowing whether it was granted (PROTOCOL §4 lets a
   * request already in the log be applied after the node stopped waiting for it). Until the
   * cluster says otherwise, look at the lock now and then, and release a grant of ours that no
   * handle owns, by its token, so it can never release a later, legitimate grant.
   */
  private suspect(name: string): void {
    if (this.locks.has(name)) return;
    this.suspects.add(name);
    if (this.suspectTimer === null && this.state === 'open') {
      this.suspectTimer = setTimeout(() => void this.sweepSuspects(), suspectSweepMs);
      this.suspectTimer.unref();
    }
  }

  private async sweepSuspects(): Promise<void> {
    this.suspectTimer = null;
    for (const name of [...this.suspects]) {
      if (this.state !== 'open') return;
      try {
        const state = await this.check(name);
        const held = this.locks.get(name);
        if (state.owner !== this.clientId || state.token === null || (held !== undefined && held.token === state.token)) {
          this.suspects.delete(name);
          continue;
        }
        await this.call(
          { action: 'release', lock_name: name, client_id: this.clientId, token: state.token, request_id: uuidv4() },
          this.plainPolicy(),
        );
        this.suspects.delete(name);
      } catch (err) {
        if (err instanceof LatchkeyError && (err.code === 'not_owner' || err.code === 'stale_token')) this.suspects.delete(name);
      }
    }
    if (this.suspects.size > 0 && this.state === 'open') {
      this.suspectTimer = setTimeout(() => void this.sweepSuspects(), suspectSweepMs);
      this.suspectTimer.unref();
    }
  }

  private releaseQuietly(name: string, token: unknown): void {
    if (this.state !== 'open') return;
    const body: Wire = { action: 'release', lock_name: name, client_id: this.clientId, request_id: uuidv4() };
    if (typeof token === 'number') body['token'] = token;
    this.call(body, this.plainPolicy()).catch(() => undefined);
  }

  private async sendKeepalive(): Promise<number> {
    const { answer, sentAtMs } = await this.call({ action: 'keepalive', client_id: this.clientId }, this.plainPolicy());
    this.startKeepalive(answer['ttl_ms']);
    return sentAtMs;
  }

  /** (Re)starts keepalives at the ttl the server granted, unless the client is closing. */
  private startKeepalive(ttlMs: unknown): void {
    if (this.state !== 'open') return;
    this.keepalive.start(typeof ttlMs === 'number' && ttlMs > 0 ? ttlMs : (this.ttlMs ?? serverTtlMsDefault));
  }

  // ---------------------------------------------------------------- requests

  private plainPolicy(): Policy {
    return { budgetMs: this.requestTimeoutMs, watchdogMs: this.requestTimeoutMs, watchdogCode: 'unavailable' };
  }

  /** Validates, registers and sends one request; resolves with its success answer. */
  private call(body: Wire, policy: Policy): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      const isBye = body['action'] === 'bye';
      if (this.state === 'closed' || (this.state === 'closing' && !isBye)) return reject(closedError());
      if (policy.signal?.aborted === true) return reject(abortError(policy.signal));
      const id = ++this.idSeq;
      const message = { id, ...body };
      const checked = validateRequest(message);
      if (!checked.ok) return reject(new LatchkeyError('bad_request', checked.message));
      const line = JSON.stringify(message);
      if (Buffer.byteLength(line) > frameBytesMax) {
        return reject(new LatchkeyError('frame_too_large', `the ${String(body['action'])} request is longer than ${frameBytesMax} bytes`));
      }
      const entry: Pending = {
        id, line, policy, issuedAtMs: performance.now(), sentAtMs: -1, written: false, detached: false,
        unavailableCount: 0, timers: [], resolve, reject, cleanup: () => undefined,
      };
      this.pending.set(id, entry);
      if (policy.watchdogMs !== null) {
        const message = `no answer to ${String(body['action'])} within ${policy.watchdogMs}ms`;
        const timer = setTimeout(() => this.giveUp(entry, new LatchkeyError(policy.watchdogCode, message)), policy.watchdogMs);
        timer.unref();
        entry.timers.push(timer);
      }
      const signal = policy.signal;
      if (signal !== undefined) {
        const onAbort = (): void => this.giveUp(entry, abortError(signal));
        signal.addEventListener('abort', onAbort, { once: true });
        entry.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      if (this.ready) this.write(entry);
      else this.ensureConnected();
    });
  }

  private write(entry: Pending): void {
    if (this.socket === null || !this.ready) return;
    entry.written = true;
    entry.sentAtMs = performance.now();
    this.socket.write(`${entry.line}\n`);
  }

  private settle(entry: Pending, outcome: { reply: Reply } | { error: LatchkeyError }): void {
    this.pending.delete(entry.id);
    for (const timer of entry.timers) clearTimeout(timer);
    entry.cleanup();
    if (entry.detached) {
      if ('reply' in outcome) entry.policy.onLateAnswer?.(outcome.reply.answer);
      return;
    }
    if ('reply' in outcome) entry.resolve(outcome.reply);
    else entry.reject(outcome.error);
  }

  /**
   * The caller stops waiting. A sent request that may still be granted stays, detached, until
   * its answer or its watchdog (by then the server has long answered, or never will).
   */
  private giveUp(entry: Pending, error: LatchkeyError): void {
    if (!this.pending.has(entry.id)) return;
    const mayBeGranted = entry.sentAtMs >= 0 && entry.policy.onLateAnswer !== undefined;
    if (entry.detached || !mayBeGranted) {
      this.settle(entry, { error });
      return;
    }
    entry.detached = true;
    entry.cleanup();
    entry.reject(error);
    entry.policy.onGiveUp?.();
  }

  private onAnswer(message: Wire): void {
    const id = message['id'];
    if (this.hello !== null && id === this.hello.id) {
      this.hello.settle(message);
      return;
    }
    const entry = typeof id === 'number' ? this.pending.get(id) : undefined;
    // No entry: a late answer to something we gave up on (or `id: null` for a line the server
    // could not read, which validation here should make impossible).
    if (entry === undefined || !entry.written) return;
    if (message['ok'] === true) {
      this.unavailableSinceMs = null;
      this.settle(entry, { reply: { answer: message, sentAtMs: entry.sentAtMs } });
      return;
    }
    const error = wireError(message['error']);
    if (error.code === 'unavailable' || error.code === 'shutting_down') this.retryLater(entry, error);
    else this.settle(entry, { error });
  }

  /**
   * PROTOCOL §5: `unavailable` means no leader or no quorum right now, so retry. A node that
   * answers `shutting_down` refused before applying: retry too, but at once on another node.
   */
  private retryLater(entry: Pending, error: LatchkeyError): void {
    const nowMs = performance.now();
    const waitMs = backoffMs(entry.unavailableCount++);
    if (entry.detached || nowMs + waitMs > entry.issuedAtMs + entry.policy.budgetMs) {
      this.settle(entry, { error });
      // An `unavailable` for a request already in a leader's log does not prove it was not
      // applied: a take that gave up this way may still be granted once a quorum is back.
      if (!entry.detached) entry.policy.onGiveUp?.();
      return;
    }
    entry.written = false;
    entry.timers.push(setTimeout(() => { if (!entry.written) this.write(entry); }, waitMs));
    this.unavailableSinceMs ??= nowMs;
    const stuckHere = nowMs - this.unavailableSinceMs >= this.requestTimeoutMs / 2;
    if (this.servers.length > 1 && (stuckHere || error.code === 'shutting_down')) {
      this.unavailableSinceMs = null;
      this.socket?.destroy();
    }
  }

  private onEvent(message: Wire): void {
    if (message['event'] !== 'lost') return; // PROTOCOL §3: ignore events we do not know
    const name = message['lock_name'];
    const lock = typeof name === 'string' ? this.locks.get(name) : undefined;
    if (lock === undefined || lock.token !== message['token']) return;
    this.forget(lock);
    lock.lose(message['reason'] === 'lease_expired' ? 'lease_expired' : 'session_expired');
  }

  private failAll(error: LatchkeyError): void {
    for (const entry of [...this.pending.values()]) {
      entry.detached = false; // nobody else will clean up a late grant now
      this.settle(entry, { error });
    }
    for (const waiter of this.readyWaiters.splice(0)) waiter.reject(error);
  }

  // ---------------------------------------------------------------- connection

  private ensureConnected(): void {
    if (this.ready || this.connecting !== null || this.state === 'closed') return;
    this.connecting = this.connectLoop().finally(() => { this.connecting = null; });
  }

  /** Tries the servers round robin until one answers `hello`, for at most requestTimeoutMs. */
  private async connectLoop(): Promise<void> {
    const startedAtMs = performance.now();
    for (let attempt = 0; this.state !== 'closed'; attempt++) {
      const elapsedMs = performance.now() - startedAtMs;
      if (attempt > 0 && elapsedMs >= this.requestTimeoutMs) break;
      if (attempt >= this.servers.length) {
        await sleep(Math.min(backoffMs(attempt - this.servers.length), this.requestTimeoutMs - elapsedMs));
      }
      const server = this.servers[this.serverIndex % this.servers.length] as string;
      this.serverIndex = (this.serverIndex + 1) % this.servers.length;
      const remainingMs = Math.max(1, this.requestTimeoutMs - (performance.now() - startedAtMs));
      const socket = await dial(server, Math.min(this.connectTimeoutMs, remainingMs), this.tls).catch(() => null);
      if (socket === null) continue;
      // A node that accepts but never answers must not use up the whole budget of the others.
      const helloTimeoutMs = Math.max(this.connectTimeoutMs, this.requestTimeoutMs / this.servers.length);
      const outcome = await this.handshake(socket, Math.min(remainingMs, helloTimeoutMs));
      if (outcome === 'ready') return;
      // Disowned first, so its 'close' does not start a second loop beside this one.
      if (this.socket === socket) this.socket = null;
      socket.destroy();
      if (outcome instanceof LatchkeyError) {
        this.failAll(outcome);
        return;
      }
    }
    if (this.state === 'closed') return;
    this.failAll(new LatchkeyError('unavailable', `no server of ${this.servers.join(',')} answered within ${this.requestTimeoutMs}ms`));
  }

  /** Says hello on a fresh socket; on success it becomes the client's connection. */
  private async handshake(socket: net.Socket, answerTimeoutMs: number): Promise<'ready' | 'retry' | LatchkeyError> {
    this.adopt(socket);
    const resuming = this.resumeToken !== null;
    let outcome = await this.sayHello(socket, answerTimeoutMs);
    if (resuming && outcome instanceof LatchkeyError && !isTransient(outcome.code) && outcome.code !== 'unauthorized') {
      // The node refused our resume_token, so the session we knew is gone: start a new one.
      this.resumeToken = null;
      this.loseAll('session_ended');
      outcome = await this.sayHello(socket, answerTimeoutMs);
    }
    if (outcome === null) return 'retry';
    if (outcome instanceof LatchkeyError) return isTransient(outcome.code) ? 'retry' : outcome;
    this.welcome(outcome.answer, outcome.sentAtMs);
    return 'ready';
  }

  /** null: the connection closed or did not answer in time. */
  private sayHello(socket: net.Socket, answerTimeoutMs: number): Promise<HelloOutcome> {
    if (this.socket !== socket) return Promise.resolve(null);
    const id = ++this.idSeq;
    const message: Wire = { id, action: 'hello', client_id: this.clientId };
    if (this.ttlMs !== undefined) message['ttl_ms'] = this.ttlMs;
    if (this.graceMs !== undefined) message['grace_ms'] = this.graceMs;
    if (this.authToken !== undefined) message['auth'] = this.authToken;
    if (this.resumeToken !== null) message['resume_token'] = this.resumeToken;
    const sentAtMs = performance.now();
    return new Promise((resolve) => {
      const timer = setTimeout(() => hello.settle(null), answerTimeoutMs);
      const hello: Hello = {
        id,
        settle: (answer) => {
          clearTimeout(timer);
          if (this.hello === hello) this.hello = null;
          if (answer === null) resolve(null);
          else resolve(answer['ok'] === true ? { answer, sentAtMs } : wireError(answer['error']));
        },
      };
      this.hello = hello;
      socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** The hello was answered: remember the session, start keepalives, send what waits. */
  private welcome(answer: Wire, sentAtMs: number): void {
    const token = answer['resume_token'];
    if (typeof token === 'string') {
      // The resume token names the session; a different one means the old session ended while
      // we were away, and with it every lock it held.
      if (this.resumeToken !== null && token !== this.resumeToken) this.loseAll('session_ended');
      this.resumeToken = token;
    }
    // An answered hello opened or took over the session after it was sent: as good as a keepalive.
    this.keepalive.confirm(sentAtMs);
    this.startKeepalive(answer['ttl_ms']);
    this.ready = true;
    this.unavailableSinceMs = null;
    for (const entry of this.pending.values()) if (!entry.written) this.write(entry);
    for (const waiter of this.readyWaiters.splice(0)) waiter.resolve();
  }

  private adopt(socket: net.Socket): void {
    this.socket = socket;
    this.ready = false;
    // split2 (under ndjson) takes maxLength, though the typings do not list it.
    const parser = parseNdjson({ strict: true, maxLength: answerBytesMax } as ParseOptions);
    parser.on('data', (message: unknown) => {
      if (this.socket !== socket || typeof message !== 'object' || message === null) return;
      const wire = message as Wire;
      if ('event' in wire && !('id' in wire)) this.onEvent(wire);
      else this.onAnswer(wire);
    });
    // A line we cannot read breaks the framing: start over on a new connection.
    parser.on('error', () => socket.destroy());
    socket.on('error', () => undefined); // 'close' follows and does the work
    socket.on('close', () => this.onSocketClosed(socket));
    socket.pipe(parser);
  }

  private onSocketClosed(socket: net.Socket): void {
    if (this.socket !== socket) return;
    this.socket = null;
    this.ready = false;
    this.hello?.settle(null);
    for (const entry of this.pending.values()) {
      entry.written = false;
    }
    if (this.state === 'closed') return;
    // Reconnect now if anything depends on it; otherwise the next request (or keepalive) will.
    if (this.pending.size > 0 || this.locks.size > 0) this.ensureConnected();
  }

  private async shutDown(): Promise<void> {
    this.state = 'closing';
    this.keepalive.stop();
    if (this.suspectTimer !== null) clearTimeout(this.suspectTimer);
    if (this.resumeToken !== null) {
      await this.call({ action: 'bye', client_id: this.clientId, request_id: uuidv4() }, this.plainPolicy())
        .catch(() => undefined);
    }
    this.state = 'closed';
    this.failAll(closedError());
    this.loseAll('session_ended');
    this.socket?.destroy();
    this.socket = null;
    this.ready = false;
  }
}

// ---------------------------------------------------------------- helpers

function validateOptions(opts: LockClientOptions & typeof defaults): void {
  if (!Array.isArray(opts.servers) || opts.servers.length === 0) {
    throw new LatchkeyError('bad_request', 'servers must list at least one HOST:PORT');
  }
  opts.servers.forEach((server, i) => {
    if (parseAddress(server) === null) throw new LatchkeyError('bad_request', `servers[${i}] must be HOST:PORT, got ${JSON.stringify(server)}`);
  });
  if (opts.clientId !== undefined && (typeof opts.clientId !== 'string' || opts.clientId.length < 1 || opts.clientId.length > 128)) {
    throw new LatchkeyError('bad_request', 'clientId must be a string of 1 to 128 characters');
  }
  if (opts.tls !== undefined && (typeof opts.tls !== 'object' || opts.tls === null)) {
    throw new LatchkeyError('bad_request', 'tls must be an object of TLS options');
  }
  checkInteger('ttlMs', opts.ttlMs, sessionTtlMsMin, sessionTtlMsMax);
  checkInteger('graceMs', opts.graceMs, 0, durationMsMax);
  checkInteger('connectTimeoutMs', opts.connectTimeoutMs, 1, durationMsMax);
  checkInteger('requestTimeoutMs', opts.requestTimeoutMs, 1, durationMsMax);
}

function checkInteger(name: string, value: number | undefined, min: number, max: number): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new LatchkeyError('bad_request', `${name} must be an integer from ${min} to ${max}, got ${String(value)}`);
  }
}

/** `host:port` or `[v6]:port`; null if it is neither. */
export function parseAddress(address: string): { host: string; port: number } | null {
  if (typeof address !== 'string') return null;
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address);
  if (match === null) return null;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return null;
  return { host: (match[1] ?? match[2]) as string, port };
}

/** A connected socket: TCP, or TLS once its handshake (and the certificate check) passed. */
function dial(address: string, timeoutMs: number, tlsOptions: LockClientTls | undefined): Promise<net.Socket> {
  const target = parseAddress(address);
  if (target === null) return Promise.reject(new Error(`bad address ${address}`));
  return new Promise((resolve, reject) => {
    const socket = tlsOptions === undefined
      ? net.connect({ host: target.host, port: target.port })
      : tls.connect({ ...tlsOptions, host: target.host, port: target.port });
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`connect to ${address} timed out`)); }, timeoutMs);
    socket.once('error', (err) => { clearTimeout(timer); reject(err); });
    socket.once(tlsOptions === undefined ? 'connect' : 'secureConnect', () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

function backoffMs(attempt: number): number {
  const ceilingMs = Math.min(backoffMsMax, backoffMsMin * 2 ** Math.min(attempt, 10));
  return Math.round(ceilingMs * (0.5 + Math.random() / 2));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** Hello answers worth trying again, elsewhere: the node, not the request, was the problem. */
function isTransient(code: ErrorCode): boolean {
  return code === 'unavailable' || code === 'shutting_down' || code === 'internal';
}

function wireError(raw: unknown): LatchkeyError {
  if (typeof raw !== 'object' || raw === null) return new LatchkeyError('internal', 'the server answered an error without a body');
  const body = raw as Record<string, unknown>;
  const code = isErrorCode(body['code']) ? body['code'] : 'internal';
  const message = typeof body['message'] === 'string' ? body['message'] : String(body['code']);
  return LatchkeyError.fromWire(typeof body['owner'] === 'string' ? { code, message, owner: body['owner'] } : { code, message });
}

function expectNumber(answer: Wire, field: string): number {
  const value = answer[field];
  if (typeof value !== 'number') throw new LatchkeyError('internal', `the server's answer lacks a numeric ${field}`);
  return value;
}

function closedError(): LatchkeyError {
  return new LatchkeyError('shutting_down', 'the client is closed');
}

/** An abort gives up waiting, which is what `timeout` means; the name lets callers test for it. */
function abortError(signal: AbortSignal): LatchkeyError {
  const error = new LatchkeyError('timeout', 'the operation was aborted');
  error.name = 'AbortError';
  error.cause = signal.reason;
  return error;
}
