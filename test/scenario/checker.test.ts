// Hand-made histories, good and bad, for the scenario checker. Every "bad" history is a small edit
// of a good one that passes, so each test shows the checker telling the two apart.
import { expect } from 'chai';
import {
  checkAppends,
  checkLinearizable,
  checkMutualExclusion,
  checkTokensIncrease,
  holdIntervals,
} from '../../lib/scenario/checker';
import type { HistoryOp, OpKind } from '../../lib/scenario/history';
import { History } from '../../lib/scenario/history';

/** An op on lock L (file L). `result` is 'ok' or an error code; completed null = no answer. */
function op(client: string, kind: OpKind, invokedMs: number, completedMs: number | null, result = 'ok', extra: Partial<HistoryOp> = {}): HistoryOp {
  const answered = completedMs !== null;
  return {
    client, kind, lock: 'L', invokedMs, completedMs,
    ok: answered && result === 'ok',
    ...(answered && result !== 'ok' ? { code: result } : {}),
    ...(kind === 'append' || kind === 'read' ? { file: extra.lock ?? 'L' } : {}),
    ...extra,
  };
}

const A1 = 'c1#0@1\n';
const A2 = 'c2#0@2\n';

/** c1 takes L, appends, releases; c2 queued meanwhile gets it, appends, releases; c3 probes. */
function goodHistory(): HistoryOp[] {
  return [
    op('c1', 'acquire', 0, 5, 'ok', { token: 1 }),
    op('c1', 'append', 6, 8, 'ok', { token: 1, data: A1 }),
    op('c2', 'acquire', 3, 20, 'ok', { token: 2 }), // waits in the queue until c1 releases
    op('c1', 'release', 10, 12, 'ok', { token: 1 }),
    op('c3', 'preempt', 21, 24, 'lock_held'),
    op('c2', 'append', 21, 23, 'ok', { token: 2, data: A2 }),
    op('c3', 'check', 22, 25, 'ok', { owner: 'c2', token: 2 }),
    op('c3', 'read', 22, 26, 'ok', { data: A1 }), // concurrent with c2's append: may miss it
    op('c2', 'release', 26, 28, 'ok', { token: 2 }),
    op('c3', 'read', 29, 30, 'ok', { data: A1 + A2 }),
  ];
}
const goodFiles = (): Map<string, string> => new Map([['L', A1 + A2]]);

const lin = (ops: HistoryOp[], extra: { finalFiles?: Map<string, string>; anyGrantMayExpire?: boolean } = {}) =>
  checkLinearizable(ops, { budgetMs: 2000, ...extra });

/** Deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A long, correct, concurrent history: operations are generated in their linearization order
 * against a sequential lock, the k-th taking effect at 10k+5 ms; each is invoked up to 20 ms before
 * (acquires up to 200 ms: they wait in the queue) and answered up to 20 ms after, so neighbours
 * overlap. Some answers never arrive; some releases fail ambiguously after taking effect.
 */
function generated(n: number, seed: number, clients = 8): { ops: HistoryOp[]; files: Map<string, string> } {
  const rnd = prng(seed);
  const ops: HistoryOp[] = [];
  let owner: string | null = null;
  let token = 0;
  let last = 0;
  let content = '';
  for (let k = 0; k < n; k++) {
    const at = 10 * k + 5;
    const c = `c${Math.floor(rnd() * clients)}`;
    const r = rnd();
    let before = Math.floor(rnd() * 20);
    const after = Math.floor(rnd() * 20);
    const pending = rnd() < 0.01;
    const answered = (result = 'ok', extra: Partial<HistoryOp> = {}, kind: OpKind = 'check'): HistoryOp =>
      op(c, kind, at - before, pending ? null : at + after, result, extra);
    if (owner === null) {
      const kind: OpKind = r < 0.5 ? 'acquire' : 'preempt';
      if (kind === 'acquire') before = Math.floor(rnd() * 200);
      last += 1 + Math.floor(rnd() * 2);
      owner = c;
      token = last;
      ops.push(op(c, kind, at - before, at + after, 'ok', { token }));
    } else if (c === owner) {
      if (r < 0.6) {
        const data = `${c}#${k}@${token}\n`;
        content += data;
        ops.push(answered('ok', { token, data }, 'append'));
      } else {
        owner = null;
        ops.push(rnd() < 0.02 ? op(c, 'release', at - before, at + after, 'unavailable', { token }) : answered('ok', { token }, 'release'));
      }
    } else if (r < 0.3) {
      ops.push(op(c, 'preempt', at - before, at + after, 'lock_held'));
    } else if (r < 0.55) {
      ops.push(answered('ok', { owner, token }, 'check'));
    } else if (r < 0.8) {
      ops.push(answered('ok', { data: content }, 'read'));
    } else {
      ops.push(op(c, 'append', at - before, at + after, 'not_owner', { token: token - 1, data: `${c}#${k}@x\n` }));
    }
  }
  return { ops, files: new Map([['L', content]]) };
}

