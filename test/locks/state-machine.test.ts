// Unit tests of the replicated lock table: every rule of apply() (PROTOCOL §3-§4, DESIGN §1-§4),
// each as a short story with an exact expected outcome, and a seeded determinism run. Every
// apply goes through Log.run, which checks the state invariants right after it.
import { expect } from 'chai';
import { AssertionError } from '../../lib/core/assert';
import { defaultStateLimits, requestResultsPerSessionMax, type StateLimits } from '../../lib/core/limits';
import { Prng } from '../../lib/core/prng';
import type { Command, ConnId, HelloCommand } from '../../lib/locks/commands';
import { checkInvariants } from '../../lib/locks/invariants';
import { apply, takeRefusedAhead, type ApplyResult, type Effect } from '../../lib/locks/state-machine';
import { checkLock, createLockState, nextDeadlineAt, readFile, type LockState } from '../../lib/locks/state';
import type { Answer, ErrorAnswer, OkAnswer } from '../../lib/protocol/answers';
import { defined, CommandGenerator, dump } from '../helpers/random-commands';

// ---- harness ----

const ttlDefaultMs = 10_000;

function connOf(client: string): string {
  return `n1/1/${client}`;
}

function secretOf(client: string): string {
  return `secret-${client}`;
}

interface HelloOptions { conn?: ConnId; ttlMs?: number; graceMs?: number; resume?: string; fresh?: string; implicit?: boolean }
interface RequestOptions { conn?: ConnId; req?: string }

/** A log of commands applied one after another with increasing indexes, at cluster time `at`. */
class Log {
  readonly state: LockState = createLockState();
  index = 0;
  /** Cluster time stamped on the next command. */
  at = 0;

  run(command: Command): ApplyResult {
    this.index++;
    const result = apply(this.state, this.index, command);
    checkInvariants(this.state);
    return result;
  }

  /** Moves cluster time to `at` and commits a tick there. */
  tickAt(at: number): ApplyResult {
    this.at = at;
    return this.run({ type: 'tick', at });
  }

  hello(client: string, options: HelloOptions = {}): ApplyResult {
    const command: HelloCommand = {
      type: 'hello', at: this.at, client,
      conn: options.conn === undefined ? connOf(client) : options.conn,
      ttlMs: options.ttlMs ?? ttlDefaultMs,
      graceMs: options.graceMs ?? 0,
      implicit: options.implicit ?? false,
      fresh: options.fresh ?? secretOf(client),
    };
    if (options.resume !== undefined) command.resume = options.resume;
    return this.run(command);
  }

  preempt(client: string, lock: string, options: RequestOptions & { leaseMs?: number } = {}): ApplyResult {
    return this.run({ type: 'preempt', at: this.at, client, lock, ...fromClient(client, options), ...defined({ leaseMs: options.leaseMs }) });
  }

  acquire(client: string, lock: string, options: RequestOptions & { timeoutMs?: number; leaseMs?: number } = {}): ApplyResult {
    return this.run({
      type: 'acquire', at: this.at, client, lock, ...fromClient(client, options),
      ...defined({ timeoutMs: options.timeoutMs, leaseMs: options.leaseMs }),
    });
  }

  release(client: string, lock: string, options: RequestOptions & { token?: number } = {}): ApplyResult {
    return this.run({ type: 'release', at: this.at, client, lock, ...fromClient(client, options), ...defined({ token: options.token }) });
  }

  append(client: string, lock: string, token: number, file: string, data: string, options: RequestOptions = {}): ApplyResult {
    return this.run({ type: 'append', at: this.at, client, lock, token, file, data, ...fromClient(client, options) });
  }

  bye(client: string, options: RequestOptions = {}): ApplyResult {
    return this.run({ type: 'bye', at: this.at, client, ...fromClient(client, options) });
  }

  touch(...clients: string[]): ApplyResult {
    return this.run({ type: 'touch', at: this.at, touches: clients.map((client) => ({ client, conn: connOf(client) })) });
  }

  disconnected(client: string, conn: string = connOf(client)): ApplyResult {
    return this.run({ type: 'disconnected', at: this.at, client, conn });
  }

  check(lock: string): Answer {
    return checkLock(this.state, lock);
  }
}

function fromClient(client: string, options: RequestOptions): { conn: ConnId; req?: string } {
  const conn = options.conn === undefined ? connOf(client) : options.conn;
  return options.req === undefined ? { conn } : { conn, req: options.req };
}

/** Drops undefined fields, so that commands look like the ones a node builds from JSON. */
function okOf(answer: Answer | null): OkAnswer {
  expect(answer, 'expected an answer').to.not.equal(null);
  if (answer === null || !answer.ok) expect.fail(`expected success, got ${JSON.stringify(answer)}`);
  return answer as OkAnswer;
}

function tokenOf(answer: Answer | null): number {
  const token = okOf(answer)['token'];
  expect(token).to.be.a('number');
  return token as number;
}

function errorOf(answer: Answer | null): ErrorAnswer['error'] {
  expect(answer, 'expected an answer').to.not.equal(null);
  if (answer === null || answer.ok) expect.fail(`expected an error, got ${JSON.stringify(answer)}`);
  return (answer as ErrorAnswer).error;
}

function codeOf(answer: Answer | null): string {
  return errorOf(answer).code;
}

function granted(lock: string, owner: string, token: number): OkAnswer {
  return { ok: true, lock_name: lock, owner, token };
}

function held(log: Log, lock: string): { owner: unknown; token: unknown; waiters: unknown } {
  const answer = okOf(log.check(lock));
  return { owner: answer['owner'], token: answer['token'], waiters: answer['waiters'] };
}

/** Opens sessions for the given clients on their default connections. */
function withSessions(...clients: string[]): Log {
  const log = new Log();
  for (const client of clients) okOf(log.hello(client).answer);
  return log;
}

// ---- the invariant checker itself ----

