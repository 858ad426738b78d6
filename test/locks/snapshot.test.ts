// Snapshots of the lock table (lib/locks/snapshot.ts): a decoded snapshot is the same state
// (round trip, byte-identical re-encoding), it behaves exactly like the original for every later
// command (random logs continued on both, deadlines firing after the snapshot), and anything that
// is not a valid version-1 snapshot is refused with a SnapshotError.
import { expect } from 'chai';
import { Prng } from '../../lib/core/prng';
import type { Command } from '../../lib/locks/commands';
import { checkInvariants } from '../../lib/locks/invariants';
import { decodeSnapshot, encodeSnapshot, SnapshotError } from '../../lib/locks/snapshot';
import { apply, type ApplyResult } from '../../lib/locks/state-machine';
import { createLockState, readFile, type LockState } from '../../lib/locks/state';
import { CommandGenerator, dump } from '../helpers/random-commands';

// ---- harness ----

/** Applies commands one after another to a state (a fresh one, or a decoded snapshot), checking
 *  the invariants after each. */
class Log {
  constructor(readonly state: LockState = createLockState()) {}

  run(command: Command): ApplyResult {
    const result = apply(this.state, this.state.appliedIndex + 1, command);
    checkInvariants(this.state);
    return result;
  }
}

function conn(client: string): string {
  return `n1/1/${client}`;
}

function hello(at: number, client: string, ttlMs = 1000, graceMs = 0): Command {
  return { type: 'hello', at, client, conn: conn(client), ttlMs, graceMs, implicit: false, fresh: `secret-${client}` };
}


/** decode(encode(state)), checked to be the same state and to encode to the same string. */
function roundTrip(state: LockState): LockState {
  const text = encodeSnapshot(state);
  const copy = decodeSnapshot(text);
  checkInvariants(copy);
  expect(encodeSnapshot(copy), 'the decoded state re-encodes identically').to.equal(text);
  expect(dump(copy), 'the decoded state holds the same data').to.deep.equal(dump(state));
  return copy;
}

/** Applies `command` to both logs and expects the same answer and effects, byte for byte. */
function applyBoth(original: Log, copy: Log, command: Command, what: string): ApplyResult {
  const a = original.run(command);
  const b = copy.run(JSON.parse(JSON.stringify(command)) as Command);
  expect(b, what).to.deep.equal(a);
  expect(JSON.stringify(b), what).to.equal(JSON.stringify(a));
  return a;
}

/** A state with a bit of everything: a disconnected session in its grace period, stale session
 *  deadlines, a lease, a wait queue with a dead slot in the middle, a waiter with a timeout and
 *  a lease, a queue position shared by two request_ids, a pending (null) cached answer, error
 *  answers, and a file written in several chunks. */
function busyLog(): Log {
  const log = new Log();
  log.run(hello(0, 'a', 1000, 500));
  log.run(hello(0, 'b', 5000));
  log.run(hello(0, 'c', 5000));
  log.run(hello(0, 'd', 5000, 2000));
  log.run({ type: 'preempt', at: 10, client: 'a', conn: conn('a'), lock: 'L', leaseMs: 4000, req: 'a1' });
  log.run({ type: 'append', at: 20, client: 'a', conn: conn('a'), lock: 'L', token: 1, file: 'f', data: 'x', req: 'a2' });
  log.run({ type: 'append', at: 20, client: 'a', conn: conn('a'), lock: 'L', token: 1, file: 'f', data: 'é😀', req: 'a3' });
  log.run({ type: 'release', at: 20, client: 'a', conn: conn('a'), lock: 'L', token: 7, req: 'a4' });
  log.run({ type: 'acquire', at: 30, client: 'b', conn: conn('b'), lock: 'L', req: 'b1' });
  log.run({ type: 'acquire', at: 30, client: 'c', conn: conn('c'), lock: 'L', timeoutMs: 300, req: 'c1' });
  log.run({ type: 'acquire', at: 30, client: 'd', conn: conn('d'), lock: 'L', timeoutMs: 3000, leaseMs: 50, req: 'd1' });
  log.run({ type: 'acquire', at: 40, client: 'b', conn: conn('b'), lock: 'L', req: 'b2' });
  log.run({ type: 'preempt', at: 40, client: 'b', conn: conn('b'), lock: 'M', req: 'b3' });
  log.run({ type: 'append', at: 40, client: 'b', conn: conn('b'), lock: 'M', token: 2, file: 'g', data: 'm', req: 'b4' });
  log.run({ type: 'tick', at: 330 }); // c times out: a dead slot between b and d
  log.run({ type: 'touch', at: 400, touches: ['a', 'b', 'c', 'd'].map((c) => ({ client: c, conn: conn(c) })) }); // the session entries go stale
  log.run({ type: 'disconnected', at: 450, client: 'd', conn: conn('d') }); // d: grace, an earlier deadline
  log.run({ type: 'tick', at: 1000 }); // stale entries pop and are pushed again
  return log;
}

