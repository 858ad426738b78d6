// apply(state, index, command): the one function that changes the replicated state. It is pure
// in the sense that matters for replication: the result depends only on the state and the
// command (no clock, randomness or I/O), so every replica applying the same log reaches the
// same state and the same answers. It updates `state` in place for speed.
//
// Time: every command carries the cluster time `at`. Before the command itself takes effect,
// every deadline due by `at` fires (session ttl and grace, lease_ms, acquire timeout_ms), in
// (deadline, seq) order. Expiry therefore needs no commands of its own: the leader only has to
// commit something (a `tick` when idle) once a deadline is due, and a stale expiry can never
// fire because the deadline is re-checked against the state when it pops.
//
// Tokens: every grant takes `lastToken + 1`. DESIGN §2 suggests the log index; one entry can
// grant the same lock twice (a lease expiry hands it to a waiter whose `bye` in the same entry
// hands it on), so a counter in the state is what keeps tokens strictly increasing per lock.
import { assert, unreachable } from '../core/assert';
import { requestResultsPerSessionMax } from '../core/limits';
import { sameSecret } from '../core/secrets';
import { errorAnswer, okAnswer, type Answer } from '../protocol/answers';
import type {
  AcquireCommand, AppendCommand, ByeCommand, Command, DedupCommand, HelloCommand, PreemptCommand, ReleaseCommand,
} from './commands';
import type { Deadline } from './deadline-heap';
import { pushWaiter, removeWaiter, shiftWaiter, type LockEntry, type LockState, type Session } from './state';
import { utf8ByteLength } from './utf8';
import type { Waiter } from './wait-queue';

/** Something a node may have to tell a client other than the answer to the applied command. */
export type Effect =
  /** A queued acquire was granted by this entry. */
  | { kind: 'granted'; client: string; lock: string; token: number; reqs: string[] }
  /** A queued acquire ended without a grant (timeout, or its session ended). */
  | { kind: 'wait_ended'; client: string; lock: string; answer: Answer; reqs: string[] }
  /** PROTOCOL §3 `lost` event: a grant taken away by expiry. */
  | { kind: 'lost'; client: string; conn: string | null; lock: string; token: number; reason: 'session_expired' | 'lease_expired' }
  | { kind: 'session_ended'; client: string; conn: string | null; reason: 'bye' | 'expired' | 'disconnected' };

export interface ApplyResult {
  /** The answer to the command's own request; null when there is none yet (a queued acquire)
   *  or none at all (tick, touch, disconnected). */
  answer: Answer | null;
  effects: Effect[];
}

export function apply(state: LockState, index: number, command: Command): ApplyResult {
  assert(index === state.appliedIndex + 1, `apply out of order: ${index} after ${state.appliedIndex}`);
  state.appliedIndex = index;
  const effects: Effect[] = [];
  // Cluster time never goes backwards, even if a new leader's clock starts behind.
  if (command.at > state.now) state.now = command.at;
  fireDueDeadlines(state, effects);
  const answer = applyCommand(state, command, effects);
  return { answer, effects };
}

function applyCommand(state: LockState, command: Command, effects: Effect[]): Answer | null {
  switch (command.type) {
    case 'hello': return applyHello(state, command);
    case 'preempt':
    case 'acquire':
    case 'release':
    case 'append':
    case 'bye':
      return applyDedup(state, command, effects);
    case 'touch':
      for (const touch of command.touches) {
        const session = state.sessions.get(touch.client);
        if (session !== undefined && session.conn === touch.conn) session.lastContactAt = state.now;
      }
      return null;
    case 'disconnected': {
      const session = state.sessions.get(command.client);
      // The session may have moved to another connection meanwhile: then this close is old news.
      if (session === undefined || session.conn !== command.conn || !session.connected) return null;
      if (session.graceMs > 0) {
        session.connected = false;
        session.disconnectedAt = state.now;
        scheduleSession(state, session);
      } else {
        endSession(state, session, 'disconnected', effects);
      }
      return null;
    }
    case 'tick':
      return null;
    case 'limits':
      state.limits = { ...command.limits };
      return null;
    default:
      return unreachable(command);
  }
}

// ---- sessions ----