describe('locks/invariants', () => {
  it('accepts a fresh state and a busy one', () => {
    checkInvariants(createLockState());
    const log = withSessions('a', 'b');
    log.preempt('a', 'L', { leaseMs: 500 });
    log.acquire('b', 'L', { timeoutMs: 100 });
    log.append('a', 'L', 1, 'f', 'héllo');
    checkInvariants(log.state);
  });

  it('catches a lock whose owner has no session', () => {
    const log = withSessions('a');
    log.preempt('a', 'L');
    log.state.sessions.delete('a');
    expect(() => checkInvariants(log.state)).to.throw(AssertionError, /no session/);
  });

  it('catches a session that lists a lock it does not own', () => {
    const log = withSessions('a');
    log.state.sessions.get('a')?.locks.add('L');
    expect(() => checkInvariants(log.state)).to.throw(AssertionError, /does not own/);
  });

  it('catches a free lock that was not forgotten', () => {
    const log = withSessions('a');
    log.preempt('a', 'L');
    const lock = log.state.locks.get('L');
    if (lock === undefined) expect.fail('L is held');
    lock.owner = null;
    log.state.sessions.get('a')?.locks.delete('L');
    expect(() => checkInvariants(log.state)).to.throw(AssertionError, /free but still stored/);
  });

  it('catches a waiter missing from its session, and an owner that waits', () => {
    const log = withSessions('a', 'b');
    log.preempt('a', 'L');
    log.acquire('b', 'L');
    log.state.sessions.get('b')?.waits.delete('L');
    expect(() => checkInvariants(log.state)).to.throw(AssertionError, /does not list the wait/);
    log.state.sessions.get('b')?.waits.add('L');
    checkInvariants(log.state);
    log.state.sessions.get('b')?.waits.add('M');
    expect(() => checkInvariants(log.state)).to.throw(AssertionError, /no such waiter/);
  });

  it('catches a token above lastToken, and a lease that ends before its grant', () => {
    const log = withSessions('a');
    log.preempt('a', 'L', { leaseMs: 100 });
    log.state.lastToken = 0;
    expect(() => checkInvariants(log.state)).to.throw(AssertionError, /above lastToken/);
    log.state.lastToken = 1;
    const lock = log.state.locks.get('L');
    if (lock === undefined) expect.fail('L is held');
    lock.grantedAt = 1000;
    expect(() => checkInvariants(log.state)).to.throw(AssertionError, /before grantedAt/);
  });

  it('catches a session with no live deadline, and too many remembered results', () => {
    const log = withSessions('a');
    const session = log.state.sessions.get('a');
    if (session === undefined) expect.fail('a has a session');
    session.queuedAt = null;
    expect(() => checkInvariants(log.state)).to.throw(AssertionError, /no live deadline/);
    session.queuedAt = 12345;
    expect(() => checkInvariants(log.state)).to.throw(AssertionError, /no such heap entry/);
    session.queuedAt = ttlDefaultMs;
    checkInvariants(log.state);
    for (let i = 0; i <= requestResultsPerSessionMax; i++) session.results.set(`r${i}`, { fingerprint: 'bye', answer: null });
    expect(() => checkInvariants(log.state)).to.throw(AssertionError, /remembers 1025 results/);
  });

  it('catches a file whose size is not the UTF-8 length of its data', () => {
    const log = withSessions('a');
    log.preempt('a', 'L');
    log.append('a', 'L', 1, 'f', 'é');
    const file = log.state.files.get('f');
    if (file === undefined) expect.fail('f exists');
    expect(file.sizeBytes).to.equal(2);
    file.sizeBytes = 1; // what a count of UTF-16 code units would say
    expect(() => checkInvariants(log.state)).to.throw(AssertionError, /sizeBytes 1 but holds 2 bytes/);
  });
});

// ---- apply ----