/**
 * A history like the fifo-contention scenario's, from a simulated correct server: clients loop
 * acquire (queued FIFO at the server) -> append -> hold -> release -> think, with random network
 * delays both ways, so acquires stay in flight across several handoffs.
 */
function fifoHistory(clients: number, iterations: number, seed: number): { ops: HistoryOp[]; files: Map<string, string> } {
  const rnd = prng(seed);
  const ms = (max: number): number => Math.round(rnd() * max * 100) / 100;
  const events: { at: number; seq: number; run: () => void }[] = [];
  let now = 0;
  let seq = 0;
  const after = (delayMs: number, run: () => void): void => {
    events.push({ at: now + delayMs, seq: seq++, run });
  };
  const ops: HistoryOp[] = [];
  let owner: string | null = null;
  let token = 0;
  let content = '';
  const queue: ((token: number) => void)[] = [];
  const loop = (client: string, i: number): void => {
    if (i >= iterations) return;
    const acquire = op(client, 'acquire', now, null);
    ops.push(acquire);
    const granted = (t: number): void => {
      owner = client;
      after(ms(1.5), () => {
        Object.assign(acquire, { completedMs: now, ok: true, token: t });
        const data = `${client}#${i}@${t}\n`;
        const append = op(client, 'append', now, null, 'ok', { token: t, data });
        ops.push(append);
        after(ms(1.5), () => {
          if (owner === client) content += data;
          after(ms(1.5), () => {
            Object.assign(append, { completedMs: now, ok: true });
            after(ms(3), () => {
              const release = op(client, 'release', now, null, 'ok', { token: t });
              ops.push(release);
              after(ms(1.5), () => {
                owner = null;
                const next = queue.shift();
                if (next !== undefined) next(++token);
                after(ms(1.5), () => {
                  Object.assign(release, { completedMs: now, ok: true });
                  after(ms(2), () => loop(client, i + 1));
                });
              });
            });
          });
        });
      });
    };
    after(ms(1.5), () => {
      if (owner === null && queue.length === 0) granted(++token);
      else queue.push(granted);
    });
  };
  for (let c = 0; c < clients; c++) after(ms(1), () => loop(`c${c}`, 0));
  while (events.length > 0) {
    events.sort((a, b) => a.at - b.at || a.seq - b.seq);
    const next = events.shift() as (typeof events)[number];
    now = next.at;
    next.run();
  }
  return { ops, files: new Map([['L', content]]) };
}