function applyHello(state: LockState, command: HelloCommand): Answer {
  let session = state.sessions.get(command.client);
  if (session !== undefined && session.conn !== command.conn) {
    // Taking over a live session from another connection needs its secret (PROTOCOL §4).
    if (command.resume === undefined || !sameSecret(command.resume, session.resume)) {
      return errorAnswer('client_mismatch', `client_id ${command.client} has a live session on another connection; resume it with its resume_token`);
    }
    session.conn = command.conn;
  }
  if (session === undefined) {
    if (state.sessions.size >= state.limits.sessions) return sessionsFull(state);
    session = {
      client: command.client,
      serial: ++state.seq,
      conn: command.conn,
      connected: true,
      ttlMs: command.ttlMs,
      graceMs: command.graceMs,
      resume: command.fresh,
      lastContactAt: state.now,
      disconnectedAt: null,
      queuedAt: null,
      locks: new Set(),
      waits: new Set(),
      results: new Map(),
    };
    state.sessions.set(command.client, session);
  } else if (!command.implicit) {
    session.ttlMs = command.ttlMs;
    session.graceMs = command.graceMs;
  }
  session.connected = true;
  session.disconnectedAt = null;
  session.lastContactAt = state.now;
  scheduleSession(state, session);
  return okAnswer({ client_id: session.client, ttl_ms: session.ttlMs, resume_token: session.resume });
}

function sessionsFull(state: LockState): Answer {
  return errorAnswer('limit_exceeded', `the cluster has ${state.sessions.size} sessions, its limit`);
}

/** When the session ends if nothing more is heard from it. */
function sessionDeadline(session: Session): number {
  const byTtl = session.lastContactAt + session.ttlMs;
  if (session.connected || session.disconnectedAt === null) return byTtl;
  return Math.min(byTtl, session.disconnectedAt + session.graceMs);
}

function scheduleSession(state: LockState, session: Session): void {
  // One live heap entry per session is enough: when it pops early (the session was touched
  // since), it is pushed again for the new deadline. A new one is pushed only if the deadline
  // moved earlier (a disconnect with a short grace, or a smaller ttl); the later one is stale.
  const at = sessionDeadline(session);
  if (session.queuedAt !== null && session.queuedAt <= at) return;
  session.queuedAt = at;
  pushDeadline(state, { at, kind: 'session', key: session.client, lock: '', serial: session.serial });
}

function endSession(state: LockState, session: Session, reason: 'bye' | 'expired' | 'disconnected', effects: Effect[]): void {
  state.sessions.delete(session.client);
  for (const name of session.waits) {
    const lock = state.locks.get(name);
    const waiter = lock === undefined ? undefined : removeWaiter(lock, session.client);
    if (waiter !== undefined) {
      effects.push({
        kind: 'wait_ended', client: session.client, lock: name, reqs: waiter.reqs,
        answer: errorAnswer('not_owner', `session of ${session.client} ended before ${name} was granted`),
      });
    }
  }
  for (const name of session.locks) {
    const lock = state.locks.get(name);
    assert(lock !== undefined && lock.owner === session.client, 'a session holds only locks it owns');
    if (reason === 'expired') {
      effects.push({ kind: 'lost', client: session.client, conn: session.conn, lock: name, token: lock.token, reason: 'session_expired' });
    }
    releaseLock(state, lock, effects);
  }
  effects.push({ kind: 'session_ended', client: session.client, conn: session.conn, reason });
}

// ---- requests with exactly-once effects ----

function fingerprint(command: DedupCommand): string {
  switch (command.type) {
    case 'preempt':
    case 'acquire':
      return `${command.type}\u0000${command.lock}`;
    case 'release':
      return `release\u0000${command.lock}\u0000${command.token ?? ''}`;
    case 'append':
      return `append\u0000${command.lock}\u0000${command.token}\u0000${command.file}\u0000${command.data.length}`;
    case 'bye':
      return 'bye';
    default:
      return unreachable(command);
  }
}

