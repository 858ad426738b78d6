// End to end: a 3-node cluster of real processes over real sockets (PROTOCOL §4 Followers,
// Durability; §1 SIGKILL loses nothing acknowledged). Leaders are killed (-9), paused (SIGSTOP),
// restarted; every acknowledged lock, token and append must survive, and no request may succeed
// without a quorum.
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import { LockClient } from '../../lib/index';
import { startCluster, type Cluster, type NodeStatus } from '../../lib/scenario/cluster';
import { connectRaw, sleep, type Message, type RawClient } from '../helpers/raw-client';

/** Sessions must not expire on their own during a test (raw clients send no keepalives). */
const sessionTtlMs = 30000;

/** A 3-node cluster in a fresh temporary directory, once a leader is agreed. No test here cuts
 *  a link, so peer links are not proxied. */
async function startTestCluster(): Promise<{ cluster: Cluster; dataRoot: string }> {
  // A node that did not start in time (a loaded machine) gets one more try, in a fresh directory.
  for (let attempt = 1; ; attempt++) {
    const dataRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'latchkey-cluster-'));
    let cluster: Cluster | undefined;
    try {
      cluster = await startCluster({
        nodes: 3,
        dataRoot,
        proxied: false,
        args: ['--heartbeat-ms', '50', '--election-timeout-ms', '300', '--session-ttl-ms', String(sessionTtlMs)],
        startTimeoutMs: 30000,
      });
      await cluster.leader();
      return { cluster, dataRoot };
    } catch (err) {
      await cluster?.stop();
      await fs.rm(dataRoot, { recursive: true, force: true });
      if ((err as { startTimedOut?: boolean }).startTimedOut !== true || attempt >= 2) throw err;
    }
  }
}

