// A fake latchkey node for LockClient tests: a real TCP server on 127.0.0.1 port 0 that speaks
// just enough of PROTOCOL.md (hello/resume, preempt, acquire with a FIFO queue, release, check,
// keepalive, append, read, status, bye, `request_id` de-duplication, `lost` events) from an
// in-memory table. Two servers sharing one FakeState act as one cluster, so a test can kill
// one node and watch the client carry on at the other.
//
// Tests steer it through small knobs: `answerKeepalives`, `intercept` (answer, drop or delay
// any request), `reorder` (answer the next N requests in reverse order), `expire` (push a
// `lost` event) and `dropConnections`.
import * as net from 'node:net';

export type Message = Record<string, unknown>;

interface Waiter {
  clientId: string;
  requestId: string | undefined;
  id: unknown;
  conn: FakeConnection;
  timer: NodeJS.Timeout | null;
}

interface LockEntry {
  owner: string | null;
  token: number | null;
  waiters: Waiter[];
}

interface Session {
  resumeToken: string;
  conn: FakeConnection | null;
}

/** The "replicated" state: share one between servers to make them one cluster. */
export class FakeState {
  readonly locks = new Map<string, LockEntry>();
  readonly files = new Map<string, string>();
  readonly sessions = new Map<string, Session>();
  /** `${client_id}/${request_id}` -> the first answer (without id). */
  readonly answers = new Map<string, Message>();
  private tokenSeq = 0;
  private sessionSeq = 0;

  nextToken(): number {
    return ++this.tokenSeq;
  }

  nextResumeToken(): string {
    // Random too, so that two unrelated fake clusters never hand out the same token.
    return `resume-${++this.sessionSeq}-${Math.random().toString(36).slice(2, 10)}`;
  }

  lock(name: string): LockEntry {
    let entry = this.locks.get(name);
    if (entry === undefined) {
      entry = { owner: null, token: null, waiters: [] };
      this.locks.set(name, entry);
    }
    return entry;
  }
}

export type Intercept = (request: Message, conn: FakeConnection) => Message | 'drop' | undefined;

export class FakeConnection {
  readonly socket: net.Socket;
  /** The session this connection belongs to (PROTOCOL §4: the first client_id it names). */
  clientId: string | null = null;
  private reorderBuffer: string[] = [];
  private reorderCount = 0;

  constructor(socket: net.Socket) {
    this.socket = socket;
  }

  get alive(): boolean {
    return !this.socket.destroyed;
  }

  /** Buffers the next `n` answers and sends them in reverse order. */
  reorder(n: number): void {
    this.reorderCount = n;
  }

  answer(id: unknown, body: Message): void {
    const line = `${JSON.stringify({ id, ...body })}\n`;
    if (this.reorderCount > 0) {
      this.reorderBuffer.push(line);
      if (this.reorderBuffer.length < this.reorderCount) return;
      this.reorderCount = 0;
      for (const held of this.reorderBuffer.reverse()) this.write(held);
      this.reorderBuffer = [];
      return;
    }
    this.write(line);
  }

  push(event: Message): void {
    this.write(`${JSON.stringify(event)}\n`);
  }

  private write(line: string): void {
    if (this.alive) this.socket.write(line);
  }
}

export interface FakeServerOptions {
  state?: FakeState;
  /** The ttl_ms answered to hello and keepalive. */
  ttlMs?: number;
  /** Name answered as `node` in hello and status. */
  node?: string;
}

const ok = (fields: Message = {}): Message => ({ ok: true, ...fields });
const fail = (code: string, message: string, extra: Message = {}): Message => ({ ok: false, error: { code, message, ...extra } });

export class FakeServer {
  readonly state: FakeState;
  readonly node: string;
  ttlMs: number;
  answerKeepalives = true;
  intercept: Intercept | null = null;
  /** Every request received, in arrival order, with its connection and performance.now(). */
  readonly received: Array<{ request: Message; conn: FakeConnection; atMs: number }> = [];
  readonly connections = new Set<FakeConnection>();
  private readonly server: net.Server;
  private watchers: Array<{ predicate: (m: Message) => boolean; resolve: (m: Message) => void }> = [];

  private constructor(server: net.Server, options: FakeServerOptions) {
    this.server = server;
    this.state = options.state ?? new FakeState();
    this.ttlMs = options.ttlMs ?? 3000;
    this.node = options.node ?? 'fake';
  }