// ---- round trip ----

describe('locks/snapshot', () => {
  describe('round trip', () => {
    it('encodes the empty state as a version-3 document and decodes it back', () => {
      const text = encodeSnapshot(createLockState());
      expect(text).to.equal('{"v":3,"now":0,"appliedIndex":0,"lastToken":0,"seq":0,'
        + '"limits":{"sessions":100000,"locks":1000000,"locksPerSession":100000,"waitersPerLock":10000,"files":100000,'
        + '"fileBytes":16777216,"totalFileBytes":268435456},"sessions":[],"locks":[],"files":[],"deadlines":[]}');
      expect(dump(decodeSnapshot(text))).to.deep.equal(dump(createLockState()));
    });

    it('reads a version-1 document (no limits) with the default limits', () => {
      const text = '{"v":1,"now":0,"appliedIndex":0,"lastToken":0,"seq":0,"sessions":[],"locks":[],"files":[],"deadlines":[]}';
      expect(dump(decodeSnapshot(text))).to.deep.equal(dump(createLockState()));
    });

    it('reads a version-2 document (each lock an object naming its owner) as the same state', () => {
      const state = busyLog().state;
      const v3 = JSON.parse(encodeSnapshot(state)) as { v: number; sessions: { client: string }[]; locks: unknown[][] };
      const v2 = {
        ...v3,
        v: 2,
        locks: v3.locks.map(([name, owner, token, grantedAt, leaseUntil, waiters]) => ({
          name, owner: owner === null ? null : v3.sessions[owner as number]?.client, token, grantedAt, leaseUntil, waiters,
        })),
      };
      const decoded = decodeSnapshot(JSON.stringify(v2));
      expect(dump(decoded)).to.deep.equal(dump(state));
      expect(encodeSnapshot(decoded)).to.equal(encodeSnapshot(state));
      expect(JSON.stringify(v2).length, 'v3 is the shorter').to.be.above(encodeSnapshot(state).length);
    });

    it('writes thousands of locks, a few at a time, as JSON.stringify writes the whole', () => {
      const log = new Log();
      log.run(hello(0, 'a', 100000));
      log.run(hello(0, 'b', 100000));
      for (let i = 0; i < 2500; i++) {
        const client = i % 3 === 0 ? 'b' : 'a';
        log.run({ type: 'preempt', at: i, client, conn: conn(client), lock: `k${i}`, req: `r${i}`, ...(i % 7 === 0 ? { leaseMs: 5000 } : {}) });
      }
      const text = encodeSnapshot(log.state);
      expect(text).to.equal(JSON.stringify(JSON.parse(text)));
      expect((JSON.parse(text) as { locks: unknown[] }).locks).to.have.length(2500);
      roundTrip(log.state);
    });

    it('keeps limits that differ from the defaults, and the total file bytes', () => {
      const log = busyLog();
      log.state.limits = { ...log.state.limits, sessions: 7, fileBytes: 99 };
      const copy = decodeSnapshot(encodeSnapshot(log.state));
      expect(copy.limits).to.deep.equal(log.state.limits);
      expect(copy.fileBytes).to.equal(log.state.fileBytes).and.to.be.above(0);
    });

    it('keeps every part of a busy state', () => {
      const log = busyLog();
      const state = log.state;
      // The story above produced what it claims to (so the round trip below covers it).
      const lock = state.locks.get('L');
      if (lock === undefined) expect.fail('L is held');
      expect(lock.waiters?.toArray().map((waiter) => [waiter.client, waiter.reqs])).to.deep.equal([['b', ['b1', 'b2']], ['d', ['d1']]]);
      expect(state.sessions.get('d')?.connected).to.equal(false);
      expect(state.sessions.get('b')?.results.get('b1')?.answer).to.equal(null);
      expect(state.files.get('f')?.chunks).to.deep.equal(['x', 'é😀']);
      const live = state.sessions.size + 1 /* L's lease */ + 1 /* d's timeout */;
      expect(state.deadlines.size, 'stale heap entries are present').to.be.above(live);

      const copy = roundTrip(state);
      const copied = copy.locks.get('L');
      if (copied === undefined) expect.fail('L is held in the copy');
      expect(copied.waiters?.toArray()).to.deep.equal([
        { client: 'b', seq: lock.waiters?.get('b')?.seq, enqueuedAt: 30, deadline: null, leaseMs: undefined, reqs: ['b1', 'b2'] },
        { client: 'd', seq: lock.waiters?.get('d')?.seq, enqueuedAt: 30, deadline: 3030, leaseMs: 50, reqs: ['d1'] },
      ]);
      expect(copied.waiters?.length).to.equal(2);
      expect(copied).to.include({ owner: 'a', token: 1, grantedAt: 10, leaseUntil: 4010 });
      expect([...(copy.sessions.get('a')?.results.keys() ?? [])]).to.deep.equal(['a1', 'a2', 'a3', 'a4']);
      expect(copy.sessions.get('d')).to.include({ connected: false, disconnectedAt: 450, graceMs: 2000, resume: 'secret-d' });
      expect(readFile(copy, 'f')).to.deep.equal({ ok: true, file: 'f', data: 'xé😀' });
      expect(copy.files.get('f')?.sizeBytes).to.equal(7);
      expect([...copy.deadlines.entries()]).to.deep.equal([...state.deadlines.entries()]);
      expect(copy).to.include({ now: 1000, appliedIndex: state.appliedIndex, lastToken: 2, seq: state.seq });
    });

    it('keeps insertion order, which is not sorted order', () => {
      const log = new Log();
      log.run(hello(0, 'z'));
      log.run(hello(0, 'a'));
      log.run({ type: 'preempt', at: 0, client: 'z', conn: conn('z'), lock: 'Y', req: 'r9' });
      log.run({ type: 'preempt', at: 0, client: 'z', conn: conn('z'), lock: 'B', req: 'r1' });
      log.run({ type: 'append', at: 0, client: 'z', conn: conn('z'), lock: 'Y', token: 1, file: 'g', data: '1', req: 'r5' });
      log.run({ type: 'append', at: 0, client: 'z', conn: conn('z'), lock: 'Y', token: 1, file: 'e', data: '2', req: 'r3' });
      log.run({ type: 'acquire', at: 0, client: 'a', conn: conn('a'), lock: 'Y' });
      log.run({ type: 'acquire', at: 0, client: 'a', conn: conn('a'), lock: 'B' });
      const copy = new Log(roundTrip(log.state));
      expect([...copy.state.sessions.keys()]).to.deep.equal(['z', 'a']);
      expect([...copy.state.locks.keys()]).to.deep.equal(['Y', 'B']);
      expect([...copy.state.files.keys()]).to.deep.equal(['g', 'e']);
      expect([...(copy.state.sessions.get('z')?.results.keys() ?? [])]).to.deep.equal(['r9', 'r1', 'r5', 'r3']);
      expect([...(copy.state.sessions.get('z')?.locks ?? [])]).to.deep.equal(['Y', 'B']);
      expect([...(copy.state.sessions.get('a')?.waits ?? [])]).to.deep.equal(['Y', 'B']);
      // That order is what later effects come in: z expires, Y is lost and handed on before B.
      const result = applyBoth(log, copy, { type: 'touch', at: 999, touches: [{ client: 'a', conn: conn('a') }] }, 'touch').effects;
      expect(result).to.deep.equal([]);
      const effects = applyBoth(log, copy, { type: 'tick', at: 1000 }, 'expiry').effects;
      expect(effects.map((effect) => `${effect.kind}:${'lock' in effect ? effect.lock : ''}`)).to.deep.equal([
        'lost:Y', 'granted:Y', 'lost:B', 'granted:B', 'session_ended:',
      ]);
    });

    it('round-trips every state along random logs', () => {
      for (const seed of [5, 6, 7]) {
        const log = new Log();
        const generator = new CommandGenerator(new Prng(seed));
        for (let i = 0; i < 300; i++) {
          const command = i % 50 === 49 ? generator.jump(1500) : generator.next(log.state);
          generator.observe(command, log.run(command));
          roundTrip(log.state);
        }
      }
    });

    it('is deterministic: replicas that applied the same log encode the same string, and reads change nothing', () => {
      const first = busyLog();
      const second = busyLog();
      const text = encodeSnapshot(first.state);
      expect(encodeSnapshot(second.state)).to.equal(text);
      expect(encodeSnapshot(first.state)).to.equal(text);
      readFile(first.state, 'f'); // compacts the chunks: not a change of state
      expect(first.state.files.get('f')?.chunks).to.deep.equal(['xé😀']);
      expect(encodeSnapshot(first.state)).to.equal(text);
      // The encoding does not share anything with the state it came from.
      const copy = decodeSnapshot(text);
      first.run({ type: 'append', at: 1000, client: 'a', conn: conn('a'), lock: 'L', token: 1, file: 'f', data: 'more', req: 'a5' });
      expect(encodeSnapshot(copy)).to.equal(text);
      expect(encodeSnapshot(first.state)).to.not.equal(text);
    });
  });

  // ---- equivalence: the rest of the log on the original and on the decoded copy ----

  describe('equivalence', () => {
    const afterSnapshot = new Set<string>();
    const atSnapshot = new Set<string>();

    /** What the state at the snapshot point holds that could go wrong in a restore. */
    function noteSnapshotState(state: LockState): void {
      const live = state.sessions.size + [...state.locks.values()].filter((lock) => lock.leaseUntil !== null).length
        + [...state.locks.values()].reduce((n, lock) => n + (lock.waiters?.toArray() ?? []).filter((waiter) => waiter.deadline !== null).length, 0);
      if (state.deadlines.size > live) atSnapshot.add('stale deadlines');
      for (const lock of state.locks.values()) {
        if (lock.leaseUntil !== null) atSnapshot.add('lease');
        if ((lock.waiters?.length ?? 0) > 1) atSnapshot.add('queue of two');
        for (const waiter of lock.waiters?.toArray() ?? []) if (waiter.deadline !== null) atSnapshot.add('waiter timeout');
      }
      for (const session of state.sessions.values()) {
        if (!session.connected) atSnapshot.add('disconnected session');
        for (const cached of session.results.values()) if (cached.answer === null) atSnapshot.add('pending answer');
      }
    }

    for (const seed of [1, 2, 3, 4, 42, 1234, 99_991, 31_337]) {
      it(`continues a random log (seed ${seed}) on a decoded snapshot exactly like on the original`, () => {
        const prng = new Prng(seed);
        const generator = new CommandGenerator(prng);
        const original = new Log();
        const before = prng.int(40, 400);
        for (let i = 0; i < before; i++) {
          const command = generator.next(original.state);
          generator.observe(command, original.run(command));
        }
        noteSnapshotState(original.state);
        const snapshot = encodeSnapshot(original.state);
        let copy = new Log(decodeSnapshot(snapshot));
        for (let i = 0; i < 400; i++) {
          // Now and then a quiet stretch far in the future, so that sessions, leases and waiter
          // timeouts taken over in the snapshot fire on the copy; now and then the copy restarts
          // from a snapshot of its own.
          const command = prng.chance(0.04) ? generator.jump(prng.int(500, 5000)) : generator.next(original.state);
          const what = `command ${i} after the snapshot at ${before} (seed ${seed}): ${JSON.stringify(command)}`;
          const result = applyBoth(original, copy, command, what);
          generator.observe(command, result);
          for (const effect of result.effects) {
            afterSnapshot.add(effect.kind === 'lost' || effect.kind === 'session_ended' ? `${effect.kind}:${effect.reason}` : effect.kind);
          }
          if (result.answer !== null && !result.answer.ok) afterSnapshot.add(result.answer.error.code);
          expect(encodeSnapshot(copy.state), what).to.equal(encodeSnapshot(original.state));
          if (prng.chance(0.02)) copy = new Log(decodeSnapshot(encodeSnapshot(copy.state)));
        }
        // Far in the future: every deadline still pending fires, in the same order on both.
        applyBoth(original, copy, generator.jump(100_000), `final tick (seed ${seed})`);
        expect(original.state.sessions.size).to.equal(0);
        expect(encodeSnapshot(copy.state)).to.equal(encodeSnapshot(original.state));
        expect(dump(copy.state)).to.deep.equal(dump(original.state));
        // The snapshot itself was not disturbed by what the copy did afterwards.
        expect(encodeSnapshot(decodeSnapshot(snapshot))).to.equal(snapshot);
      });
    }

    it('the runs above took snapshots of busy states and fired every kind of deadline after them', () => {
      for (const what of ['stale deadlines', 'lease', 'queue of two', 'waiter timeout', 'disconnected session', 'pending answer']) {
        expect(atSnapshot, `no snapshot held a ${what}`).to.include(what);
      }
      for (const what of ['granted', 'wait_ended', 'lost:lease_expired', 'lost:session_expired', 'session_ended:expired',
        'session_ended:bye', 'session_ended:disconnected', 'timeout', 'lock_held', 'stale_token', 'bad_request']) {
        expect(afterSnapshot, `nothing after a snapshot produced ${what}`).to.include(what);
      }
    });

    it('fires a busy snapshot\'s deadlines in the original order: timeouts, grace, leases, ttl', () => {
      const original = busyLog();
      const copy = new Log(decodeSnapshot(encodeSnapshot(original.state)));
      const fired: string[] = [];
      for (const at of [1100, 1600, 2000, 2500, 3030, 4010, 6000, 7000]) {
        const { effects } = applyBoth(original, copy, { type: 'tick', at }, `tick at ${at}`);
        for (const effect of effects) fired.push(`${at} ${effect.kind} ${effect.client}${'lock' in effect ? ` ${effect.lock}` : ''}`);
        expect(encodeSnapshot(copy.state)).to.equal(encodeSnapshot(original.state));
      }
      // a's ttl (1000 from its touch at 400) ends it at 1400 and hands L to b; d's grace ends it
      // at 2450 and its wait with it (its timeout at 3030 and a's lease at 4010 are then stale);
      // b's and c's ttl end at 5400, in the order of their heap entries: b first, M before L.
      expect(fired).to.deep.equal([
        '1600 lost a L', '1600 granted b L', '1600 session_ended a',
        '2500 wait_ended d L', '2500 session_ended d',
        '6000 lost b M', '6000 lost b L', '6000 session_ended b', '6000 session_ended c',
      ]);
    });
  });

  // ---- bad input ----

  describe('bad input', () => {
    const good = encodeSnapshot(busyLog().state);

    function parsed(): Record<string, any> { // eslint-disable-line @typescript-eslint/no-explicit-any
      return JSON.parse(good) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    }

    function refuses(value: unknown, pattern: RegExp): void {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      expect(() => decodeSnapshot(text), text.slice(0, 200)).to.throw(SnapshotError, pattern);
    }

    it('accepts the good snapshot these tests spoil', () => {
      expect(encodeSnapshot(decodeSnapshot(good))).to.equal(good);
      const sample = parsed();
      for (const list of ['sessions', 'locks', 'files', 'deadlines']) expect(sample[list], list).to.have.length.above(1);
      expect(sample['locks'][0][5]).to.have.length.above(1);
    });

    it('refuses an unknown or missing version', () => {
      for (const v of [4, 0, '1', null, 1.5, true]) refuses({ ...parsed(), v }, /unknown version/);
      const { v: _v, ...unversioned } = parsed();
      refuses(unversioned, /missing the version field/);
      refuses({ v: 4 }, /unknown version 4 \(this build reads versions 1 to 3\)/);
      refuses({ ...parsed(), v: 2 }, /snapshot\.locks\[0\]: expected an object/);
      refuses({ ...parsed(), v: 1 }, /snapshot: unknown field "limits"/);
    });

    it('refuses text that is not a JSON object', () => {
      for (const text of ['', ' ', 'v1', '{', '{"v":1,', good + 'x']) refuses(text, /not valid JSON/);
      for (const text of ['null', '[]', '1', '"snapshot"', 'true']) refuses(text, /expected an object/);
    });

    it('refuses every truncation of a snapshot', () => {
      for (let cut = 0; cut < good.length; cut++) refuses(good.slice(0, cut), /not valid JSON/);
    });

    it('refuses a missing field, in every object of the snapshot', () => {
      const objects: [string, (s: Record<string, any>) => Record<string, unknown>][] = [ // eslint-disable-line @typescript-eslint/no-explicit-any
        ['snapshot', (s) => s],
        ['snapshot.limits', (s) => s['limits']],
        ['snapshot.sessions[1]', (s) => s['sessions'][1]],
        ['snapshot.locks[0].waiters[1]', (s) => s['locks'][0][5][1]],
        ['snapshot.files[1]', (s) => s['files'][1]],
        ['snapshot.deadlines[1]', (s) => s['deadlines'][1]],
      ];
      for (const [path, pick] of objects) {
        for (const key of Object.keys(pick(parsed()))) {
          if (key === 'v') continue; // the version has its own message (above)
          const spoilt = parsed();
          delete pick(spoilt)[key];
          refuses(spoilt, new RegExp(`^${path.replace(/[[\].]/g, '\\$&')}: missing field ${key}$`));
        }
      }
    });

    it('refuses an unknown field', () => {
      let spoilt = parsed();
      spoilt['extra'] = 1;
      refuses(spoilt, /snapshot: unknown field "extra"/);
      spoilt = parsed();
      spoilt['sessions'][0]['extra'] = null;
      refuses(spoilt, /snapshot\.sessions\[0\]: unknown field "extra"/);
      spoilt = parsed();
      spoilt['locks'][0][5][0]['timeoutMs'] = 5;
      refuses(spoilt, /snapshot\.locks\[0\]\.waiters\[0\]: unknown field "timeoutMs"/);
    });

    it('refuses a field of the wrong type', () => {
      const spoil: [string, (s: Record<string, any>) => void, RegExp][] = [ // eslint-disable-line @typescript-eslint/no-explicit-any
        ['now as a string', (s) => { s['now'] = '0'; }, /snapshot\.now: expected a finite number/],
        ['negative appliedIndex', (s) => { s['appliedIndex'] = -1; }, /snapshot\.appliedIndex: expected an integer >= 0/],
        ['fractional lastToken', (s) => { s['lastToken'] = 2.5; }, /snapshot\.lastToken: expected an integer >= 0/],
        ['sessions as an object', (s) => { s['sessions'] = {}; }, /snapshot\.sessions: expected an array/],
        ['a session as an array', (s) => { s['sessions'][0] = []; }, /snapshot\.sessions\[0\]: expected an object/],
        ['connected as a string', (s) => { s['sessions'][0]['connected'] = 'yes'; }, /\.connected: expected true or false/],
        ['negative ttl', (s) => { s['sessions'][0]['ttlMs'] = -5; }, /\.ttlMs: expected a duration >= 0/],
        ['conn as a number', (s) => { s['sessions'][0]['conn'] = 7; }, /\.conn: expected a string/],
        ['a lock name twice in a session', (s) => { s['sessions'][0]['locks'] = ['L', 'L']; }, /\.locks\[1\]: "L" twice/],
        ['a result without its answer', (s) => { s['sessions'][0]['results'][0] = ['a1', 'preempt\u0000L']; }, /\.results\[0\]: expected \[request_id, fingerprint, answer\]/],
        ['an answer without ok', (s) => { s['sessions'][0]['results'][0][2] = { token: 1 }; }, /\.results\[0\]\[2\]: expected an answer object/],
        ['an error answer without its error', (s) => { s['sessions'][0]['results'][3][2] = { ok: false }; }, /\.results\[3\]\[2\]\.error: expected \{ code, message \}/],
        ['a request_id twice', (s) => { s['sessions'][0]['results'][1][0] = 'a1'; }, /\.results\[1\]: request_id "a1" twice/],
        ['a request_id as a number', (s) => { s['locks'][0][5][0]['reqs'] = [1]; }, /\.reqs\[0\]: expected a string/],
        ['a waiter seq beyond seq', (s) => { s['locks'][0][5][0]['seq'] = s['seq'] + 1; }, /\.waiters\[0\]\.seq: expected a counter value <= seq/],
        ['a lock as an object', (s) => { s['locks'][0] = { name: 'L' }; }, /snapshot\.locks\[0\]: expected \[name, owner, token, grantedAt, leaseUntil, waiters\]/],
        ['a lock without its waiters', (s) => { s['locks'][0].pop(); }, /snapshot\.locks\[0\]: expected \[name, owner, token, grantedAt, leaseUntil, waiters\]/],
        ['an owner past the sessions', (s) => { s['locks'][0][1] = s['sessions'].length; }, /snapshot\.locks\[0\]\[1\]: expected the index of a session or null/],
        ['an owner by client id', (s) => { s['locks'][0][1] = 'a'; }, /snapshot\.locks\[0\]\[1\]: expected the index of a session or null/],
        ['a token as a string', (s) => { s['locks'][0][2] = '1'; }, /snapshot\.locks\[0\]\.token: expected an integer >= 0/],
        ['a deadline of an unknown kind', (s) => { s['deadlines'][0]['kind'] = 'alarm'; }, /snapshot\.deadlines\[0\]\.kind: unknown kind "alarm"/],
        ['an infinite deadline', (s) => { s['deadlines'][0]['at'] = null; }, /snapshot\.deadlines\[0\]\.at: expected a finite number/],
        ['file data as null', (s) => { s['files'][0]['data'] = null; }, /snapshot\.files\[0\]\.data: expected a string/],
      ];
      for (const [what, change, pattern] of spoil) {
        const spoilt = parsed();
        change(spoilt);
        expect(() => decodeSnapshot(JSON.stringify(spoilt)), what).to.throw(SnapshotError, pattern);
      }
    });

    it('refuses well-typed data that is not a lock state', () => {
      const spoil: [string, (s: Record<string, any>) => void, RegExp][] = [ // eslint-disable-line @typescript-eslint/no-explicit-any
        ['a session twice', (s) => { s['sessions'].push(s['sessions'][0]); }, /snapshot\.sessions\[4\]: a second session of client "a"/],
        ['a lock twice', (s) => { s['locks'].push(s['locks'][0]); }, /snapshot\.locks\[2\]: a second lock named "L"/],
        ['a file twice', (s) => { s['files'].push(s['files'][0]); }, /snapshot\.files\[2\]: a second file named "f"/],
        ['a waiter twice', (s) => { s['locks'][0][5].push(s['locks'][0][5][0]); }, /snapshot\.locks\[0\]\.waiters\[2\]: "b" waits twice/],
        ['a deadline seq twice', (s) => { s['deadlines'].push({ ...s['deadlines'][0], at: 1e9 }); }, /seq: \d+ twice/],
        ['deadlines out of heap order', (s) => {
          const d = s['deadlines'];
          [d[0], d[1]] = [d[1], d[0]];
        }, /snapshot\.deadlines\[\d+\]: the entries are not in heap order/],
        ['a lock whose owner is not the session that lists it', (s) => { s['sessions'].splice(0, 1); }, /not a valid lock state: invariant: lock L is owned by b, whose session does not list it/],
        ['a file whose size is wrong', (s) => { s['files'][0]['sizeBytes'] = 1; }, /not a valid lock state: invariant: file f has sizeBytes 1/],
        ['a session with no live deadline', (s) => { s['sessions'][1]['queuedAt'] = 123456; }, /not a valid lock state: invariant: session b has queuedAt 123456 but no such heap entry/],
      ];
      for (const [what, change, pattern] of spoil) {
        const spoilt = parsed();
        change(spoilt);
        expect(() => decodeSnapshot(JSON.stringify(spoilt)), what).to.throw(SnapshotError, pattern);
      }
    });
  });
});