describe('scenario checker', () => {
  describe('the good history', () => {
    it('passes every check', () => {
      const ops = goodHistory();
      expect(checkMutualExclusion(ops, 100).ok).to.equal(true);
      expect(checkTokensIncrease(ops, 100).ok).to.equal(true);
      expect(checkAppends(ops, goodFiles()).ok).to.equal(true);
      const result = lin(ops, { finalFiles: goodFiles() });
      expect(result.verdict, result.detail).to.equal('ok');
      expect(result.ok).to.equal(true);
    });
  });

  describe('mutual exclusion', () => {
    it('catches a planted overlap: c2 is granted the lock before c1 released it', () => {
      const ops = goodHistory();
      ops[2] = op('c2', 'acquire', 3, 8, 'ok', { token: 2 });
      const result = checkMutualExclusion(ops, 100);
      expect(result.ok).to.equal(false);
      expect(result.detail).to.match(/L: c1 \(token 1\).*c2 \(token 2\)/);
      expect(lin(ops).verdict).to.equal('violation');
    });

    // A lost event says the grant ended at some point before the client heard of it: the
    // certain hold is only up to its last proven use (a silent holder's session expires, the
    // lock is granted on, and only then does the old holder hear `lost`).
    it('ends a lost hold at its last proven use, so a grant to someone else before lostMs is no overlap', () => {
      const ops = [
        op('c1', 'preempt', 0, 2, 'ok', { token: 1, lost: true, lostMs: 50, lostReason: 'session_expired' }),
        op('c1', 'append', 10, 12, 'ok', { token: 1, data: 'a\n', file: 'L' }),
        op('c2', 'preempt', 40, 42, 'ok', { token: 2 }),
        op('c2', 'release', 70, 72, 'ok', { token: 2 }),
      ];
      expect(checkMutualExclusion(ops, 100).ok).to.equal(true);
      expect(holdIntervals(ops, 100)[0]).to.include({ client: 'c1', toMs: 10 });
      const unmarked = ops.map((o) => ({ ...o, lost: undefined, lostMs: undefined }));
      expect(checkMutualExclusion(unmarked, 100).ok).to.equal(false);
    });

    it('checks the hold of a new grant the same client got after losing the old one', () => {
      // c1 lost token 1 (at 50); c2 got token 2 at 62; c1 got token 3 at 75 while c2 still held it.
      const ops = [
        op('c1', 'preempt', 0, 5, 'ok', { token: 1, lost: true, lostMs: 50, lostReason: 'session_expired' }),
        op('c2', 'preempt', 60, 62, 'ok', { token: 2 }),
        op('c1', 'preempt', 70, 75, 'ok', { token: 3 }),
        op('c2', 'release', 100, 105, 'ok', { token: 2 }),
        op('c1', 'release', 110, 115, 'ok', { token: 3 }),
      ];
      expect(checkMutualExclusion(ops, 200).ok).to.equal(false);
      // The same, with c1's second grant after c2's release: fine.
      ops[2] = op('c1', 'preempt', 106, 108, 'ok', { token: 3 });
      expect(checkMutualExclusion(ops, 200).ok).to.equal(true);
    });
  });

  describe('tokens', () => {
    it('catches a token going backwards between clients', () => {
      const ops = goodHistory();
      expect(checkTokensIncrease(ops, 100).ok).to.equal(true);
      ops.push(op('c4', 'preempt', 40, 41, 'ok', { token: 1, lock: 'L' }));
      const result = checkTokensIncrease(ops, 100);
      expect(result.ok).to.equal(false);
      expect(lin(ops).verdict).to.equal('violation');
    });

    it('catches a token going backwards for the same client', () => {
      const ops = [
        op('c1', 'preempt', 0, 1, 'ok', { token: 5 }),
        op('c1', 'release', 2, 3, 'ok', { token: 5 }),
        op('c1', 'preempt', 4, 5, 'ok', { token: 3 }),
      ];
      expect(checkTokensIncrease(ops, 10).ok).to.equal(false);
      expect(lin(ops).verdict).to.equal('violation');
      ops[2] = op('c1', 'preempt', 4, 5, 'ok', { token: 6 });
      expect(checkTokensIncrease(ops, 10).ok).to.equal(true);
      expect(lin(ops).verdict).to.equal('ok');
    });

    it('allows a re-take with the same token, but not after a release', () => {
      const ops = [
        op('c1', 'preempt', 0, 1, 'ok', { token: 5 }),
        op('c1', 'acquire', 2, 3, 'ok', { token: 5 }),
      ];
      expect(checkTokensIncrease(ops, 10).ok).to.equal(true);
      expect(lin(ops).verdict).to.equal('ok');
      ops.splice(1, 0, op('c1', 'release', 1.5, 1.8, 'ok', { token: 5 }));
      expect(checkTokensIncrease(ops, 10).ok).to.equal(false);
      expect(lin(ops).verdict).to.equal('violation');
    });

    it('catches one token granted to two clients', () => {
      const ops = [op('c1', 'preempt', 0, 10, 'ok', { token: 5 }), op('c2', 'preempt', 1, 9, 'ok', { token: 5 })];
      expect(checkTokensIncrease(ops, 10).ok).to.equal(false);
    });
  });

  describe('appends', () => {
    it('catches a lost append (acknowledged, missing from the file)', () => {
      const result = checkAppends(goodHistory(), new Map([['L', A2]]));
      expect(result.ok).to.equal(false);
      expect(result.detail).to.contain('missing');
      expect(lin(goodHistory(), { finalFiles: new Map([['L', A2]]) }).verdict).to.equal('violation');
    });

    it('catches an append written twice', () => {
      const result = checkAppends(goodHistory(), new Map([['L', A1 + A2 + A1]]));
      expect(result.ok).to.equal(false);
      expect(result.detail).to.contain('written twice');
      expect(lin(goodHistory(), { finalFiles: new Map([['L', A1 + A2 + A1]]) }).verdict).to.equal('violation');
    });

    it('catches appends out of token order', () => {
      const result = checkAppends(goodHistory(), new Map([['L', A2 + A1]]));
      expect(result.ok).to.equal(false);
      expect(result.detail).to.contain('token 1');
      expect(lin(goodHistory(), { finalFiles: new Map([['L', A2 + A1]]) }).verdict).to.equal('violation');
    });

    it('catches appends of one grant out of real-time order', () => {
      const B = 'c1#1@1\n';
      const ops = [
        op('c1', 'preempt', 0, 1, 'ok', { token: 1 }),
        op('c1', 'append', 2, 3, 'ok', { token: 1, data: A1 }),
        op('c1', 'append', 4, 5, 'ok', { token: 1, data: B }),
      ];
      expect(checkAppends(ops, new Map([['L', A1 + B]])).ok).to.equal(true);
      expect(checkAppends(ops, new Map([['L', B + A1]])).ok).to.equal(false);
    });

    it('catches an append the server refused that was written anyway', () => {
      const ops = [...goodHistory(), op('c4', 'append', 30, 31, 'stale_token', { token: 1, data: 'c4#0@1\n' })];
      expect(checkAppends(ops, goodFiles()).ok).to.equal(true);
      expect(checkAppends(ops, new Map([['L', A1 + A2 + 'c4#0@1\n']])).ok).to.equal(false);
      expect(lin(ops, { finalFiles: new Map([['L', A1 + A2 + 'c4#0@1\n']]) }).verdict).to.equal('violation');
    });

    it('matches whole lines: "c1#0@1\\n" is not found inside "xc1#0@1\\n"', () => {
      const ops = [op('c1', 'preempt', 0, 1, 'ok', { token: 1 }), op('c1', 'append', 2, 3, 'ok', { token: 1, data: A1 })];
      expect(checkAppends(ops, new Map([['L', A1]])).ok).to.equal(true);
      expect(checkAppends(ops, new Map([['L', `x${A1}`]])).ok).to.equal(false);
    });
  });

  describe('linearizability', () => {
    it('catches a check that returns an owner who was never granted', () => {
      const ops = goodHistory();
      ops[6] = op('c3', 'check', 22, 25, 'ok', { owner: 'ghost', token: 2 });
      const result = lin(ops);
      expect(result.verdict).to.equal('violation');
      expect(result.ok).to.equal(false);
      expect(result.window?.lock).to.equal('L');
      expect(result.window?.ops).to.include(6);
      // The other checks cannot see it.
      expect(checkMutualExclusion(ops, 100).ok).to.equal(true);
    });

    it('catches a check that returns the right owner with the wrong token', () => {
      const ops = goodHistory();
      ops[6] = op('c3', 'check', 22, 25, 'ok', { owner: 'c2', token: 1 });
      expect(lin(ops).verdict).to.equal('violation');
    });

    it('catches a preempt that succeeds while another client holds an acknowledged grant', () => {
      const ops = [
        op('c1', 'acquire', 0, 5, 'ok', { token: 1 }),
        op('c2', 'preempt', 10, 12, 'ok', { token: 2 }),
      ];
      const result = lin(ops);
      expect(result.verdict).to.equal('violation');
      expect(result.window?.ops).to.deep.equal([0, 1]);
      expect(result.window?.core).to.deep.equal([0, 1]);
      expect(result.detail).to.match(/^L: not linearizable; failing window 0\.0 ms \.\. 12\.0 ms/);
      // With c1's release first, fine; with the release concurrent with the preempt, fine too.
      expect(lin([ops[0] as HistoryOp, op('c1', 'release', 6, 8, 'ok', { token: 1 }), ops[1] as HistoryOp]).verdict).to.equal('ok');
      expect(lin([ops[0] as HistoryOp, op('c1', 'release', 11, 13, 'ok', { token: 1 }), ops[1] as HistoryOp]).verdict).to.equal('ok');
    });

    it('catches a read that misses an append acknowledged before the read was invoked', () => {
      const ops = goodHistory();
      ops[9] = op('c3', 'read', 29, 30, 'ok', { data: A1 }); // A2 was acknowledged at 23
      const result = lin(ops);
      expect(result.verdict).to.equal('violation');
      expect(result.window?.ops).to.include(9);
      // The core: the acknowledged append and the read that missed it (the grants around them
      // may or may not have happened; the append alone proves c2 held the lock).
      expect(result.window?.core).to.deep.equal([5, 9]);
      // A read concurrent with the append may miss it (op 7 in goodHistory does).
      ops[9] = op('c3', 'read', 22.5, 30, 'ok', { data: A1 });
      expect(lin(ops).verdict).to.equal('ok');
    });

    it('catches a lock_held answer while the lock was free', () => {
      const ops = [op('c1', 'preempt', 0, 1, 'ok', { token: 1 }), op('c1', 'release', 2, 3, 'ok', { token: 1 }), op('c2', 'preempt', 4, 5, 'lock_held')];
      expect(lin(ops).verdict).to.equal('violation');
      ops[2] = op('c2', 'preempt', 2.5, 5, 'lock_held'); // concurrent with the release: fine
      expect(lin(ops).verdict).to.equal('ok');
    });

    it('catches a release refused with not_owner while the caller held the lock', () => {
      const ops = [op('c1', 'preempt', 0, 1, 'ok', { token: 1 }), op('c1', 'release', 2, 3, 'not_owner', { token: 1 })];
      expect(lin(ops).verdict).to.equal('violation');
      ops[1] = op('c2', 'release', 2, 3, 'not_owner');
      expect(lin(ops).verdict).to.equal('ok');
    });

    it('catches a re-take that answers a different token while the lock is still held', () => {
      const ops = [op('c1', 'preempt', 0, 1, 'ok', { token: 5 }), op('c1', 'acquire', 2, 3, 'ok', { token: 6 })];
      expect(checkTokensIncrease(ops, 10).ok).to.equal(true); // only the linearizability check sees it
      expect(lin(ops).verdict).to.equal('violation');
      ops[1] = op('c1', 'acquire', 2, 3, 'ok', { token: 5 });
      expect(lin(ops).verdict).to.equal('ok');
    });

    it('catches a release answered ok to a client that did not hold the lock', () => {
      const ops = [op('c1', 'preempt', 0, 1, 'ok', { token: 5 }), op('c2', 'release', 2, 3, 'ok')];
      expect(lin(ops).verdict).to.equal('violation');
      ops[1] = op('c1', 'release', 2, 3, 'ok');
      expect(lin(ops).verdict).to.equal('ok');
    });

    it('catches an append accepted from a client that did not hold the lock, and a refused one that held it', () => {
      const ops = [op('c1', 'preempt', 0, 1, 'ok', { token: 5 }), op('c2', 'append', 2, 3, 'ok', { token: 5, data: 'x\n' })];
      expect(lin(ops).verdict).to.equal('violation');
      ops[1] = op('c1', 'append', 2, 3, 'ok', { token: 5, data: 'x\n' });
      expect(lin(ops).verdict).to.equal('ok');
      ops[1] = op('c1', 'append', 2, 3, 'stale_token', { token: 5, data: 'x\n' });
      expect(lin(ops).verdict).to.equal('violation');
      ops[1] = op('c1', 'append', 2, 3, 'stale_token', { token: 4, data: 'x\n' });
      expect(lin(ops).verdict).to.equal('ok');
    });

    it('treats unanswered operations as optional, at any point after their invocation', () => {
      const ops = [
        op('c1', 'acquire', 0, null), // never answered: may have been granted
        op('c2', 'preempt', 10, 12, 'lock_held'), // so the lock may have been held by c1
        op('c2', 'preempt', 20, 22, 'ok', { token: 5 }), // and c1's session may have ended since
        op('c2', 'append', 23, null, 'ok', { token: 5, data: 'x\n' }), // may or may not be applied
        op('c3', 'read', 30, 31, 'ok', { data: 'x\n' }),
        op('c3', 'read', 24, 35, 'ok', { data: 'x\n' }),
      ];
      expect(lin(ops).verdict).to.equal('ok');
      // An unanswered append may also never have taken effect.
      const never = [
        op('c1', 'preempt', 0, 1, 'ok', { token: 1 }),
        op('c1', 'append', 2, null, 'ok', { token: 1, data: 'y\n' }),
        op('c1', 'release', 3, 4, 'ok', { token: 1 }),
        op('c2', 'preempt', 5, 6, 'ok', { token: 2 }),
      ];
      expect(lin(never, { finalFiles: new Map([['L', '']]) }).verdict).to.equal('ok');
      expect(lin(never, { finalFiles: new Map([['L', 'y\n']]) }).verdict).to.equal('ok');
      expect(lin(never, { finalFiles: new Map([['L', 'z\n']]) }).verdict).to.equal('violation');
      // Without c1's acquire, nothing explains the lock_held.
      expect(lin(ops.slice(1)).verdict).to.equal('violation');
      // An acquire answered `timeout` may have been granted too (LockClient's own watchdog, or an
      // abort, reports `timeout` and then releases a late grant quietly).
      ops[0] = op('c1', 'acquire', 0, 5, 'timeout');
      expect(lin(ops).verdict).to.equal('ok');
    });

    it('gives a grant with an unknown answer one of the tokens the client later uses', () => {
      const ops = [
        op('c1', 'acquire', 0, 5, 'unavailable'),
        op('c1', 'append', 6, 8, 'ok', { token: 7, data: 'a\n' }),
        op('c1', 'release', 9, 10, 'ok', { token: 7 }),
        op('c2', 'acquire', 11, 12, 'ok', { token: 8 }),
      ];
      expect(lin(ops).verdict).to.equal('ok');
      ops[3] = op('c2', 'acquire', 11, 12, 'ok', { token: 3 }); // smaller than c1's 7: backwards
      expect(lin(ops).verdict).to.equal('violation');
    });

    it('accepts good concurrent histories with overlapping invocations and pending operations', () => {
      const ops = [
        op('c1', 'acquire', 0, 10, 'ok', { token: 3 }),
        op('c2', 'acquire', 1, 30, 'ok', { token: 4 }),
        op('c3', 'acquire', 2, 50, 'ok', { token: 6 }),
        op('c4', 'check', 5, 9, 'ok', { owner: null }), // before c1's grant took effect
        op('c1', 'append', 11, 14, 'ok', { token: 3, data: 'a\n' }),
        op('c4', 'check', 12, 13, 'ok', { owner: 'c1', token: 3 }),
        op('c1', 'release', 15, 25, 'ok', { token: 3 }),
        op('c4', 'read', 16, 40, 'ok', { data: 'a\nb\n' }),
        op('c2', 'append', 31, 33, 'ok', { token: 4, data: 'b\n' }),
        op('c2', 'release', 34, null, 'ok', { token: 4 }), // pending: c3's grant shows it happened
        op('c5', 'preempt', 35, 36, 'lock_held'),
        op('c3', 'append', 51, 52, 'ok', { token: 6, data: 'c\n' }),
        op('c4', 'check', 53, 54, 'ok', { owner: 'c3', token: 6 }),
      ];
      const result = lin(ops, { finalFiles: new Map([['L', 'a\nb\nc\n']]) });
      expect(result.verdict, result.detail).to.equal('ok');
      // Swap the order the queue granted in (tokens say c2 before c3): c3's grant at 50 would
      // have to precede c2's, but c3's token is larger — and the final file would disagree.
      const swapped = lin(ops, { finalFiles: new Map([['L', 'a\nc\nb\n']]) });
      expect(swapped.verdict).to.equal('violation');
      expect(swapped.window?.toMs).to.equal(Infinity);
    });

    it('models expiry: a grant lost on the server ends before lostMs', () => {
      const ops = [
        op('c1', 'preempt', 0, 2, 'ok', { token: 1, lost: true, lostMs: 50, lostReason: 'session_expired' }),
        op('c2', 'preempt', 60, 62, 'ok', { token: 2 }),
        op('c1', 'release', 70, 72, 'ok', { token: 1 }), // LockClient swallows the not_owner
      ];
      expect(lin(ops).verdict).to.equal('ok');
      const unmarked = ops.map((o) => ({ ...o, lost: undefined, lostMs: undefined, lostReason: undefined }));
      expect(lin(unmarked).verdict).to.equal('violation');
      expect(lin(unmarked, { anyGrantMayExpire: true }).verdict).to.equal('ok');
      // The server said the grant was gone at 50, yet took an append with it at 55.
      const late = [ops[0] as HistoryOp, op('c1', 'append', 55, 56, 'ok', { token: 1, data: 'late\n' })];
      expect(lin(late).verdict).to.equal('violation');
      // Lost on the client's own clock only: the server may still have held it then.
      late[0] = { ...(late[0] as HistoryOp), lostReason: 'keepalive_overdue' };
      expect(lin(late).verdict).to.equal('ok');
    });

    it('checks locks independently and names the one that fails', () => {
      const ops: HistoryOp[] = [];
      for (const lock of ['A', 'B']) {
        ops.push(op('c1', 'preempt', 0, 1, 'ok', { lock, token: 1 }));
        ops.push(op('c2', 'preempt', 2, 3, 'lock_held', { lock }));
        ops.push(op('c1', 'release', 4, 5, 'ok', { lock, token: 1 }));
        ops.push(op('c2', 'preempt', 6, 7, 'ok', { lock, token: 2 }));
      }
      const good = lin(ops);
      expect(good.verdict).to.equal('ok');
      expect(good.locks.map((l) => l.lock).sort()).to.deep.equal(['A', 'B']);
      ops[5] = op('c2', 'preempt', 2, 3, 'ok', { lock: 'B', token: 2 }); // B: granted while c1 held it
      const bad = lin(ops);
      expect(bad.verdict).to.equal('violation');
      expect(bad.window?.lock).to.equal('B');
      expect(bad.locks.find((l) => l.lock === 'A')?.verdict).to.equal('ok');
    });

    it('checks locks that append to one file together', () => {
      const ops = [
        op('c1', 'preempt', 0, 1, 'ok', { lock: 'A', token: 1 }),
        op('c2', 'preempt', 0, 1, 'ok', { lock: 'B', token: 1 }),
        op('c1', 'append', 2, 3, 'ok', { lock: 'A', file: 'F', token: 1, data: 'a\n' }),
        op('c2', 'append', 4, 5, 'ok', { lock: 'B', file: 'F', token: 1, data: 'b\n' }),
        op('c3', 'read', 6, 7, 'ok', { lock: 'F', file: 'F', data: 'a\nb\n' }),
      ];
      const result = lin(ops, { finalFiles: new Map([['F', 'a\nb\n']]) });
      expect(result.verdict, result.detail).to.equal('ok');
      expect(result.locks.map((l) => l.lock)).to.deep.equal(['A,B']);
      expect(lin(ops, { finalFiles: new Map([['F', 'b\na\n']]) }).verdict).to.equal('violation');
    });

    it('passes a FIFO-contention history (8 clients queued on one lock) and catches a planted overlap in it', function () {
      this.timeout(20000);
      const { ops, files } = fifoHistory(8, 100, 3);
      expect(ops.length).to.equal(2400);
      const waiting = ops.filter((o) => o.kind === 'acquire' && (o.completedMs as number) - o.invokedMs > 10).length;
      expect(waiting).to.be.above(100); // acquires really wait across several handoffs
      const started = performance.now();
      const good = checkLinearizable(ops, { budgetMs: 2000, finalFiles: files });
      expect(good.verdict, good.detail).to.equal('ok');
      expect(performance.now() - started).to.be.below(2000);
      expect(checkMutualExclusion(ops, 1e9).ok).to.equal(true);
      expect(checkAppends(ops, files).ok).to.equal(true);
      // Delay one release (token 150's) until after the next grant was answered.
      const release = ops.find((o) => o.kind === 'release' && o.token === 150) as HistoryOp;
      const next = ops.find((o) => o.kind === 'acquire' && o.token === 151) as HistoryOp;
      Object.assign(release, { invokedMs: (next.completedMs as number) + 0.5, completedMs: (next.completedMs as number) + 1 });
      expect(checkMutualExclusion(ops, 1e9).ok).to.equal(false);
      const bad = checkLinearizable(ops, { budgetMs: 10000, finalFiles: files });
      expect(bad.verdict).to.equal('violation');
      // The window ends when the grant of 151 was answered (c2 had not asked to release 150 yet)
      // and is short, although acquires are in flight at every moment of this history.
      expect(bad.window?.toMs).to.equal(next.completedMs);
      expect(bad.window?.ops.length).to.be.below(40);
      expect(bad.window?.core).to.include(ops.indexOf(next));
    });

    it('passes a long correct concurrent history well within the budget', function () {
      this.timeout(10000);
      const { ops, files } = generated(3000, 7);
      const started = performance.now();
      const result = checkLinearizable(ops, { budgetMs: 2000, finalFiles: files });
      const took = performance.now() - started;
      expect(result.verdict, result.detail).to.equal('ok');
      expect(took).to.be.below(2000);
      expect(checkMutualExclusion(ops, 40000).ok).to.equal(true);
      expect(checkTokensIncrease(ops, 40000).ok).to.equal(true);
      expect(checkAppends(ops, files).ok).to.equal(true);
    });

    it('finds a violation late in a long history and shrinks the window around it', function () {
      this.timeout(20000);
      const { ops } = generated(3000, 11);
      const idx = ops.findIndex((o, i) => i > 2000 && o.kind === 'check' && o.completedMs !== null);
      ops[idx] = { ...(ops[idx] as HistoryOp), owner: 'ghost' };
      const result = checkLinearizable(ops, { budgetMs: 10000 });
      expect(result.verdict, result.detail).to.equal('violation');
      expect(result.window?.ops).to.include(idx);
      expect(result.window?.core).to.include(idx);
      expect(result.window?.ops.length).to.be.below(30);
      expect(result.window?.fromMs).to.be.above(10000);
    });

    it('answers unknown, not ok, when the budget runs out', () => {
      const { ops } = generated(3000, 7);
      const result = checkLinearizable(ops, { budgetMs: 1 });
      expect(result.verdict).to.equal('unknown');
      expect(result.detail).to.contain('budget');
      expect(checkLinearizable(ops, { budgetMs: 2000 }).verdict).to.equal('ok');
    });

    it('answers unknown when a hard violation cannot be decided in time', () => {
      // Twelve clients' preempts all overlap, each lock_held, with no grant anywhere: no
      // linearization, but proving it takes exploring every subset of them.
      const ops: HistoryOp[] = [op('c0', 'preempt', 0, 1, 'ok', { token: 1 })];
      for (let i = 1; i <= 22; i++) ops.push(op(`c${i}`, 'preempt', 2, 100, 'lock_held'));
      ops.push(op('c0', 'release', 2, 100, 'ok', { token: 1 }));
      ops.push(op('c0', 'check', 2, 100, 'ok', { owner: 'nobody-ever' }));
      expect(checkLinearizable(ops, { budgetMs: 5 }).verdict).to.equal('unknown');
    });
  });

  describe('History', () => {
    it('records check owners and lost grants', () => {
      let now = 100;
      const history = new History(() => now);
      const grant = history.invoke('c1', 'preempt', 'L');
      now = 105;
      history.complete(grant, { ok: true, token: 3 });
      const check = history.invoke('c2', 'check', 'L');
      history.complete(check, { ok: true, owner: 'c1', token: 3 });
      now = 120;
      history.markLost(grant, 'lease_expired');
      now = 130;
      history.markLost(grant, 'session_expired');
      expect(grant).to.include({ ok: true, token: 3, lost: true, lostMs: 20, lostReason: 'lease_expired' });
      expect(check).to.include({ owner: 'c1', token: 3 });
    });
  });
});