describe('locks/state-machine', () => {
  describe('apply', () => {
    it('refuses an index out of order', () => {
      const log = new Log();
      expect(() => apply(log.state, 2, { type: 'tick', at: 0 })).to.throw(AssertionError, /out of order/);
      log.tickAt(1);
      expect(() => apply(log.state, 1, { type: 'tick', at: 1 })).to.throw(AssertionError, /out of order/);
      expect(log.state.appliedIndex).to.equal(1);
    });
  });

  describe('preempt', () => {
    it('takes a free lock with the first token', () => {
      const log = withSessions('a');
      const result = log.preempt('a', 'L');
      expect(result.answer).to.deep.equal(granted('L', 'a', 1));
      expect(result.effects).to.deep.equal([]);
      expect(held(log, 'L')).to.deep.equal({ owner: 'a', token: 1, waiters: 0 });
    });

    it('answers lock_held with the owner when held, and never queues', () => {
      const log = withSessions('a', 'b');
      log.preempt('a', 'L');
      const result = log.preempt('b', 'L');
      expect(errorOf(result.answer)).to.include({ code: 'lock_held', owner: 'a' });
      expect(result.effects).to.deep.equal([]);
      expect(held(log, 'L')).to.deep.equal({ owner: 'a', token: 1, waiters: 0 });
      expect([...(log.state.sessions.get('b')?.waits ?? [])]).to.deep.equal([]);
    });

    it('re-taken by its owner answers the same token, and is not a second hold', () => {
      const log = withSessions('a');
      log.preempt('a', 'L');
      expect(log.preempt('a', 'L').answer).to.deep.equal(granted('L', 'a', 1));
      expect(log.acquire('a', 'L').answer).to.deep.equal(granted('L', 'a', 1));
      expect(log.state.lastToken).to.equal(1);
      okOf(log.release('a', 'L').answer);
      expect(log.state.locks.has('L')).to.equal(false);
    });
  });

  describe('acquire', () => {
    it('grants a free lock at once', () => {
      const log = withSessions('a');
      const result = log.acquire('a', 'L', { timeoutMs: 1000 });
      expect(result.answer).to.deep.equal(granted('L', 'a', 1));
      expect(result.effects).to.deep.equal([]);
      expect(log.state.locks.get('L')?.waiters ?? null).to.equal(null);
    });

    it('serves three waiters in FIFO order across releases', () => {
      const log = withSessions('a', 'b', 'c', 'd');
      log.preempt('a', 'L');
      expect(log.acquire('c', 'L', { req: 'rc' }).answer).to.equal(null);
      expect(log.acquire('b', 'L', { req: 'rb' }).answer).to.equal(null);
      expect(log.acquire('d', 'L', { req: 'rd' }).answer).to.equal(null);
      expect(held(log, 'L')).to.deep.equal({ owner: 'a', token: 1, waiters: 3 });

      let result = log.release('a', 'L');
      expect(result.answer).to.deep.equal({ ok: true, lock_name: 'L' });
      expect(result.effects).to.deep.equal([{ kind: 'granted', client: 'c', lock: 'L', token: 2, reqs: ['rc'] }]);
      result = log.release('c', 'L');
      expect(result.effects).to.deep.equal([{ kind: 'granted', client: 'b', lock: 'L', token: 3, reqs: ['rb'] }]);
      expect(held(log, 'L')).to.deep.equal({ owner: 'b', token: 3, waiters: 1 });
      result = log.release('b', 'L');
      expect(result.effects).to.deep.equal([{ kind: 'granted', client: 'd', lock: 'L', token: 4, reqs: ['rd'] }]);
      result = log.release('d', 'L');
      expect(result.effects).to.deep.equal([]);
      expect(log.state.locks.has('L')).to.equal(false);
    });

    it('times a waiter out: timeout answer, gone from the queue', () => {
      const log = withSessions('a', 'b', 'c');
      log.preempt('a', 'L');
      log.acquire('b', 'L', { timeoutMs: 500, req: 'rb' });
      log.acquire('c', 'L', { req: 'rc' });
      expect(held(log, 'L').waiters).to.equal(2);

      expect(log.tickAt(499).effects).to.deep.equal([]);
      expect(held(log, 'L').waiters).to.equal(2);
      const effects = log.tickAt(500).effects;
      expect(effects).to.have.length(1);
      const ended = effects[0] as Extract<Effect, { kind: 'wait_ended' }>;
      expect(ended).to.include({ kind: 'wait_ended', client: 'b', lock: 'L' });
      expect(ended.reqs).to.deep.equal(['rb']);
      expect(codeOf(ended.answer)).to.equal('timeout');
      expect(held(log, 'L')).to.deep.equal({ owner: 'a', token: 1, waiters: 1 });
      expect([...(log.state.sessions.get('b')?.waits ?? [])]).to.deep.equal([]);
      // The retried request gets the same timeout, and a release skips b.
      expect(codeOf(log.acquire('b', 'L', { timeoutMs: 500, req: 'rb' }).answer)).to.equal('timeout');
      expect(held(log, 'L').waiters).to.equal(1);
      expect(log.release('a', 'L').effects).to.deep.equal([{ kind: 'granted', client: 'c', lock: 'L', token: 2, reqs: ['rc'] }]);
    });

    it('a timeout of an earlier wait never ends a later wait of the same client', () => {
      const log = withSessions('a', 'b');
      log.preempt('a', 'L');
      log.acquire('b', 'L', { timeoutMs: 500, req: 'b1' });
      log.at = 100;
      expect(log.release('a', 'L').effects).to.deep.equal([{ kind: 'granted', client: 'b', lock: 'L', token: 2, reqs: ['b1'] }]);
      log.acquire('a', 'L');
      log.release('b', 'L');
      expect(log.acquire('b', 'L', { req: 'b2' }).answer).to.equal(null);
      expect(log.tickAt(500).effects).to.deep.equal([]);
      expect(held(log, 'L')).to.deep.equal({ owner: 'a', token: 3, waiters: 1 });
      expect(log.acquire('b', 'L', { req: 'b1' }).answer).to.deep.equal(granted('L', 'b', 2));
    });

    it('with timeout_ms 0 answers timeout at once on a held lock, and grants a free one', () => {
      const log = withSessions('a', 'b');
      log.preempt('a', 'L');
      const result = log.acquire('b', 'L', { timeoutMs: 0 });
      expect(codeOf(result.answer)).to.equal('timeout');
      expect(result.effects).to.deep.equal([]);
      expect(held(log, 'L').waiters).to.equal(0);
      expect(log.acquire('b', 'M', { timeoutMs: 0 }).answer).to.deep.equal(granted('M', 'b', 2));
    });

    it('without timeout_ms waits forever', () => {
      const log = withSessions('a', 'b');
      log.preempt('a', 'L');
      log.acquire('b', 'L');
      log.touch('a', 'b');
      log.at = 9000;
      log.touch('a', 'b');
      expect(log.tickAt(17_000).effects).to.deep.equal([]);
      expect(held(log, 'L')).to.deep.equal({ owner: 'a', token: 1, waiters: 1 });
    });
  });

  describe('release', () => {
    it('by a non-owner is not_owner and changes nothing', () => {
      const log = withSessions('a', 'b');
      log.preempt('a', 'L');
      const result = log.release('b', 'L');
      expect(codeOf(result.answer)).to.equal('not_owner');
      expect(result.effects).to.deep.equal([]);
      expect(held(log, 'L')).to.deep.equal({ owner: 'a', token: 1, waiters: 0 });
      expect(codeOf(log.release('b', 'M').answer)).to.equal('not_owner');
    });

    it('with the token of an earlier grant is stale_token', () => {
      const log = withSessions('a');
      const first = tokenOf(log.preempt('a', 'L').answer);
      okOf(log.release('a', 'L', { token: first }).answer);
      const second = tokenOf(log.preempt('a', 'L').answer);
      expect(second).to.equal(first + 1);
      expect(codeOf(log.release('a', 'L', { token: first }).answer)).to.equal('stale_token');
      expect(held(log, 'L')).to.deep.equal({ owner: 'a', token: second, waiters: 0 });
      expect(codeOf(log.release('a', 'L', { token: second + 5 }).answer)).to.equal('not_owner');
      expect(log.release('a', 'L', { token: second }).answer).to.deep.equal({ ok: true, lock_name: 'L' });
      expect(log.state.locks.has('L')).to.equal(false);
    });

    it('hands the lock to the next waiter with a larger token in the same apply', () => {
      const log = withSessions('a', 'b');
      log.preempt('a', 'L');
      log.preempt('a', 'other');
      log.acquire('b', 'L', { req: 'rb' });
      const index = log.index;
      const result = log.release('a', 'L', { token: 1 });
      expect(log.index).to.equal(index + 1);
      expect(result.answer).to.deep.equal({ ok: true, lock_name: 'L' });
      expect(result.effects).to.deep.equal([{ kind: 'granted', client: 'b', lock: 'L', token: 3, reqs: ['rb'] }]);
      expect(held(log, 'L')).to.deep.equal({ owner: 'b', token: 3, waiters: 0 });
      expect([...(log.state.sessions.get('b')?.locks ?? [])]).to.deep.equal(['L']);
      expect([...(log.state.sessions.get('a')?.locks ?? [])]).to.deep.equal(['other']);
      // The waiting request's remembered answer is now the grant.
      expect(log.acquire('b', 'L', { req: 'rb' }).answer).to.deep.equal(granted('L', 'b', 3));
    });
  });

  describe('fencing tokens', () => {
    it('strictly increase per lock (and overall) over many grants', () => {
      const log = withSessions('a', 'b', 'c');
      const clients = ['a', 'b', 'c'];
      const lastByLock = new Map<string, number>();
      let last = 0;
      const see = (lock: string, token: number): void => {
        expect(token).to.be.greaterThan(lastByLock.get(lock) ?? 0);
        expect(token).to.be.greaterThan(last);
        lastByLock.set(lock, token);
        last = token;
      };
      for (let round = 0; round < 60; round++) {
        const lock = `L${round % 3}`;
        const client = clients[round % clients.length] as string;
        const other = clients[(round + 1) % clients.length] as string;
        const token = tokenOf(log.preempt(client, lock).answer);
        see(lock, token);
        log.acquire(other, lock);
        const effects = log.release(client, lock).effects;
        expect(effects).to.have.length(1);
        const grant = effects[0] as Extract<Effect, { kind: 'granted' }>;
        expect(grant.kind).to.equal('granted');
        see(lock, grant.token);
        okOf(log.release(other, lock, { token: grant.token }).answer);
      }
      expect(last).to.equal(120);
      expect(log.state.locks.size).to.equal(0);
    });
  });

  describe('sessions', () => {
    it('expire after ttl: locks lost (session_expired) and handed to waiters', () => {
      const log = new Log();
      log.hello('a', { ttlMs: 1000 });
      log.hello('b', { ttlMs: 60_000 });
      log.preempt('a', 'L1');
      log.preempt('a', 'L2');
      log.acquire('b', 'L1', { req: 'rb' });
      expect(log.tickAt(999).effects).to.deep.equal([]);
      const result = log.tickAt(1000);
      expect(result.effects).to.deep.equal([
        { kind: 'lost', client: 'a', conn: connOf('a'), lock: 'L1', token: 1, reason: 'session_expired' },
        { kind: 'granted', client: 'b', lock: 'L1', token: 3, reqs: ['rb'] },
        { kind: 'lost', client: 'a', conn: connOf('a'), lock: 'L2', token: 2, reason: 'session_expired' },
        { kind: 'session_ended', client: 'a', conn: connOf('a'), reason: 'expired' },
      ]);
      expect(log.state.sessions.has('a')).to.equal(false);
      expect(held(log, 'L1')).to.deep.equal({ owner: 'b', token: 3, waiters: 0 });
      expect(log.state.locks.has('L2')).to.equal(false);
      expect(codeOf(log.preempt('a', 'L2').answer)).to.equal('unavailable');
    });

    it('are kept alive by touch (keepalive) and by their own requests', () => {
      const log = new Log();
      log.hello('a', { ttlMs: 1000 });
      log.preempt('a', 'L');
      log.at = 900;
      log.touch('a');
      expect(log.tickAt(1000).effects).to.deep.equal([]);
      expect(log.tickAt(1899).effects).to.deep.equal([]);
      log.at = 1899;
      log.acquire('a', 'M');
      expect(log.tickAt(2898).effects).to.deep.equal([]);
      expect(log.state.sessions.has('a')).to.equal(true);
      const effects = log.tickAt(2899).effects;
      expect(effects.map((effect) => effect.kind)).to.deep.equal(['lost', 'lost', 'session_ended']);
      expect(log.state.sessions.has('a')).to.equal(false);
    });

    it('are kept alive only by a touch from their own connection (ownership)', () => {
      const log = new Log();
      log.hello('a', { ttlMs: 1000 });
      log.preempt('a', 'L');
      log.at = 900;
      log.run({ type: 'touch', at: 900, touches: [{ client: 'a', conn: 'n2/7/stranger' }, { client: 'a', conn: null }] });
      const effects = log.tickAt(1000).effects;
      expect(effects.map((effect) => effect.kind)).to.deep.equal(['lost', 'session_ended']);
    });

    it('touch ignores clients with no session', () => {
      const log = withSessions('a');
      expect(log.touch('ghost', 'a')).to.deep.equal({ answer: null, effects: [] });
      expect(log.state.sessions.has('ghost')).to.equal(false);
    });

    it('end when the connection closes and there is no grace, without lost events', () => {
      const log = withSessions('a', 'b');
      log.preempt('a', 'L');
      log.acquire('b', 'L', { req: 'rb' });
      const result = log.disconnected('a');
      expect(result.answer).to.equal(null);
      expect(result.effects).to.deep.equal([
        { kind: 'granted', client: 'b', lock: 'L', token: 2, reqs: ['rb'] },
        { kind: 'session_ended', client: 'a', conn: connOf('a'), reason: 'disconnected' },
      ]);
      expect(log.state.sessions.has('a')).to.equal(false);
    });

    it('outlive the connection by grace_ms, then expire', () => {
      const log = new Log();
      log.hello('a', { graceMs: 500 });
      log.hello('b');
      log.preempt('a', 'L');
      log.at = 100;
      expect(log.disconnected('a').effects).to.deep.equal([]);
      expect(log.state.sessions.get('a')?.connected).to.equal(false);
      expect(log.tickAt(599).effects).to.deep.equal([]);
      expect(held(log, 'L').owner).to.equal('a');
      expect(log.tickAt(600).effects).to.deep.equal([
        { kind: 'lost', client: 'a', conn: connOf('a'), lock: 'L', token: 1, reason: 'session_expired' },
        { kind: 'session_ended', client: 'a', conn: connOf('a'), reason: 'expired' },
      ]);
      expect(log.state.locks.has('L')).to.equal(false);
    });

    it('are resumed on a new connection with the right resume token', () => {
      const log = new Log();
      const resume = okOf(log.hello('a', { graceMs: 500, ttlMs: 5000 }).answer)['resume_token'];
      expect(resume).to.equal(secretOf('a'));
      log.preempt('a', 'L');
      log.at = 100;
      log.disconnected('a');
      log.at = 300;
      const answer = log.hello('a', { conn: 'n2/1/a', resume: secretOf('a'), fresh: 'unused', graceMs: 500, ttlMs: 5000 }).answer;
      expect(answer).to.deep.equal({ ok: true, client_id: 'a', ttl_ms: 5000, resume_token: secretOf('a') });
      expect(log.state.sessions.get('a')).to.include({ conn: 'n2/1/a', connected: true, disconnectedAt: null });
      // Past the old grace deadline it is still alive: only ttl counts now.
      expect(log.tickAt(600).effects).to.deep.equal([]);
      expect(log.tickAt(5299).effects).to.deep.equal([]);
      expect(held(log, 'L')).to.deep.equal({ owner: 'a', token: 1, waiters: 0 });
      // The new connection may act; the old one (and its late close) may not.
      log.at = 5299;
      expect(codeOf(log.release('a', 'L').answer)).to.equal('client_mismatch');
      expect(log.disconnected('a').effects).to.deep.equal([]);
      expect(log.state.sessions.get('a')?.connected).to.equal(true);
      okOf(log.release('a', 'L', { conn: 'n2/1/a' }).answer);
    });

    it('are not resumed with a wrong or missing resume token (client_mismatch)', () => {
      const log = new Log();
      log.hello('a', { graceMs: 500 });
      log.preempt('a', 'L');
      log.at = 100;
      log.disconnected('a');
      log.at = 200;
      expect(codeOf(log.hello('a', { conn: 'n2/1/a', resume: 'guess', graceMs: 500 }).answer)).to.equal('client_mismatch');
      expect(codeOf(log.hello('a', { conn: 'n2/1/a', implicit: true }).answer)).to.equal('client_mismatch');
      expect(codeOf(log.preempt('a', 'M', { conn: 'n2/1/a' }).answer)).to.equal('client_mismatch');
      expect(log.state.sessions.get('a')).to.include({ conn: connOf('a'), connected: false, disconnectedAt: 100 });
      // The failed attempts were no contact: the session still ends at the end of its grace.
      expect(log.tickAt(600).effects.map((effect) => effect.kind)).to.deep.equal(['lost', 'session_ended']);
    });

    it('can be taken over from a live connection with the resume token', () => {
      const log = withSessions('a');
      log.preempt('a', 'L');
      okOf(log.hello('a', { conn: 'n3/1/a', resume: secretOf('a') }).answer);
      expect(log.disconnected('a', connOf('a')).effects).to.deep.equal([]);
      expect(log.state.sessions.get('a')).to.include({ conn: 'n3/1/a', connected: true });
      expect(held(log, 'L').owner).to.equal('a');
    });

    it('answer client_mismatch to a request from another connection, and do not remember it', () => {
      const log = withSessions('a');
      expect(codeOf(log.preempt('a', 'L', { conn: 'n9/1/x', req: 'r1' }).answer)).to.equal('client_mismatch');
      expect(log.state.locks.has('L')).to.equal(false);
      expect(log.preempt('a', 'L', { req: 'r1' }).answer).to.deep.equal(granted('L', 'a', 1));
      expect(codeOf(log.bye('a', { conn: 'n9/1/x' }).answer)).to.equal('client_mismatch');
      expect(log.state.sessions.has('a')).to.equal(true);
    });

    it('with no session: a take is unavailable, a release or append not_owner, and none is remembered', () => {
      const log = new Log();
      const results = [
        log.preempt('a', 'L', { req: 'r1' }),
        log.acquire('a', 'L', { req: 'r2' }),
        log.release('a', 'L', { req: 'r3' }),
        log.append('a', 'L', 1, 'f', 'x', { req: 'r4' }),
      ];
      expect(results.map((r) => codeOf(r.answer))).to.deep.equal(['unavailable', 'unavailable', 'not_owner', 'not_owner']);
      for (const result of results) expect(result.effects).to.deep.equal([]);
      expect(log.state.sessions.size).to.equal(0);
      log.hello('a', { implicit: true });
      expect(log.preempt('a', 'L', { req: 'r1' }).answer).to.deep.equal(granted('L', 'a', 1));
    });

    it('an implicit hello never overrides the settings of a session', () => {
      const log = new Log();
      log.hello('a', { ttlMs: 1000 });
      expect(okOf(log.hello('a', { ttlMs: 9000, implicit: true }).answer)['ttl_ms']).to.equal(1000);
      expect(okOf(log.hello('a', { ttlMs: 3000 }).answer)['ttl_ms']).to.equal(3000);
      expect(log.tickAt(2999).effects).to.deep.equal([]);
      expect(log.tickAt(3000).effects.map((effect) => effect.kind)).to.deep.equal(['session_ended']);
    });

    it('end with bye: every lock released, every pending wait answered', () => {
      const log = withSessions('a', 'b', 'c');
      log.preempt('a', 'L1');
      log.preempt('b', 'L2');
      log.acquire('a', 'L2', { req: 'ra' });
      log.acquire('c', 'L1', { req: 'rc' });
      const result = log.bye('a', { req: 'bye1' });
      expect(result.answer).to.deep.equal({ ok: true });
      expect(result.effects).to.have.length(3);
      const [ended, grant, gone] = result.effects as [Effect, Effect, Effect];
      expect(ended).to.include({ kind: 'wait_ended', client: 'a', lock: 'L2' });
      expect((ended as Extract<Effect, { kind: 'wait_ended' }>).reqs).to.deep.equal(['ra']);
      expect((ended as Extract<Effect, { kind: 'wait_ended' }>).answer.ok).to.equal(false);
      expect(grant).to.deep.equal({ kind: 'granted', client: 'c', lock: 'L1', token: 3, reqs: ['rc'] });
      expect(gone).to.deep.equal({ kind: 'session_ended', client: 'a', conn: connOf('a'), reason: 'bye' });
      expect(held(log, 'L2')).to.deep.equal({ owner: 'b', token: 2, waiters: 0 });
      expect(log.state.sessions.has('a')).to.equal(false);
      // bye is idempotent: a retry finds no session and has no effect.
      expect(log.bye('a', { req: 'bye1' })).to.deep.equal({ answer: { ok: true }, effects: [] });
    });
  });

  describe('leases', () => {
    it('release the lock lease_ms after the grant (lost, lease_expired) and hand it on', () => {
      const log = withSessions('a', 'b');
      log.at = 50;
      log.preempt('a', 'L', { leaseMs: 1000 });
      expect(log.state.locks.get('L')).to.include({ grantedAt: 50, leaseUntil: 1050 });
      log.acquire('b', 'L', { req: 'rb', leaseMs: 300 });
      log.at = 1000;
      log.touch('a', 'b');
      expect(log.tickAt(1049).effects).to.deep.equal([]);
      expect(log.tickAt(1050).effects).to.deep.equal([
        { kind: 'lost', client: 'a', conn: connOf('a'), lock: 'L', token: 1, reason: 'lease_expired' },
        { kind: 'granted', client: 'b', lock: 'L', token: 2, reqs: ['rb'] },
      ]);
      expect(log.state.sessions.has('a')).to.equal(true);
      expect([...(log.state.sessions.get('a')?.locks ?? [])]).to.deep.equal([]);
      // The hand-off carries the waiter's own lease.
      expect(log.state.locks.get('L')).to.include({ owner: 'b', token: 2, grantedAt: 1050, leaseUntil: 1350 });
      expect(log.tickAt(1350).effects).to.deep.equal([
        { kind: 'lost', client: 'b', conn: connOf('b'), lock: 'L', token: 2, reason: 'lease_expired' },
      ]);
      expect(log.state.locks.has('L')).to.equal(false);
    });

    it('of an earlier grant never fire on a newer grant', () => {
      const log = withSessions('a');
      log.preempt('a', 'L', { leaseMs: 1000 });
      log.at = 100;
      log.release('a', 'L');
      log.at = 200;
      expect(tokenOf(log.preempt('a', 'L').answer)).to.equal(2);
      log.preempt('a', 'M', { leaseMs: 800 });
      log.at = 300;
      log.release('a', 'M');
      log.preempt('a', 'M', { leaseMs: 5000 });
      expect(log.tickAt(1000).effects).to.deep.equal([]);
      expect(log.tickAt(5299).effects).to.deep.equal([]);
      expect(held(log, 'L')).to.deep.equal({ owner: 'a', token: 2, waiters: 0 });
      expect(held(log, 'M')).to.deep.equal({ owner: 'a', token: 4, waiters: 0 });
      expect(log.tickAt(5300).effects).to.deep.equal([
        { kind: 'lost', client: 'a', conn: connOf('a'), lock: 'M', token: 4, reason: 'lease_expired' },
      ]);
    });
  });

  describe('request_id', () => {
    it('a preempt retried after its release gets the first answer, not a new grant', () => {
      const log = withSessions('a');
      const first = log.preempt('a', 'L', { req: 'p1' }).answer;
      expect(first).to.deep.equal(granted('L', 'a', 1));
      okOf(log.release('a', 'L', { req: 'r1' }).answer);
      const retry = log.preempt('a', 'L', { req: 'p1' });
      expect(retry).to.deep.equal({ answer: granted('L', 'a', 1), effects: [] });
      expect(log.state.locks.has('L')).to.equal(false);
      expect(log.state.lastToken).to.equal(1);
    });

    it('a release retried never releases a later grant', () => {
      const log = withSessions('a', 'b');
      log.preempt('a', 'L');
      okOf(log.release('a', 'L', { req: 'r1' }).answer);
      expect(tokenOf(log.preempt('a', 'L').answer)).to.equal(2);
      expect(log.release('a', 'L', { req: 'r1' })).to.deep.equal({ answer: { ok: true, lock_name: 'L' }, effects: [] });
      expect(held(log, 'L')).to.deep.equal({ owner: 'a', token: 2, waiters: 0 });
      // Also after a hand-off to someone else.
      log.acquire('b', 'L');
      okOf(log.release('a', 'L', { req: 'r2' }).answer);
      expect(log.release('a', 'L', { req: 'r2' }).effects).to.deep.equal([]);
      expect(held(log, 'L')).to.deep.equal({ owner: 'b', token: 3, waiters: 0 });
    });

    it('an append retried is not written twice', () => {
      const log = withSessions('a');
      log.preempt('a', 'L');
      expect(log.append('a', 'L', 1, 'f', 'hé', { req: 'w1' }).answer).to.deep.equal({ ok: true, file: 'f', size: 3 });
      expect(log.append('a', 'L', 1, 'f', 'hé', { req: 'w1' }).answer).to.deep.equal({ ok: true, file: 'f', size: 3 });
      expect(readFile(log.state, 'f')).to.deep.equal({ ok: true, file: 'f', data: 'hé' });
      expect(log.append('a', 'L', 1, 'f', '!', { req: 'w2' }).answer).to.deep.equal({ ok: true, file: 'f', size: 4 });
      expect(readFile(log.state, 'f')).to.deep.equal({ ok: true, file: 'f', data: 'hé!' });
    });

    it('reused for a different request is bad_request, with no effect', () => {
      const log = withSessions('a');
      log.preempt('a', 'L', { req: 'x' });
      expect(codeOf(log.preempt('a', 'M', { req: 'x' }).answer)).to.equal('bad_request');
      expect(codeOf(log.acquire('a', 'L', { req: 'x' }).answer)).to.equal('bad_request');
      expect(codeOf(log.release('a', 'L', { req: 'x' }).answer)).to.equal('bad_request');
      expect(codeOf(log.append('a', 'L', 1, 'f', 'data', { req: 'x' }).answer)).to.equal('bad_request');
      expect(log.state.locks.has('M')).to.equal(false);
      expect(held(log, 'L')).to.deep.equal({ owner: 'a', token: 1, waiters: 0 });
      expect(log.state.files.has('f')).to.equal(false);
      // A release with a different token is a different request too.
      okOf(log.release('a', 'L', { req: 'rel', token: 1 }).answer);
      expect(codeOf(log.release('a', 'L', { req: 'rel' }).answer)).to.equal('bad_request');
    });

    it(`remembers the latest ${requestResultsPerSessionMax} answers and evicts the oldest`, () => {
      const log = withSessions('a');
      expect(tokenOf(log.preempt('a', 'L', { req: 'r0' }).answer)).to.equal(1);
      okOf(log.release('a', 'L', { req: 'rel' }).answer);
      // 'r0' plus 'rel' plus 1022 more: exactly the limit, r0 still remembered.
      for (let i = 1; i <= requestResultsPerSessionMax - 2; i++) {
        expect(codeOf(log.release('a', 'X', { req: `n${i}` }).answer)).to.equal('not_owner');
      }
      expect(log.state.sessions.get('a')?.results.size).to.equal(requestResultsPerSessionMax);
      expect(log.preempt('a', 'L', { req: 'r0' }).answer).to.deep.equal(granted('L', 'a', 1));
      expect(log.state.locks.has('L')).to.equal(false);
      // One more evicts r0 (the oldest): it is then a new request.
      log.release('a', 'X', { req: 'last' });
      expect(log.state.sessions.get('a')?.results.size).to.equal(requestResultsPerSessionMax);
      expect(log.state.sessions.get('a')?.results.has('r0')).to.equal(false);
      expect(log.state.sessions.get('a')?.results.has('rel')).to.equal(true);
      expect(log.preempt('a', 'L', { req: 'r0' }).answer).to.deep.equal(granted('L', 'a', 2));
    });

    it('a retried acquire still queued keeps its queue position; the grant answers every req', () => {
      const log = withSessions('a', 'b', 'c');
      log.preempt('a', 'L');
      expect(log.acquire('b', 'L', { req: 'b1' }).answer).to.equal(null);
      expect(log.acquire('c', 'L', { req: 'c1' }).answer).to.equal(null);
      expect(log.acquire('b', 'L', { req: 'b1' })).to.deep.equal({ answer: null, effects: [] });
      expect(log.acquire('b', 'L', { req: 'b2' })).to.deep.equal({ answer: null, effects: [] });
      expect(held(log, 'L').waiters).to.equal(2);
      expect(log.release('a', 'L').effects).to.deep.equal([
        { kind: 'granted', client: 'b', lock: 'L', token: 2, reqs: ['b1', 'b2'] },
      ]);
      expect(log.acquire('b', 'L', { req: 'b1' }).answer).to.deep.equal(granted('L', 'b', 2));
      expect(log.acquire('b', 'L', { req: 'b2' }).answer).to.deep.equal(granted('L', 'b', 2));
      expect(held(log, 'L')).to.deep.equal({ owner: 'b', token: 2, waiters: 1 });
    });
  });

  describe('append', () => {
    it('succeeds for the holder with the current token, sized in UTF-8 bytes', () => {
      const log = withSessions('a');
      const token = tokenOf(log.preempt('a', 'L').answer);
      expect(log.append('a', 'L', token, 'f', 'é').answer).to.deep.equal({ ok: true, file: 'f', size: 2 });
      expect(log.append('a', 'L', token, 'f', '😀').answer).to.deep.equal({ ok: true, file: 'f', size: 6 });
      expect(log.append('a', 'L', token, 'f', 'abc').answer).to.deep.equal({ ok: true, file: 'f', size: 9 });
      expect(log.append('a', 'L', token, 'f', '').answer).to.deep.equal({ ok: true, file: 'f', size: 9 });
      expect(log.append('a', 'L', token, 'f', '中').answer).to.deep.equal({ ok: true, file: 'f', size: 12 });
      expect(readFile(log.state, 'f')).to.deep.equal({ ok: true, file: 'f', data: 'é😀abc中' });
    });

    it('with the token of an earlier grant after a hand-off is stale_token', () => {
      const log = withSessions('a', 'b');
      const old = tokenOf(log.preempt('a', 'L').answer);
      log.append('a', 'L', old, 'f', 'a1');
      log.acquire('b', 'L');
      log.release('a', 'L');
      expect(held(log, 'L')).to.deep.equal({ owner: 'b', token: old + 1, waiters: 0 });
      expect(codeOf(log.append('a', 'L', old, 'f', 'late').answer)).to.equal('stale_token');
      expect(codeOf(log.append('b', 'L', old, 'f', 'b-old').answer)).to.equal('stale_token');
      expect(log.append('b', 'L', old + 1, 'f', 'b1').answer).to.deep.equal({ ok: true, file: 'f', size: 4 });
      expect(readFile(log.state, 'f')).to.deep.equal({ ok: true, file: 'f', data: 'a1b1' });
    });

    it('by a non-holder is not_owner', () => {
      const log = withSessions('a', 'b');
      const token = tokenOf(log.preempt('a', 'L').answer);
      expect(codeOf(log.append('b', 'L', token, 'f', 'x').answer)).to.equal('not_owner');
      expect(codeOf(log.append('b', 'M', token, 'f', 'x').answer)).to.equal('not_owner');
      expect(codeOf(log.append('a', 'L', token + 1, 'f', 'x').answer)).to.equal('not_owner');
      expect(log.state.files.has('f')).to.equal(false);
      expect(readFile(log.state, 'f')).to.deep.equal({ ok: true, file: 'f', data: '' });
    });

    it('keeps every file in the order of its appends', () => {
      const log = withSessions('a', 'b');
      const ta = tokenOf(log.preempt('a', 'A').answer);
      const tb = tokenOf(log.preempt('b', 'B').answer);
      log.append('a', 'A', ta, 'one', '1');
      log.append('b', 'B', tb, 'two', 'x');
      log.append('b', 'B', tb, 'one', '2');
      log.append('a', 'A', ta, 'one', '3');
      expect(readFile(log.state, 'one')).to.deep.equal({ ok: true, file: 'one', data: '123' });
      log.append('a', 'A', ta, 'one', '4');
      expect(readFile(log.state, 'one')).to.deep.equal({ ok: true, file: 'one', data: '1234' });
      expect(readFile(log.state, 'two')).to.deep.equal({ ok: true, file: 'two', data: 'x' });
    });

    // A surrogate pair split over two appends (JSON "\ud83d" then "\ude00") must not make `size`
    // disagree with the data a read returns: each half stands alone as U+FFFD.
    it('counts a surrogate pair split over two appends as the bytes a read returns', () => {
      const log = withSessions('a');
      log.preempt('a', 'L');
      const state = log.state;
      const first = apply(state, ++log.index, { type: 'append', at: 0, client: 'a', conn: connOf('a'), lock: 'L', token: 1, file: 'f', data: '\ud83d' });
      expect(first.answer).to.deep.equal({ ok: true, file: 'f', size: 3 });
      const second = apply(state, ++log.index, { type: 'append', at: 0, client: 'a', conn: connOf('a'), lock: 'L', token: 1, file: 'f', data: '\ude00' });
      const data = okOf(readFile(state, 'f'))['data'] as string;
      expect(second.answer).to.deep.equal({ ok: true, file: 'f', size: Buffer.byteLength(data) });
      checkInvariants(state);
    });
  });

  describe('limits (issue 5: bounds on everything)', () => {
    function limited(limits: Partial<StateLimits>, ...clients: string[]): Log {
      const log = new Log();
      log.run({ type: 'limits', at: 0, limits: { ...defaultStateLimits, ...limits } });
      for (const client of clients) log.hello(client);
      return log;
    }

    function refusedBy(result: ApplyResult, pattern: RegExp): void {
      expect(codeOf(result.answer)).to.equal('limit_exceeded');
      expect(errorOf(result.answer).message).to.match(pattern);
    }

    it('a limits entry sets the bounds every replica applies, and leaves what exists alone', () => {
      const log = withSessions('a', 'b', 'c');
      log.run({ type: 'limits', at: 0, limits: { ...defaultStateLimits, sessions: 2 } });
      expect(log.state.limits.sessions).to.equal(2);
      expect(log.state.sessions.size).to.equal(3);
      refusedBy(log.hello('d'), /3 sessions, its limit/);
      expect(okOf(log.preempt('a', 'L').answer).token).to.equal(1);
    });

    it('sessions: a new session past the bound is refused, explicit or implicit; room frees on bye', () => {
      const log = limited({ sessions: 2 }, 'a', 'b');
      refusedBy(log.hello('c'), /2 sessions/);
      refusedBy(log.hello('c', { implicit: true }), /2 sessions/);
      refusedBy(log.preempt('c', 'L'), /2 sessions/);
      expect(log.state.sessions.has('c')).to.equal(false);
      expect(okOf(log.hello('a').answer).client_id).to.equal('a'); // an existing session is not new
      log.bye('b');
      expect(okOf(log.hello('c').answer).client_id).to.equal('c');
    });

    it('locks per session: holds and waits both count; a release makes room', () => {
      const log = limited({ locksPerSession: 2 }, 'a', 'b');
      log.preempt('b', 'W');
      log.preempt('a', 'L1');
      expect(log.acquire('a', 'W').answer).to.equal(null); // queued: the second lock of a
      refusedBy(log.preempt('a', 'L3'), /a holds or waits for 2 locks/);
      refusedBy(log.acquire('a', 'L3'), /2 locks/);
      expect(okOf(log.preempt('a', 'L1').answer).token).to.equal(2); // re-taking one it holds is fine
      log.release('a', 'L1');
      expect(okOf(log.preempt('a', 'L3').answer).owner).to.equal('a');
    });

    it('locks in the cluster: a new lock past the bound is refused, queueing on one in use is not', () => {
      const log = limited({ locks: 2 }, 'a', 'b', 'c');
      log.preempt('a', 'L1');
      log.preempt('b', 'L2');
      refusedBy(log.preempt('c', 'L3'), /2 locks in use/);
      expect(log.acquire('c', 'L1').answer).to.equal(null);
      expect(held(log, 'L1').waiters).to.equal(1);
    });

    it('waiters per lock: one more acquire is refused, and the queue still hands over in order', () => {
      const log = limited({ waitersPerLock: 1 }, 'a', 'b', 'c');
      log.preempt('a', 'L');
      expect(log.acquire('b', 'L').answer).to.equal(null);
      refusedBy(log.acquire('c', 'L'), /L has 1 waiters, the limit per lock/);
      const effects = log.release('a', 'L').effects;
      expect(effects.map((e) => e.kind === 'granted' && e.client)).to.deep.equal(['b']);
      expect(log.acquire('c', 'L').answer).to.equal(null);
    });

    it('files: count, bytes per file and bytes in all, counted in UTF-8 after the append', () => {
      const log = limited({ files: 2, fileBytes: 10, totalFileBytes: 15 }, 'a');
      const t = tokenOf(log.preempt('a', 'L').answer);
      const append = (file: string, data: string): ApplyResult => log.append('a', 'L', t, file, data);
      expect(okOf(append('f', '12345678é').answer).size).to.equal(10);
      refusedBy(append('f', 'x'), /f would grow past 10 bytes/);
      expect(okOf(append('g', '1234').answer).size).to.equal(4);
      refusedBy(append('h', ''), /2 files, its limit/);
      refusedBy(append('g', '12'), /past 15 bytes, the limit for all files/);
      expect(okOf(append('g', '1').answer).size).to.equal(5);
      expect(log.state.fileBytes).to.equal(15);
      expect(readFile(log.state, 'f')).to.deep.include({ data: '12345678é' });
    });

    it('takeRefusedAhead (a node refusing before it proposes) says exactly what apply would', () => {
      let ahead = 0;
      for (const seed of [1, 2, 3, 4, 5]) {
        const log = limited({ waitersPerLock: 1, locksPerSession: 2, locks: 3 });
        const gen = new CommandGenerator(new Prng(seed));
        for (let i = 0; i < 3000; i++) {
          const command = gen.next(log.state);
          // The node checks before the command is stamped; a deadline that comes due in between
          // (a session expiring) may change the answer, to another refusal. Compare the rest.
          const due = nextDeadlineAt(log.state);
          const quiet = due === null || due > command.at;
          const predicted = quiet && (command.type === 'preempt' || command.type === 'acquire') ? takeRefusedAhead(log.state, command) : null;
          const result = log.run(command);
          gen.observe(command, result);
          if (predicted !== null) {
            ahead++;
            expect(result.answer, `seed ${seed} step ${i}`).to.deep.equal(predicted);
          }
        }
      }
      expect(ahead, 'refusals predicted').to.be.above(50);
    });

    it('a refusal by a bound is not remembered: the same request_id succeeds once there is room', () => {
      const log = limited({ locksPerSession: 1 }, 'a');
      log.preempt('a', 'L1');
      refusedBy(log.preempt('a', 'L2', { req: 'r1' }), /1 locks/);
      log.release('a', 'L1');
      expect(okOf(log.preempt('a', 'L2', { req: 'r1' }).answer).owner).to.equal('a');
      expect(okOf(log.preempt('a', 'L2', { req: 'r1' }).answer).token).to.equal(2);
    });
  });

  describe('check', () => {
    it('reports owner, token and waiters; a free lock is forgotten', () => {
      const log = withSessions('a', 'b', 'c');
      expect(log.check('L')).to.deep.equal({ ok: true, lock_name: 'L', owner: null, token: null, waiters: 0 });
      log.preempt('a', 'L');
      log.acquire('b', 'L');
      log.acquire('c', 'L');
      expect(log.check('L')).to.deep.equal({ ok: true, lock_name: 'L', owner: 'a', token: 1, waiters: 2 });
      log.release('a', 'L');
      expect(log.check('L')).to.deep.equal({ ok: true, lock_name: 'L', owner: 'b', token: 2, waiters: 1 });
      log.release('b', 'L');
      log.release('c', 'L');
      expect(log.check('L')).to.deep.equal({ ok: true, lock_name: 'L', owner: null, token: null, waiters: 0 });
      expect(log.state.locks.has('L')).to.equal(false);
      expect(log.state.locks.size).to.equal(0);
    });
  });

  describe('cluster time', () => {
    it('never goes backwards, and an earlier `at` fires nothing early', () => {
      const log = new Log();
      log.hello('a', { ttlMs: 1000 });
      log.tickAt(500);
      expect(log.state.now).to.equal(500);
      log.at = 100;
      log.preempt('a', 'L', { leaseMs: 600 });
      expect(log.state.now).to.equal(500);
      expect(log.state.locks.get('L')).to.include({ grantedAt: 500, leaseUntil: 1100 });
      expect(log.state.sessions.get('a')?.lastContactAt).to.equal(500);
      expect(log.tickAt(0).effects).to.deep.equal([]);
      expect(log.state.now).to.equal(500);
      expect(log.tickAt(1099).effects).to.deep.equal([]);
      expect(log.tickAt(1100).effects.map((effect) => effect.kind)).to.deep.equal(['lost']);
      expect(log.tickAt(1499).effects).to.deep.equal([]);
      expect(log.tickAt(1500).effects.map((effect) => effect.kind)).to.deep.equal(['session_ended']);
    });
  });

  describe('determinism', () => {
    for (const seed of [1, 2, 3, 42, 1234, 99_991]) {
      it(`applies the same random log (seed ${seed}) to the same answers, effects and state`, () => {
        const first = new Log();
        const second = new Log();
        const generator = new CommandGenerator(new Prng(seed));
        const tokens = new Map<string, number>();
        const codes = new Set<string>();
        for (let i = 0; i < 500; i++) {
          const command = generator.next(first.state);
          const copy = JSON.parse(JSON.stringify(command)) as Command;
          const a = first.run(command);
          const b = second.run(copy);
          expect(b, `answer of command ${i} (seed ${seed})`).to.deep.equal(a);
          expect(dump(second.state), `state after command ${i} (seed ${seed})`).to.deep.equal(dump(first.state));
          generator.observe(command, a);
          if (a.answer !== null) codes.add(a.answer.ok ? 'ok' : a.answer.error.code);
          for (const effect of a.effects) codes.add(effect.kind);
          // Fencing: a lock's token only grows, across grants, hand-offs and expiries.
          for (const [name, lock] of first.state.locks) {
            expect(lock.token, `token of ${name}`).to.be.at.least(tokens.get(name) ?? 0);
            tokens.set(name, lock.token);
          }
        }
        // The generator reaches the interesting paths, not just errors.
        for (const code of ['ok', 'lock_held', 'not_owner', 'stale_token', 'timeout', 'client_mismatch', 'unavailable', 'bad_request', 'granted', 'wait_ended', 'lost', 'session_ended']) {
          expect(codes, `seed ${seed} never produced ${code}`).to.include(code);
        }
      });
    }
  });
});

// ---- random logs ----