function applyDedup(state: LockState, command: DedupCommand, effects: Effect[]): Answer | null {
  const session = state.sessions.get(command.client);
  if (command.type === 'bye') {
    if (session === undefined) return okAnswer({});
    if (session.conn !== command.conn) return mismatch(command.client);
    endSession(state, session, 'bye', effects);
    return okAnswer({});
  }
  if (session === undefined) {
    // The session expired between the node accepting the request and this entry applying it.
    // A release or an append: the client holds nothing any more (PROTOCOL §4: no hold is
    // not_owner). A take: not applied, so not remembered; sent again it opens a new session.
    if (command.type === 'release' || command.type === 'append') {
      return errorAnswer('not_owner', `the session of ${command.client} ended; it holds no lock`);
    }
    // Its implicit hello found no room for one more session.
    if (state.sessions.size >= state.limits.sessions) return sessionsFull(state);
    return errorAnswer('unavailable', `session of ${command.client} ended; send the request again to open a new one`);
  }
  if (session.conn !== command.conn) return mismatch(command.client);
  session.lastContactAt = state.now;
  const req = command.req;
  if (req !== undefined) {
    const cached = session.results.get(req);
    if (cached !== undefined) {
      if (cached.fingerprint !== fingerprint(command)) {
        return errorAnswer('bad_request', `request_id ${req} was already used for a different request`);
      }
      if (cached.answer !== null) return cached.answer;
      // A retried acquire that is still queued: wait on the same queue position.
      assert(command.type === 'acquire', 'only an acquire can be pending');
      const waiter = state.locks.get(command.lock)?.waiters?.get(command.client);
      if (waiter !== undefined && !waiter.reqs.includes(req)) waiter.reqs.push(req);
      return null;
    }
  }
  const answer = applyRequest(state, session, command, effects);
  // A request refused by a bound changed nothing: like one refused before it was applied, it
  // may be re-sent with the same request_id once there is room (PROTOCOL §4 Retries).
  const refusedByBound = answer !== null && !answer.ok && answer.error.code === 'limit_exceeded';
  if (req !== undefined && !refusedByBound) remember(session, req, fingerprint(command), answer);
  return answer;
}

function remember(session: Session, req: string, print: string, answer: Answer | null): void {
  session.results.set(req, { fingerprint: print, answer });
  if (session.results.size > requestResultsPerSessionMax) {
    const oldest = session.results.keys().next().value as string;
    session.results.delete(oldest);
  }
}

function mismatch(client: string): Answer {
  return errorAnswer('client_mismatch', `the session of ${client} belongs to another connection`);
}

function applyRequest(state: LockState, session: Session, command: Exclude<DedupCommand, ByeCommand>, effects: Effect[]): Answer | null {
  switch (command.type) {
    case 'preempt': return applyPreempt(state, session, command);
    case 'acquire': return applyAcquire(state, session, command);
    case 'release': return applyRelease(state, session, command, effects);
    case 'append': return applyAppend(state, command);
    default: return unreachable(command);
  }
}

function grantAnswer(lock: LockEntry): Answer {
  return okAnswer({ lock_name: lock.name, owner: lock.owner, token: lock.token });
}

function applyPreempt(state: LockState, session: Session, command: PreemptCommand): Answer {
  const lock = state.locks.get(command.lock);
  if (lock !== undefined && lock.owner !== null) {
    if (lock.owner === session.client) return grantAnswer(lock);
    return errorAnswer('lock_held', `${command.lock} is held by ${lock.owner}`, lock.owner);
  }
  return takeRefusedByBound(state, session, command, lock) ?? grantAnswer(grant(state, command.lock, session, command.leaseMs));
}

/**
 * The limit_exceeded a take gets from apply in this state, or null when it is answered
 * otherwise (granted, held by another, already queued, timeout 0, or queued within the bounds).
 */
function takeRefusedByBound(
  state: LockState, session: Session, command: PreemptCommand | AcquireCommand, lock: LockEntry | undefined,
): Answer | null {
  if (lock === undefined || lock.owner === null) return newLockRefused(state, session, lock !== undefined);
  if (command.type === 'preempt' || lock.owner === session.client) return null;
  if (lock.waiters?.get(session.client) !== undefined || command.timeoutMs === 0) return null;
  if ((lock.waiters?.length ?? 0) >= state.limits.waitersPerLock) {
    return errorAnswer('limit_exceeded', `${command.lock} has ${lock.waiters?.length ?? 0} waiters, the limit per lock`);
  }
  return newLockRefused(state, session, true);
}

/**
 * The limit_exceeded apply would answer to this take in the current state, for the node that
 * accepts it to answer at once instead of spending a log entry on a refusal (a flood of takes
 * past a bound would otherwise be replicated and fsynced like grants). Null when apply might
 * answer anything else. The bound may free up before the take would have applied; refusing a
 * moment early is what the client would have seen had it come a moment earlier.
 */
export function takeRefusedAhead(state: LockState, command: PreemptCommand | AcquireCommand): Answer | null {
  const session = state.sessions.get(command.client);
  if (session === undefined || session.conn !== command.conn) return null;
  if (command.req !== undefined && session.results.has(command.req)) return null;
  return takeRefusedByBound(state, session, command, state.locks.get(command.lock));
}