describe('e2e: 3-node cluster of real processes', function () {
  this.timeout(60000);
  let cluster: Cluster;
  /** The data directory of `cluster`, while it still exists. */
  let dataRoot: string | undefined;
  const raws: RawClient[] = [];
  const lockClients: LockClient[] = [];

  beforeEach(async () => {
    ({ cluster, dataRoot } = await startTestCluster());
  });

  afterEach(async function () {
    for (const c of raws.splice(0)) c.close();
    // close() sends bye; never wait long for it (the cluster may be down).
    await Promise.all(lockClients.splice(0).map((c) => Promise.race([c.close(), sleep(2000)])));
    if (dataRoot === undefined) return; // the start failed (and cleaned up after itself)
    if (this.currentTest?.state === 'failed') {
      process.stderr.write(`\n---- node logs of failed test "${this.currentTest.title}" ----\n${cluster.logTails(25)}\n`
        + `---- cluster events ----\n${cluster.events.map((e) => `${e.atMs} ms ${e.kind} ${e.detail}`).join('\n')}\n`);
    }
    try {
      await cluster.stop();
    } finally {
      await fs.rm(dataRoot, { recursive: true, force: true });
      dataRoot = undefined;
    }
  });

  // ---------------------------------------------------------------- helpers

  async function connect(id: string): Promise<RawClient> {
    const c = await connectRaw(cluster.node(id).port);
    raws.push(c);
    return c;
  }

  /** Ids of the nodes other than `ids`. */
  function others(...ids: string[]): string[] {
    return cluster.ids.filter((id) => !ids.includes(id));
  }

  /** HOST:PORT of the given nodes, in that order, for LockClient. */
  function serversOf(ids: string[]): string[] {
    return ids.map((id) => `127.0.0.1:${cluster.node(id).port}`);
  }

  /** `status` of one node, or null if it does not answer in time (down, paused, busy). */
  function statusOf(id: string, timeoutMs: number): Promise<NodeStatus | null> {
    return cluster.status(id, timeoutMs).catch(() => null);
  }

  function lockClient(servers: string[], requestTimeoutMs = 10000): LockClient {
    const c = new LockClient({ servers, requestTimeoutMs, connectTimeoutMs: 1000 });
    lockClients.push(c);
    return c;
  }

  async function ok(c: RawClient, req: Record<string, unknown>, timeoutMs = 10000): Promise<Message> {
    const a = await c.request(req, timeoutMs);
    expect(a['ok'], `${JSON.stringify(req)} -> ${JSON.stringify(a)}`).to.equal(true);
    return a;
  }

  /** Sends `req` until the answer is something other than `unavailable` (a leader change is
   *  going on); state-changing requests carry one request_id across tries. */
  async function settled(c: RawClient, req: Record<string, unknown>, timeoutMs = 20000): Promise<Message> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const a = await c.request(req, Math.max(1000, until - Date.now()));
      const code = a['ok'] === false ? (a['error'] as { code: string }).code : null;
      if (code !== 'unavailable' || Date.now() > until) return a;
      await sleep(100);
    }
  }

  async function settledOk(c: RawClient, req: Record<string, unknown>, timeoutMs = 20000): Promise<Message> {
    const a = await settled(c, req, timeoutMs);
    expect(a['ok'], `${JSON.stringify(req)} -> ${JSON.stringify(a)}`).to.equal(true);
    return a;
  }

  function withRid(req: Record<string, unknown>): Record<string, unknown> {
    return { ...req, request_id: randomUUID() };
  }

  /** owner and token of a check answer. */
  function lockView(a: Message): { owner: unknown; token: unknown } {
    return { owner: a['owner'], token: a['token'] };
  }

  function codeOf(a: Message): string | null {
    return a['ok'] === false ? (a['error'] as { code: string }).code : null;
  }

  /** Tracks whether a promise settled yet. */
  function track<T>(p: Promise<T>): { promise: Promise<T>; done: () => boolean } {
    let settledFlag = false;
    p.then(() => { settledFlag = true; }, () => { settledFlag = true; });
    return { promise: p, done: () => settledFlag };
  }

  async function waitUntil<T>(what: string, probe: () => Promise<T>, good: (v: T) => boolean, timeoutMs = 20000, stepMs = 100): Promise<T> {
    const until = Date.now() + timeoutMs;
    let last = await probe();
    while (!good(last)) {
      if (Date.now() > until) throw new Error(`${what}: not within ${timeoutMs} ms; last ${JSON.stringify(last)}`);
      await sleep(stepMs);
      last = await probe();
    }
    return last;
  }

  interface Seeded {
    leader: string;
    term: number;
    /** lock -> {owner, token} as acknowledged */
    locks: Map<string, { owner: string; token: number }>;
    /** file -> full expected contents */
    files: Map<string, string>;
    /** a lock granted then released before the failure, with its token */
    released: { lock: string; token: number };
    maxToken: number;
    clients: { a: string; b: string; c: string };
    conns: Map<string, RawClient>;
    resumeA: string;
  }

  /** Locks and appends through every node: A on follower 1, B on follower 2, C on the leader. */
  async function seed(prefix: string): Promise<Seeded> {
    const { id: leader, term } = await cluster.leader();
    const [f1, f2] = others(leader) as [string, string];
    const a = randomUUID();
    const b = randomUUID();
    const c = randomUUID();
    const ca = await connect(f1);
    const cb = await connect(f2);
    const cc = await connect(leader);
    const resumeA = (await ok(ca, { action: 'hello', client_id: a }))['resume_token'] as string;
    const locks = new Map<string, { owner: string; token: number }>();
    const files = new Map<string, string>();
    let maxToken = 0;
    const grant = async (conn: RawClient, client: string, lock: string): Promise<number> => {
      const g = await ok(conn, withRid({ action: 'preempt', lock_name: lock, client_id: client }));
      const token = g['token'] as number;
      expect(token, `token of ${lock}`).to.be.greaterThan(maxToken);
      maxToken = token;
      locks.set(lock, { owner: client, token });
      return token;
    };
    const append = async (conn: RawClient, client: string, lock: string, data: string): Promise<void> => {
      const { token } = locks.get(lock) as { token: number };
      const before = files.get(lock) ?? '';
      const r = await ok(conn, withRid({ action: 'append', file: lock, data, lock_name: lock, token, client_id: client }));
      files.set(lock, before + data);
      expect(r['size']).to.equal(Buffer.byteLength(before + data));
    };
    await grant(ca, a, `${prefix}/a`);
    await grant(cb, b, `${prefix}/b`);
    await grant(cc, c, `${prefix}/c`);
    for (let i = 0; i < 3; i++) {
      await append(ca, a, `${prefix}/a`, `a${i};`);
      await append(cb, b, `${prefix}/b`, `b${i}→ü;`);
      await append(cc, c, `${prefix}/c`, `c${i};`);
    }
    const relToken = await grant(cc, c, `${prefix}/released`);
    await ok(cc, withRid({ action: 'release', lock_name: `${prefix}/released`, client_id: c, token: relToken }));
    locks.delete(`${prefix}/released`);
    return {
      leader, term, locks, files, released: { lock: `${prefix}/released`, token: relToken }, maxToken,
      clients: { a, b, c }, conns: new Map([['a', ca], ['b', cb], ['c', cc]]), resumeA,
    };
  }

  /** Every acknowledged lock and file, read linearizably through `node`. */
  async function expectIntact(node: string, s: Seeded): Promise<void> {
    const conn = await connect(node);
    for (const [lock, held] of s.locks) {
      const a = await settledOk(conn, { action: 'check', lock_name: lock });
      expect(lockView(a), `${lock} through ${node}`).to.deep.equal(held);
    }
    const free = await settledOk(conn, { action: 'check', lock_name: s.released.lock });
    expect(free['owner'], `${s.released.lock} through ${node}`).to.equal(null);
    for (const [file, data] of s.files) {
      const r = await settledOk(conn, { action: 'read', file });
      expect(r['data'], `${file} through ${node}`).to.equal(data);
    }
  }

  // ---------------------------------------------------------------- tests

  it('serves every request through followers: preempt, linearizable check, blocking acquire, append/read, stale_ok', async () => {
    const { id: leader } = await cluster.leader();
    const [f1, f2] = others(leader) as [string, string];
    const A = randomUUID();
    const B = randomUUID();
    const H = randomUUID();
    const W = randomUUID();
    const onF1 = await connect(f1);
    const onF2 = await connect(f2);
    const onLeader = await connect(leader);

    // preempt via follower 1; a linearizable check via follower 2 sees the owner at once
    const g = await ok(onF1, withRid({ action: 'preempt', lock_name: 'fw/a', client_id: A }));
    expect(g['owner']).to.equal(A);
    const check = await ok(onF2, { action: 'check', lock_name: 'fw/a' });
    expect(lockView(check)).to.deep.equal({ owner: A, token: g['token'] });
    const held = await onF2.request(withRid({ action: 'preempt', lock_name: 'fw/a', client_id: B }));
    expect(codeOf(held), JSON.stringify(held)).to.equal('lock_held');
    expect((held['error'] as { owner?: string }).owner).to.equal(A);

    // acquire blocks on a follower until the holder (on the leader) releases
    const h = await ok(onLeader, withRid({ action: 'preempt', lock_name: 'fw/b', client_id: H }));
    const onF1w = await connect(f1);
    const wait = track(onF1w.request(withRid({ action: 'acquire', lock_name: 'fw/b', client_id: W }), 20000));
    await waitUntil('the waiter queued', () => ok(onLeader, { action: 'check', lock_name: 'fw/b' }), (a) => a['waiters'] === 1, 5000, 20);
    await sleep(300);
    expect(wait.done(), 'acquire answered while the lock is held').to.equal(false);
    await ok(onLeader, withRid({ action: 'release', lock_name: 'fw/b', client_id: H, token: h['token'] }));
    const w = await wait.promise;
    expect(w['ok'], JSON.stringify(w)).to.equal(true);
    expect(w['owner']).to.equal(W);
    expect(w['token']).to.be.greaterThan(h['token'] as number);
    expect(lockView(await ok(onF2, { action: 'check', lock_name: 'fw/b' }))).to.deep.equal({ owner: W, token: w['token'] });

    // append through follower 1, read through the other follower and through the leader
    let expected = '';
    for (let i = 0; i < 5; i++) {
      const data = `line ${i} ✓\n`;
      expected += data;
      const r = await ok(onF1, withRid({ action: 'append', file: 'fw/a', data, lock_name: 'fw/a', token: g['token'], client_id: A }));
      expect(r['size']).to.equal(Buffer.byteLength(expected));
    }
    expect((await ok(onF2, { action: 'read', file: 'fw/a' }))['data']).to.equal(expected);
    expect((await ok(onLeader, { action: 'read', file: 'fw/a' }))['data']).to.equal(expected);

    // stale_ok on a follower answers from its own copy: it answers even when the two other
    // nodes are frozen and nothing could be confirmed, while a linearizable check cannot.
    // (Wait until follower 2 has applied what follower 1 was answered for.)
    await waitUntil('follower 2 applied the appends', () => ok(onF2, { action: 'read', file: 'fw/a', stale_ok: true }), (a) => a['data'] === expected, 5000, 20);
    cluster.pause(leader);
    cluster.pause(f1);
    try {
      // Nobody can confirm anything now, so a success can only come from the local copy (a
      // linearizable read here ends in `unavailable`, checked below).
      const started = Date.now();
      const stale = await ok(onF2, { action: 'check', lock_name: 'fw/a', stale_ok: true }, 3000);
      expect(lockView(stale)).to.deep.equal({ owner: A, token: g['token'] });
      const staleRead = await ok(onF2, { action: 'read', file: 'fw/a', stale_ok: true }, 3000);
      expect(staleRead['data']).to.equal(expected);
      expect(Date.now() - started, 'stale_ok answers without waiting for a leader').to.be.lessThan(1500);
      const lin = await onF2.request({ action: 'check', lock_name: 'fw/a' }, 10000);
      expect(codeOf(lin), `linearizable check with the leader frozen: ${JSON.stringify(lin)}`).to.equal('unavailable');
    } finally {
      cluster.resume(leader);
      cluster.resume(f1);
    }
  });

  it('kill -9 the leader: a new leader in a higher term; every acknowledged lock, token and append survives', async () => {
    const s = await seed('k');
    await cluster.kill(s.leader);
    const next = await cluster.leader(20000);
    expect(next.id).to.not.equal(s.leader);
    expect(next.term).to.be.greaterThan(s.term);
    for (const id of others(s.leader)) await expectIntact(id, s);

    // new grants carry larger tokens: a fresh lock, the lock released before, and a lock whose
    // holder releases it now through a survivor
    const d = randomUUID();
    const onNew = await connect(next.id);
    const fresh = await settledOk(onNew, withRid({ action: 'preempt', lock_name: 'k/fresh', client_id: d }));
    expect(fresh['token']).to.be.greaterThan(s.maxToken);
    const again = await settledOk(onNew, withRid({ action: 'preempt', lock_name: s.released.lock, client_id: d }));
    expect(again['token']).to.be.greaterThan(fresh['token'] as number);
    const ca = s.conns.get('a') as RawClient; // on a follower that survived
    const heldA = s.locks.get('k/a') as { token: number };
    await settledOk(ca, withRid({ action: 'append', file: 'k/a', data: 'after;', lock_name: 'k/a', token: heldA.token, client_id: s.clients.a }));
    await settledOk(ca, withRid({ action: 'release', lock_name: 'k/a', client_id: s.clients.a, token: heldA.token }));
    const takeA = await settledOk(onNew, withRid({ action: 'preempt', lock_name: 'k/a', client_id: d }));
    expect(takeA['token']).to.be.greaterThan(again['token'] as number);
    expect((await settledOk(onNew, { action: 'read', file: 'k/a' }))['data']).to.equal(`${s.files.get('k/a') as string}after;`);
  });

  it('restart the old leader: it rejoins as a follower and catches up', async () => {
    const s = await seed('r');
    await cluster.kill(s.leader);
    const next = await cluster.leader(20000);
    expect(next.id).to.not.equal(s.leader);
    // Changes the old leader missed while down.
    const d = randomUUID();
    const onNew = await connect(next.id);
    const fresh = await settledOk(onNew, withRid({ action: 'preempt', lock_name: 'r/while-down', client_id: d }));
    await settledOk(onNew, withRid({ action: 'append', file: 'r/while-down', data: 'missed', lock_name: 'r/while-down', token: fresh['token'], client_id: d }));
    s.locks.set('r/while-down', { owner: d, token: fresh['token'] as number });
    s.files.set('r/while-down', 'missed');
    const ca = s.conns.get('a') as RawClient;
    const heldA = s.locks.get('r/a') as { token: number };
    await settledOk(ca, withRid({ action: 'append', file: 'r/a', data: '+more', lock_name: 'r/a', token: heldA.token, client_id: s.clients.a }));
    s.files.set('r/a', `${s.files.get('r/a') as string}+more`);
    const leaderCommit = (await cluster.status(next.id, 1000)).commit_index;

    await cluster.restart(s.leader);
    const old = await connect(s.leader);
    const st = await waitUntil('the old leader follows the new one', () => statusOf(s.leader, 500),
      (x) => x !== null && x.role === 'follower' && x.leader === next.id && x.commit_index >= leaderCommit, 20000);
    expect((st as NodeStatus).term).to.be.at.least(next.term);
    // The leader did not change because of the restart.
    const after = await cluster.leader();
    expect(after.id).to.equal(next.id);
    // Its own copy (stale_ok) equals the leader's once caught up.
    for (const [lock, held] of s.locks) {
      const leaderView = lockView(await settledOk(onNew, { action: 'check', lock_name: lock }));
      expect(leaderView, `${lock} on the leader`).to.deep.equal(held);
      await waitUntil(`${lock} on the restarted node`, async () => lockView(await ok(old, { action: 'check', lock_name: lock, stale_ok: true })),
        (v) => JSON.stringify(v) === JSON.stringify(leaderView), 10000);
    }
    for (const [file, data] of s.files) {
      await waitUntil(`${file} on the restarted node`, async () => (await ok(old, { action: 'read', file, stale_ok: true }))['data'],
        (v) => v === data, 10000);
    }
    // And a linearizable request through it works too.
    await expectIntact(s.leader, s);
  });

  it('kill -9 every node and restart them all: everything acknowledged is intact; new tokens are larger', async () => {
    const s = await seed('all');
    await Promise.all(cluster.ids.map((id) => cluster.kill(id)));
    for (const c of raws.splice(0)) c.close();
    await Promise.all(cluster.ids.map((id) => cluster.restart(id)));
    const { id: leader } = await cluster.leader(20000);
    for (const id of cluster.ids) await expectIntact(id, s);

    const onLeader = await connect(leader);
    const d = randomUUID();
    const again = await settledOk(onLeader, withRid({ action: 'preempt', lock_name: s.released.lock, client_id: d }));
    expect(again['token']).to.be.greaterThan(s.maxToken);
    // A's session survived too: resume it on a new connection and keep using its grant.
    const [anyFollower] = others(leader) as [string];
    const ca = await connect(anyFollower);
    await settledOk(ca, { action: 'hello', client_id: s.clients.a, resume_token: s.resumeA });
    const heldA = s.locks.get('all/a') as { token: number };
    const r = await settledOk(ca, withRid({ action: 'append', file: 'all/a', data: 'post', lock_name: 'all/a', token: heldA.token, client_id: s.clients.a }));
    expect(r['size']).to.equal(Buffer.byteLength(`${s.files.get('all/a') as string}post`));
    await settledOk(ca, withRid({ action: 'release', lock_name: 'all/a', client_id: s.clients.a, token: heldA.token }));
    const takeA = await settledOk(onLeader, withRid({ action: 'preempt', lock_name: 'all/a', client_id: d }));
    expect(takeA['token']).to.be.greaterThan(again['token'] as number);
  });

  it('two of three nodes down: the survivor answers unavailable (never success) in bounded time; service resumes after one restart', async () => {
    const { id: leader } = await cluster.leader();
    const [f1, f2] = others(leader) as [string, string];
    const X = randomUUID();
    const onLeader = await connect(leader);
    const g = await ok(onLeader, withRid({ action: 'preempt', lock_name: 'u/held', client_id: X }));
    await ok(onLeader, withRid({ action: 'append', file: 'u/held', data: 'before', lock_name: 'u/held', token: g['token'], client_id: X }));
    await Promise.all([cluster.kill(f1), cluster.kill(f2)]);

    const requests: Record<string, unknown>[] = [
      withRid({ action: 'preempt', lock_name: 'u/free', client_id: X }),
      withRid({ action: 'acquire', lock_name: 'u/free2', client_id: X }),
      withRid({ action: 'append', file: 'u/held', data: 'during', lock_name: 'u/held', token: g['token'], client_id: X }),
      { action: 'check', lock_name: 'u/held' },
      { action: 'read', file: 'u/held' },
      { action: 'keepalive', client_id: X },
      withRid({ action: 'release', lock_name: 'u/held', client_id: X, token: g['token'] }),
    ];
    const started = Date.now();
    const answers = await Promise.all(requests.map((req) => onLeader.request(req, 10000).catch((err: Error) => ({ ok: 'no answer', err: err.message }))));
    const elapsed = Date.now() - started;
    answers.forEach((a, i) => {
      expect(codeOf(a as Message), `${JSON.stringify(requests[i])} -> ${JSON.stringify(a)}`).to.equal('unavailable');
    });
    expect(elapsed).to.be.lessThan(10000);
    // A second round, on a new connection for a new client, once the survivor knows it is alone.
    const Y = randomUUID();
    const onLeader2 = await connect(leader);
    const second = await Promise.all([
      onLeader2.request(withRid({ action: 'preempt', lock_name: 'u/y', client_id: Y }), 10000),
      onLeader2.request({ action: 'check', lock_name: 'u/held' }, 10000),
    ]);
    for (const a of second) expect(codeOf(a), JSON.stringify(a)).to.equal('unavailable');
    const alone = await statusOf(leader, 1000);
    expect(alone?.role, 'a node alone does not stay leader').to.not.equal('leader');

    await cluster.restart(f1);
    await cluster.leader(20000);
    const back = await settledOk(onLeader2, withRid({ action: 'preempt', lock_name: 'u/y', client_id: Y }));
    expect(back['token']).to.be.greaterThan(g['token'] as number);
    const c = await settledOk(onLeader2, { action: 'check', lock_name: 'u/y' });
    expect(c['owner']).to.equal(Y);
    // The acknowledged append is there; `during` may or may not have been applied (its answer
    // said so), but never twice.
    const data = (await settledOk(onLeader2, { action: 'read', file: 'u/held' }))['data'] as string;
    expect(['before', 'beforeduring']).to.include(data);
  });

  it('a waiter on a follower survives a leader change and is granted after the holder releases', async () => {
    const { id: leader } = await cluster.leader();
    const [f, other] = others(leader) as [string, string];
    // The holder talks to the leader first and can fail over to the other follower.
    const holder = lockClient(serversOf([leader, other]));
    const hLock = await holder.acquire('w/lock');
    const W = randomUUID();
    const onF = await connect(f);
    const wait = track(onF.request(withRid({ action: 'acquire', lock_name: 'w/lock', client_id: W }), 30000));
    await waitUntil('the waiter queued', () => ok(onF, { action: 'check', lock_name: 'w/lock' }), (a) => a['waiters'] === 1, 5000, 20);

    await cluster.kill(leader);
    const next = await cluster.leader(20000);
    expect(next.id).to.not.equal(leader);
    expect(wait.done(), 'the waiter was answered before the holder released').to.equal(false);
    await hLock.release();
    const w = await wait.promise;
    expect(w['ok'], JSON.stringify(w)).to.equal(true);
    expect(w['owner']).to.equal(W);
    expect(w['token']).to.be.greaterThan(hLock.token);
    const onOther = await connect(other);
    expect(lockView(await settledOk(onOther, { action: 'check', lock_name: 'w/lock' }))).to.deep.equal({ owner: W, token: w['token'] });
  });

  it('a paused (SIGSTOP) leader is replaced; after SIGCONT its stale token is refused and it steps down', async () => {
    const { id: old, term: oldTerm } = await cluster.leader();
    const A = randomUUID();
    const onOld = await connect(old);
    const g = await ok(onOld, withRid({ action: 'preempt', lock_name: 'p/lock', client_id: A, lease_ms: 1500 }));
    const t1 = g['token'] as number;
    await ok(onOld, withRid({ action: 'append', file: 'p/lock', data: 'old-leader;', lock_name: 'p/lock', token: t1, client_id: A }));

    cluster.pause(old);
    let resumed = false;
    try {
      const next = await cluster.leader(20000, { not: [old] });
      expect(next.id).to.not.equal(old);
      expect(next.term).to.be.greaterThan(oldTerm);
      // A's lease ends on the new leader's clock; B is granted the lock there.
      const B = randomUUID();
      const onNext = await connect(next.id);
      const b = await settledOk(onNext, withRid({ action: 'acquire', lock_name: 'p/lock', client_id: B, timeout_ms: 10000 }), 15000);
      expect(b['owner']).to.equal(B);
      const t2 = b['token'] as number;
      expect(t2).to.be.greaterThan(t1);
      await ok(onNext, withRid({ action: 'append', file: 'p/lock', data: 'new-leader;', lock_name: 'p/lock', token: t2, client_id: B }));

      // While it is still frozen, A (talking to the old leader) sends an append with the token
      // the old leader granted, and a linearizable check and read: the old leader finds them
      // waiting the moment it wakes up, still believing it leads.
      const staleReq = withRid({ action: 'append', file: 'p/lock', data: 'STALE;', lock_name: 'p/lock', token: t1, client_id: A });
      const firstStale = onOld.request(staleReq, 15000);
      const oldCheck = onOld.request({ action: 'check', lock_name: 'p/lock' }, 15000);
      const oldRead = onOld.request({ action: 'read', file: 'p/lock' }, 15000);
      await sleep(100);
      cluster.resume(old);
      resumed = true;
      let stale = await firstStale;
      if (codeOf(stale) === 'unavailable') stale = await settled(onOld, staleReq, 15000);
      expect(codeOf(stale), `stale append -> ${JSON.stringify(stale)}`).to.be.oneOf(['stale_token', 'not_owner']);
      // The reads either fail or show the new grant: never the old leader's stale view.
      const chk = await oldCheck;
      if (codeOf(chk) !== 'unavailable') expect(lockView(chk), `linearizable check on the woken leader: ${JSON.stringify(chk)}`).to.deep.equal({ owner: B, token: t2 });
      const rd = await oldRead;
      if (codeOf(rd) !== 'unavailable') expect(rd['data'], `linearizable read on the woken leader: ${JSON.stringify(rd)}`).to.equal('old-leader;new-leader;');
      const st = await waitUntil('the old leader steps down', () => statusOf(old, 500),
        (x) => x !== null && x.role === 'follower' && x.term >= next.term && x.leader !== old, 20000);
      expect((st as NodeStatus).term).to.be.at.least(next.term);
      const now = await cluster.leader();
      expect(now.id).to.not.equal(old);
      const onNow = await connect(now.id);
      expect((await settledOk(onNow, { action: 'read', file: 'p/lock' }))['data']).to.equal('old-leader;new-leader;');
      expect(lockView(await settledOk(onNow, { action: 'check', lock_name: 'p/lock' }))).to.deep.equal({ owner: B, token: t2 });
      // Its own copy converges on the same file.
      await waitUntil('the old leader catches up', async () => (await ok(onOld, { action: 'read', file: 'p/lock', stale_ok: true }))['data'],
        (v) => v === 'old-leader;new-leader;', 10000);
      // A, whose connection is on the old leader, hears once that its grant ran out.
      const lost = onOld.received().filter((m) => m['event'] === 'lost');
      expect(lost, JSON.stringify(onOld.received())).to.deep.equal([{ event: 'lost', lock_name: 'p/lock', token: t1, reason: 'lease_expired' }]);
    } finally {
      if (!resumed) cluster.resume(old);
    }
  });

  it('SIGTERM on the leader: it exits cleanly, a new leader takes over with everything, and it rejoins on restart', async () => {
    const s = await seed('t');
    const started = Date.now();
    await cluster.terminate(s.leader);
    expect(Date.now() - started, 'a clean stop is quick').to.be.lessThan(5000);
    const exit = cluster.logs(s.leader, 'node_stopped');
    expect(exit, 'node_stopped logged').to.have.length(1);
    const next = await cluster.leader(20000);
    expect(next.id).to.not.equal(s.leader);
    expect(next.term).to.be.greaterThan(s.term);
    for (const id of others(s.leader)) await expectIntact(id, s);
    const onNew = await connect(next.id);
    const fresh = await settledOk(onNew, withRid({ action: 'preempt', lock_name: 't/fresh', client_id: randomUUID() }));
    expect(fresh['token']).to.be.greaterThan(s.maxToken);
    const commit = (await cluster.status(next.id, 1000)).commit_index;
    await cluster.restart(s.leader);
    await waitUntil('the stopped leader rejoins as a follower', () => statusOf(s.leader, 500),
      (x) => x !== null && x.role === 'follower' && x.leader === next.id && x.commit_index >= commit, 20000);
    await expectIntact(s.leader, s);
  });

  // A leader that lost its quorum cannot know whether the entries already in its log will be
  // applied once a quorum is back. It answers `unavailable` and says the request may still be
  // applied; re-sent with the SAME request_id it takes effect at most once and gets the first
  // answer, and LockClient releases (by token) a grant of a take it gave up on.
  it('a request answered unavailable for lack of quorum takes effect at most once, and LockClient does not leak its lock', async () => {
    const { id: leader } = await cluster.leader();
    const [f1, f2] = others(leader) as [string, string];
    const X = randomUUID();
    const onLeader = await connect(leader);
    const g = await ok(onLeader, withRid({ action: 'preempt', lock_name: 'b/held', client_id: X }));
    const lc = lockClient(serversOf([leader]), 3000);
    await lc.connect();
    await Promise.all([cluster.kill(f1), cluster.kill(f2)]);
    const append = withRid({ action: 'append', file: 'b/held', data: 'once', lock_name: 'b/held', token: g['token'], client_id: X });
    const app = await onLeader.request(append, 10000);
    expect(codeOf(app), JSON.stringify(app)).to.equal('unavailable');
    expect(JSON.stringify(app)).to.contain('may still be applied');
    const lcPreempt = await lc.preempt('b/client').then(() => 'granted', (err: { code?: string }) => err.code);
    expect(lcPreempt).to.equal('unavailable');

    await cluster.restart(f1);
    await cluster.leader(20000);
    const onF1 = await connect(f1);
    // The same request again, same request_id: the first answer, and one effect.
    const again = await settledOk(onLeader, append);
    expect(again['size']).to.equal(4);
    expect((await settledOk(onF1, { action: 'read', file: 'b/held' }))['data'], 'the append is applied exactly once').to.equal('once');
    // LockClient gave up on b/client: whether or not it was granted, it must not stay held.
    await waitUntil('the gave-up grant of LockClient is released', async () => (await settledOk(onF1, { action: 'check', lock_name: 'b/client' }))['owner'],
      (owner) => owner === null, 20000);
  });

  it('LockClient with all three servers: withLock + append keep working across a leader kill, each append exactly once', async () => {
    const { id: leader } = await cluster.leader();
    const [f1, f2] = others(leader) as [string, string];
    const c1 = lockClient(serversOf([leader, f1, f2]));
    const c2 = lockClient(serversOf([leader, f2, f1]));
    const rounds = 30;
    let done1 = 0;
    const run = async (client: LockClient, name: string, onRound: () => void): Promise<void> => {
      for (let i = 0; i < rounds; i++) {
        await client.withLock('lc/lock', async (lock) => {
          await client.append(lock, `${name}-${i}\n`, 'lc/file');
        });
        onRound();
      }
    };
    let killed: Promise<void> | null = null;
    const p1 = run(c1, 'c1', () => {
      done1++;
      if (done1 === 8) killed = cluster.kill(leader);
    });
    const p2 = run(c2, 'c2', () => undefined);
    await Promise.all([p1, p2]);
    expect(killed, 'the leader was killed during the run').to.not.equal(null);
    await killed;
    const reader = lockClient(serversOf([f1, f2]));
    const data = await reader.read('lc/file');
    const lines = data.split('\n').filter((l) => l.length > 0);
    expect(new Set(lines).size, `duplicates in ${JSON.stringify(lines)}`).to.equal(lines.length);
    for (const name of ['c1', 'c2']) {
      const mine = lines.filter((l) => l.startsWith(`${name}-`));
      expect(mine).to.deep.equal(Array.from({ length: rounds }, (_, i) => `${name}-${i}`));
    }
    expect(lines).to.have.length(2 * rounds);
  });
});