  static async start(options: FakeServerOptions = {}): Promise<FakeServer> {
    const server = net.createServer();
    const fake = new FakeServer(server, options);
    server.on('connection', (socket) => fake.accept(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Requests received so far with this action. */
  requests(action: string): Message[] {
    return this.received.filter((r) => r.request['action'] === action).map((r) => r.request);
  }

  /** Resolves with the first request (already received or to come) matching `predicate`. */
  waitFor(predicate: (m: Message) => boolean, timeoutMs = 5000): Promise<Message> {
    const seen = this.received.find((r) => predicate(r.request));
    if (seen !== undefined) return Promise.resolve(seen.request);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('fake server: no matching request arrived')), timeoutMs);
      this.watchers.push({ predicate, resolve: (m) => { clearTimeout(timer); resolve(m); } });
    });
  }

  /** Takes the lock away from its owner by expiry and pushes `lost` to the owner's connection. */
  expire(name: string, reason: 'session_expired' | 'lease_expired' = 'session_expired'): void {
    const entry = this.state.lock(name);
    if (entry.owner === null) throw new Error(`fake server: ${name} is not held`);
    const conn = this.state.sessions.get(entry.owner)?.conn;
    conn?.push({ event: 'lost', lock_name: name, token: entry.token, reason });
    this.handOver(name);
  }

  /** Releases the lock whoever holds it, handing it to the first waiter. */
  forceRelease(name: string): void {
    this.handOver(name);
  }

  /** Gives the lock to `owner` (a client that is not under test). */
  holdFor(name: string, owner: string): number {
    const entry = this.state.lock(name);
    this.grant(entry, owner);
    return entry.token as number;
  }

  /** Pushes an arbitrary event to every connection. */
  pushAll(event: Message): void {
    for (const conn of this.connections) conn.push(event);
  }

  dropConnections(): void {
    for (const conn of this.connections) conn.socket.destroy();
  }

  async close(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    const conn = new FakeConnection(socket);
    this.connections.add(conn);
    socket.on('close', () => this.connections.delete(conn));
    socket.on('error', () => undefined);
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk.toString('utf8');
      let newline;
      while ((newline = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.trim() !== '') this.onLine(line, conn);
      }
    });
  }

  private onLine(line: string, conn: FakeConnection): void {
    let request: Message;
    try {
      request = JSON.parse(line) as Message;
    } catch {
      conn.answer(null, fail('bad_request', 'unparsable JSON'));
      return;
    }
    this.received.push({ request, conn, atMs: performance.now() });
    for (const watcher of this.watchers.filter((w) => w.predicate(request))) {
      this.watchers.splice(this.watchers.indexOf(watcher), 1);
      watcher.resolve(request);
    }
    const intercepted = this.intercept?.(request, conn);
    if (intercepted === 'drop') return;
    if (intercepted !== undefined) {
      conn.answer(request['id'], intercepted);
      return;
    }
    const answer = this.process(request, conn);
    if (answer !== null) conn.answer(request['id'], answer);
  }

  /**
   * Applies one request and returns its answer without sending it (an intercept can use this
   * to apply a request and then "crash" before answering). null: no answer now (a queued
   * acquire, or an unanswered keepalive).
   */
  process(request: Message, conn: FakeConnection): Message | null {
    const action = request['action'];
    const clientId = request['client_id'];
    if (typeof clientId === 'string' && action !== 'hello') {
      if (conn.clientId !== null && conn.clientId !== clientId) return fail('client_mismatch', 'another client_id on this connection');
      if (conn.clientId === null) this.openSession(clientId, conn);
    }
    const cacheKey = typeof request['request_id'] === 'string' ? `${String(clientId)}/${request['request_id']}` : null;
    if (cacheKey !== null) {
      const cached = this.state.answers.get(cacheKey);
      if (cached !== undefined) return cached;
    }
    const answer = this.apply(request, conn);
    if (cacheKey !== null && answer !== null && answer['ok'] === true) this.state.answers.set(cacheKey, answer);
    return answer;
  }

  private apply(request: Message, conn: FakeConnection): Message | null {
    const name = String(request['lock_name'] ?? '');
    const clientId = String(request['client_id'] ?? '');
    switch (request['action']) {
      case 'hello': return this.hello(request, conn);
      case 'keepalive': return this.answerKeepalives ? ok({ ttl_ms: this.ttlMs }) : null;
      case 'preempt': {
        const entry = this.state.lock(name);
        if (entry.owner !== null && entry.owner !== clientId) return fail('lock_held', `${name} is held`, { owner: entry.owner });
        if (entry.owner === null) this.grant(entry, clientId);
        return ok({ lock_name: name, owner: clientId, token: entry.token });
      }
      case 'acquire': return this.acquire(name, clientId, request, conn);
      case 'release': {
        const entry = this.state.lock(name);
        if (entry.owner !== clientId) return fail('not_owner', `${clientId} does not hold ${name}`);
        if (request['token'] !== undefined && request['token'] !== entry.token) return fail('stale_token', 'an earlier grant');
        this.handOver(name);
        return ok({ lock_name: name });
      }
      case 'check': {
        const entry = this.state.lock(name);
        return ok({ lock_name: name, owner: entry.owner, token: entry.token, waiters: entry.waiters.length });
      }
      case 'append': {
        const entry = this.state.lock(String(request['lock_name']));
        if (entry.owner !== clientId) return fail('not_owner', 'not held');
        if (entry.token !== request['token']) return fail('stale_token', 'an earlier grant');
        const file = String(request['file']);
        const data = (this.state.files.get(file) ?? '') + String(request['data']);
        this.state.files.set(file, data);
        return ok({ file, size: Buffer.byteLength(data) });
      }
      case 'read': return ok({ file: request['file'], data: this.state.files.get(String(request['file'])) ?? '' });
      case 'status': return ok({ node: this.node, role: 'leader', term: 1, leader: this.node, commit_index: 7, members: [this.node] });
      case 'bye': return this.bye(clientId);
      default: return fail('bad_request', `unknown action ${String(request['action'])}`);
    }
  }

  private hello(request: Message, conn: FakeConnection): Message {
    const clientId = String(request['client_id']);
    const session = this.state.sessions.get(clientId);
    const resume = request['resume_token'];
    if (session !== undefined && resume === session.resumeToken) {
      session.conn = conn; // take over the live session
    } else if (session !== undefined && session.conn !== null && session.conn.alive && session.conn !== conn) {
      return fail('client_mismatch', 'the session is live on another connection');
    } else if (session === undefined || session.conn !== conn) {
      if (session !== undefined) this.bye(clientId);
      this.openSession(clientId, conn);
    }
    conn.clientId = clientId;
    const current = this.state.sessions.get(clientId) as Session;
    return ok({ client_id: clientId, node: this.node, leader: this.node, ttl_ms: this.ttlMs, resume_token: current.resumeToken });
  }

  private openSession(clientId: string, conn: FakeConnection): void {
    conn.clientId = clientId;
    const session = this.state.sessions.get(clientId);
    if (session === undefined) this.state.sessions.set(clientId, { resumeToken: this.state.nextResumeToken(), conn });
    else session.conn = conn;
  }

  private acquire(name: string, clientId: string, request: Message, conn: FakeConnection): Message | null {
    const entry = this.state.lock(name);
    if (entry.owner === null) this.grant(entry, clientId);
    if (entry.owner === clientId) return ok({ lock_name: name, owner: clientId, token: entry.token });
    const requestId = request['request_id'] as string | undefined;
    // A re-sent acquire (same request_id) that is still queued keeps its place in the queue.
    const queued = entry.waiters.find((w) => w.clientId === clientId && requestId !== undefined && w.requestId === requestId);
    if (queued !== undefined) {
      queued.id = request['id'];
      queued.conn = conn;
      return null;
    }
    const waiter: Waiter = { clientId, requestId, id: request['id'], conn, timer: null };
    const timeoutMs = request['timeout_ms'];
    if (typeof timeoutMs === 'number') {
      waiter.timer = setTimeout(() => {
        entry.waiters.splice(entry.waiters.indexOf(waiter), 1);
        waiter.conn.answer(waiter.id, fail('timeout', `${name} not granted within ${timeoutMs}ms`));
      }, timeoutMs);
    }
    entry.waiters.push(waiter);
    return null;
  }

  private grant(entry: LockEntry, clientId: string): void {
    entry.owner = clientId;
    entry.token = this.state.nextToken();
  }

  /** Frees the lock and grants it to the first waiter, answering that waiter's acquire. */
  private handOver(name: string): void {
    const entry = this.state.lock(name);
    entry.owner = null;
    const next = entry.waiters.shift();
    if (next === undefined) return;
    if (next.timer !== null) clearTimeout(next.timer);
    this.grant(entry, next.clientId);
    const answer = ok({ lock_name: name, owner: next.clientId, token: entry.token });
    if (next.requestId !== undefined) this.state.answers.set(`${next.clientId}/${next.requestId}`, answer);
    next.conn.answer(next.id, answer);
  }

  private bye(clientId: string): Message {
    for (const [name, entry] of this.state.locks) {
      for (const waiter of entry.waiters) if (waiter.clientId === clientId && waiter.timer !== null) clearTimeout(waiter.timer);
      entry.waiters = entry.waiters.filter((w) => w.clientId !== clientId);
      if (entry.owner === clientId) this.handOver(name);
    }
    this.state.sessions.delete(clientId);
    return ok();
  }
}

// ---- small helpers for client tests ----

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves with performance.now() when `signal` aborts; rejects if it has not within `timeoutMs`. */
export function whenAborted(signal: AbortSignal, timeoutMs = 5000): Promise<number> {
  if (signal.aborted) return Promise.resolve(performance.now());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`signal not aborted within ${timeoutMs}ms`)), timeoutMs);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(performance.now()); }, { once: true });
  });
}

/** Polls `condition` until it holds; rejects after `timeoutMs`. */
export async function eventually(condition: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadlineMs = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadlineMs) throw new Error(`${what} did not hold within ${timeoutMs}ms`);
    await delay(5);
  }
}

/** The rejection of `promise` (fails if it resolves). */
export async function rejectionOf(promise: Promise<unknown>): Promise<Error & { code?: string; owner?: string }> {
  try {
    await promise;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected a rejection, got a success');
}