/** A session taking or queueing for one more lock, past a bound; null when there is room. */
function newLockRefused(state: LockState, session: Session, lockInUse: boolean): Answer | null {
  const limits = state.limits;
  const mine = session.locks.size + session.waits.size;
  if (mine >= limits.locksPerSession) {
    return errorAnswer('limit_exceeded', `${session.client} holds or waits for ${mine} locks, the limit per session`);
  }
  if (!lockInUse && state.locks.size >= limits.locks) {
    return errorAnswer('limit_exceeded', `the cluster has ${state.locks.size} locks in use, its limit`);
  }
  return null;
}

function applyAcquire(state: LockState, session: Session, command: AcquireCommand): Answer | null {
  const lock = state.locks.get(command.lock);
  if (lock === undefined || lock.owner === null) {
    return takeRefusedByBound(state, session, command, lock) ?? grantAnswer(grant(state, command.lock, session, command.leaseMs));
  }
  if (lock.owner === session.client) return grantAnswer(lock);
  const queued = lock.waiters?.get(session.client);
  if (queued !== undefined) {
    // Already waiting: this acquire shares the queue position (it is not a second hold).
    if (command.req !== undefined && !queued.reqs.includes(command.req)) queued.reqs.push(command.req);
    return null;
  }
  if (command.timeoutMs === 0) return errorAnswer('timeout', `${command.lock} is held by ${lock.owner}`);
  const refused = takeRefusedByBound(state, session, command, lock);
  if (refused !== null) return refused;
  const waiter: Waiter = {
    client: session.client,
    seq: ++state.seq,
    enqueuedAt: state.now,
    deadline: command.timeoutMs === undefined ? null : state.now + command.timeoutMs,
    leaseMs: command.leaseMs,
    reqs: command.req === undefined ? [] : [command.req],
  };
  pushWaiter(lock, waiter);
  session.waits.add(lock.name);
  if (waiter.deadline !== null) {
    pushDeadline(state, { at: waiter.deadline, kind: 'waiter', key: session.client, lock: lock.name, serial: waiter.seq });
  }
  return null;
}

function applyRelease(state: LockState, session: Session, command: ReleaseCommand, effects: Effect[]): Answer {
  const lock = state.locks.get(command.lock);
  if (lock === undefined || lock.owner === null) {
    return errorAnswer('not_owner', `${command.lock} is not held`);
  }
  if (command.token !== undefined && command.token < lock.token) {
    return errorAnswer('stale_token', `token ${command.token} is of an earlier grant of ${command.lock} (now ${lock.token})`);
  }
  if (lock.owner !== session.client) return errorAnswer('not_owner', `${command.lock} is held by another client`);
  if (command.token !== undefined && command.token !== lock.token) {
    return errorAnswer('not_owner', `token ${command.token} was never granted for ${command.lock}`);
  }
  releaseLock(state, lock, effects);
  return okAnswer({ lock_name: command.lock });
}

function applyAppend(state: LockState, command: AppendCommand): Answer {
  const lock = state.locks.get(command.lock);
  if (lock !== undefined && command.token < lock.token) {
    return errorAnswer('stale_token', `token ${command.token} is of an earlier grant of ${command.lock} (now ${lock.token})`);
  }
  if (lock === undefined || lock.owner !== command.client) {
    return errorAnswer('not_owner', `${command.client} does not hold ${command.lock}`);
  }
  if (command.token !== lock.token) {
    return errorAnswer('not_owner', `token ${command.token} was never granted for ${command.lock}`);
  }
  // Each append stands alone: a lone surrogate (JSON allows "\ud83d") becomes U+FFFD, as it does
  // when written to disk, so two halves of a pair sent in two appends never fuse into one
  // character and `size` always equals the bytes a read returns.
  const data = (command.data as string & { toWellFormed(): string }).toWellFormed();
  const bytes = utf8ByteLength(data);
  const limits = state.limits;
  let file = state.files.get(command.file);
  if (file === undefined && state.files.size >= limits.files) {
    return errorAnswer('limit_exceeded', `the cluster has ${state.files.size} files, its limit`);
  }
  if ((file?.sizeBytes ?? 0) + bytes > limits.fileBytes) {
    return errorAnswer('limit_exceeded', `${command.file} would grow past ${limits.fileBytes} bytes, the limit per file`);
  }
  if (state.fileBytes + bytes > limits.totalFileBytes) {
    return errorAnswer('limit_exceeded', `the files would grow past ${limits.totalFileBytes} bytes, the limit for all files`);
  }
  if (file === undefined) {
    file = { chunks: [], sizeBytes: 0 };
    state.files.set(command.file, file);
  }
  file.chunks.push(data);
  file.sizeBytes += bytes;
  state.fileBytes += bytes;
  return okAnswer({ file: command.file, size: file.sizeBytes });
}

// ---- grants and hand-offs ----

function grant(state: LockState, name: string, session: Session, leaseMs: number | undefined): LockEntry {
  let lock = state.locks.get(name);
  if (lock === undefined) {
    lock = { name, owner: null, token: 0, grantedAt: 0, leaseUntil: null, waiters: null };
    state.locks.set(name, lock);
  }
  assert(lock.owner === null, `grant of ${name} while held`);
  lock.owner = session.client;
  lock.token = ++state.lastToken;
  lock.grantedAt = state.now;
  lock.leaseUntil = leaseMs === undefined ? null : state.now + leaseMs;
  session.locks.add(name);
  if (lock.leaseUntil !== null) {
    pushDeadline(state, { at: lock.leaseUntil, kind: 'lease', key: name, lock: name, serial: lock.token });
  }
  return lock;
}

/** Frees the lock and hands it to the first waiter whose session is still alive. */
function releaseLock(state: LockState, lock: LockEntry, effects: Effect[]): void {
  assert(lock.owner !== null, `release of free lock ${lock.name}`);
  state.sessions.get(lock.owner)?.locks.delete(lock.name);
  lock.owner = null;
  lock.leaseUntil = null;
  const next = shiftWaiter(lock);
  if (next === undefined) {
    // Forgotten when free with no waiters (PROTOCOL: locks are created on first use).
    state.locks.delete(lock.name);
    return;
  }
  const session = state.sessions.get(next.client);
  assert(session !== undefined, 'a waiter always has a live session');
  session.waits.delete(lock.name);
  grant(state, lock.name, session, next.leaseMs);
  const answer = grantAnswer(lock);
  for (const req of next.reqs) {
    const cached = session.results.get(req);
    if (cached !== undefined) cached.answer = answer;
  }
  effects.push({ kind: 'granted', client: next.client, lock: lock.name, token: lock.token, reqs: next.reqs });
}

// ---- deadlines ----

function pushDeadline(state: LockState, deadline: Omit<Deadline, 'seq'>): void {
  state.deadlines.push({ ...deadline, seq: ++state.seq });
}

function fireDueDeadlines(state: LockState, effects: Effect[]): void {
  const heap = state.deadlines;
  for (let top = heap.peek(); top !== undefined && top.at <= state.now; top = heap.peek()) {
    heap.pop();
    fireDeadline(state, top, effects);
  }
}

function fireDeadline(state: LockState, deadline: Deadline, effects: Effect[]): void {
  switch (deadline.kind) {
    case 'session': {
      const session = state.sessions.get(deadline.key);
      if (session === undefined || session.serial !== deadline.serial || session.queuedAt !== deadline.at) return;
      session.queuedAt = null;
      if (sessionDeadline(session) > state.now) {
        // Touched since this entry was pushed: look again at the new deadline.
        scheduleSession(state, session);
        return;
      }
      endSession(state, session, 'expired', effects);
      return;
    }
    case 'lease': {
      const lock = state.locks.get(deadline.key);
      if (lock === undefined || lock.owner === null || lock.token !== deadline.serial) return;
      effects.push({
        kind: 'lost', client: lock.owner, conn: state.sessions.get(lock.owner)?.conn ?? null,
        lock: lock.name, token: lock.token, reason: 'lease_expired',
      });
      releaseLock(state, lock, effects);
      return;
    }
    case 'waiter': {
      const lock = state.locks.get(deadline.lock);
      const waiter = lock?.waiters?.get(deadline.key);
      if (lock === undefined || waiter === undefined || waiter.seq !== deadline.serial) return;
      removeWaiter(lock, deadline.key);
      state.sessions.get(deadline.key)?.waits.delete(lock.name);
      const answer = errorAnswer('timeout', `${lock.name} was not granted within the timeout`);
      const session = state.sessions.get(deadline.key);
      for (const req of waiter.reqs) {
        const cached = session?.results.get(req);
        if (cached !== undefined) cached.answer = answer;
      }
      effects.push({ kind: 'wait_ended', client: deadline.key, lock: lock.name, answer, reqs: waiter.reqs });
      return;
    }
    default:
      unreachable(deadline.kind);
  }
}
