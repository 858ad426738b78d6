// LockClient against a fake node: pipelined requests matched by id, typed errors, local
// validation, `unavailable` retries, aborting an acquire, withLock and close.
import { expect } from 'chai';
import { LatchkeyError, LockClient } from '../../lib/index';
import { FakeServer, eventually, rejectionOf, type Message } from '../helpers/fake-server';

describe('LockClient requests', () => {
  let server: FakeServer;
  let clients: LockClient[] = [];

  function connectClient(options: Partial<ConstructorParameters<typeof LockClient>[0]> = {}): LockClient {
    const client = new LockClient({ servers: [server.address], ...options });
    clients.push(client);
    return client;
  }

  beforeEach(async () => {
    server = await FakeServer.start();
  });

  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
    await server.close();
  });

  it('matches answers to requests by id when they come back in reverse order', async () => {
    server.holdFor('a', 'someone');
    server.state.files.set('f', 'contents');
    const client = connectClient();
    await client.connect();
    [...server.connections][0]?.reorder(3);

    const [a, b, f] = await Promise.all([client.check('a'), client.check('b'), client.read('f')]);

    expect(a).to.deep.equal({ name: 'a', owner: 'someone', token: 1, waiters: 0 });
    expect(b).to.deep.equal({ name: 'b', owner: null, token: null, waiters: 0 });
    expect(f).to.equal('contents');
  });

  it('answers a check sent after a blocking acquire first (pipelining)', async () => {
    server.holdFor('L', 'someone');
    const client = connectClient();
    const acquiring = client.acquire('L');
    await server.waitFor((m) => m['action'] === 'acquire');

    const state = await client.check('L');
    expect(state.owner).to.equal('someone');
    expect(state.waiters).to.equal(1);

    server.forceRelease('L');
    const lock = await acquiring;
    expect(lock.name).to.equal('L');
    expect(lock.token).to.equal(2);
  });

  it('rejects with a LatchkeyError carrying the contract code (and owner for lock_held)', async () => {
    server.holdFor('L', 'someone');
    const client = connectClient();

    const err = await rejectionOf(client.preempt('L'));

    expect(err).to.be.instanceOf(LatchkeyError);
    expect(err.code).to.equal('lock_held');
    expect(err.owner).to.equal('someone');
  });

  it('rejects an invalid lock name locally with bad_request, sending nothing', async () => {
    const client = connectClient();
    await client.connect();

    for (const name of ['a/../b', '', 'has space', 'x'.repeat(257)]) {
      const err = await rejectionOf(client.preempt(name));
      expect(err.code, name).to.equal('bad_request');
    }
    expect(server.requests('preempt')).to.have.length(0);
  });

  it('sends a fresh request_id with every state-changing request', async () => {
    const client = connectClient();
    const lock = await client.preempt('L');
    await client.append(lock, 'x');
    await lock.release();
    await client.close();

    const ids = server.received
      .map((r) => r.request)
      .filter((m) => ['preempt', 'append', 'release', 'bye'].includes(String(m['action'])))
      .map((m) => m['request_id']);
    expect(ids).to.have.length(4);
    for (const id of ids) expect(id).to.be.a('string').with.length.within(1, 64);
    expect(new Set(ids).size).to.equal(4);
  });

  it('retries unavailable answers with backoff and then succeeds', async () => {
    let refusals = 2;
    server.intercept = (m) => {
      if (m['action'] !== 'check' || refusals === 0) return undefined;
      refusals--;
      return { ok: false, error: { code: 'unavailable', message: 'no leader' } };
    };
    const client = connectClient();

    const state = await client.check('L');

    expect(state.owner).to.equal(null);
    expect(server.requests('check')).to.have.length(3);
    // The retries are the same request, not new ones.
    expect(new Set(server.requests('check').map((m) => m['id'])).size).to.equal(1);
  });

  it('gives up on unavailable after requestTimeoutMs with code unavailable', async () => {
    server.intercept = (m) => (m['action'] === 'check' ? { ok: false, error: { code: 'unavailable', message: 'no leader' } } : undefined);
    const client = connectClient({ requestTimeoutMs: 300 });
    const startedMs = performance.now();

    const err = await rejectionOf(client.check('L'));

    expect(err.code).to.equal('unavailable');
    expect(performance.now() - startedMs).to.be.below(1000);
    expect(server.requests('check').length).to.be.above(1);
  });

  it('aborting an acquire rejects it as AbortError (code timeout) and releases a late grant', async () => {
    server.holdFor('L', 'someone');
    const client = connectClient();
    const controller = new AbortController();
    const acquiring = client.acquire('L', { signal: controller.signal });
    await server.waitFor((m) => m['action'] === 'acquire');

    controller.abort();
    const err = await rejectionOf(acquiring);
    expect(err.name).to.equal('AbortError');
    expect(err.code).to.equal('timeout');
    // In case it was granted meanwhile, a release goes out at once.
    await server.waitFor((m) => m['action'] === 'release' && m['lock_name'] === 'L');

    // The queued acquire cannot be withdrawn; when it is granted the client gives it back.
    server.forceRelease('L');
    await eventually(() => server.state.lock('L').owner === null, 2000, 'L released');
    const releases = server.requests('release').filter((m) => m['token'] === 2);
    expect(releases).to.have.length(1);
  });

  it('an already aborted signal rejects without sending anything', async () => {
    const client = connectClient();
    await client.connect();
    const err = await rejectionOf(client.acquire('L', { signal: AbortSignal.abort() }));
    expect(err.name).to.equal('AbortError');
    expect(server.requests('acquire')).to.have.length(0);
  });

  it('acquire with timeoutMs rejects with the server timeout', async () => {
    server.holdFor('L', 'someone');
    const client = connectClient();
    const err = await rejectionOf(client.acquire('L', { timeoutMs: 50 }));
    expect(err.code).to.equal('timeout');
    expect(server.requests('acquire')[0]).to.include({ timeout_ms: 50 });
  });

  it('withLock releases the lock when fn throws, and rethrows fn error', async () => {
    const client = connectClient();
    const err = await rejectionOf(client.withLock('L', () => { throw new Error('boom'); }));
    expect(err.message).to.equal('boom');
    expect(server.state.lock('L').owner).to.equal(null);

    const value = await client.withLock('L', async (lock) => {
      expect(server.state.lock('L').owner).to.equal(client.clientId);
      await client.append(lock, 'hi\n');
      return 42;
    });
    expect(value).to.equal(42);
    expect(server.state.lock('L').owner).to.equal(null);
    expect(server.state.files.get('L')).to.equal('hi\n');
  });

  it('append sends lock_name, token and client_id, and reports the size', async () => {
    const client = connectClient();
    const lock = await client.preempt('L');
    const result = await client.append(lock, 'abc', 'other-file');
    expect(result).to.deep.equal({ file: 'other-file', size: 3 });
    const append = server.requests('append')[0] as Message;
    expect(append).to.include({ file: 'other-file', data: 'abc', lock_name: 'L', token: lock.token, client_id: client.clientId });
  });

  it('taking a lock it already holds returns the same handle', async () => {
    const client = connectClient();
    const first = await client.preempt('L');
    const second = await client.acquire('L');
    expect(second).to.equal(first);
  });

  it('release uses the grant token and a lost handle swallows not_owner', async () => {
    const client = connectClient();
    const lock = await client.preempt('L');
    server.expire('L');
    await eventually(() => lock.lostReason !== null, 2000, 'lost');
    await lock.release(); // not_owner from the server: already reported by the signal
    expect(lock.released).to.equal(true);
    const release = server.requests('release')[0] as Message;
    expect(release['token']).to.equal(lock.token);
  });

  it('status converts the answer to camelCase', async () => {
    const client = connectClient();
    expect(await client.status()).to.deep.equal({
      node: 'fake', role: 'leader', term: 1, leader: 'fake', commitIndex: 7, members: ['fake'],
    });
  });

  it('hello carries client_id, ttl_ms, grace_ms and auth', async () => {
    const client = connectClient({ clientId: 'me', ttlMs: 5000, graceMs: 2000, authToken: 's3cret' });
    await client.connect();
    expect(server.requests('hello')[0]).to.include({ client_id: 'me', ttl_ms: 5000, grace_ms: 2000, auth: 's3cret' });
    expect(server.requests('hello')[0]).to.not.have.property('resume_token');
  });

  it('an unauthorized hello rejects pending requests with unauthorized', async () => {
    server.intercept = (m) => (m['action'] === 'hello' ? { ok: false, error: { code: 'unauthorized', message: 'bad token' } } : undefined);
    const client = connectClient({ authToken: 'wrong' });
    const err = await rejectionOf(client.check('L'));
    expect(err.code).to.equal('unauthorized');
    expect(server.requests('check')).to.have.length(0);
  });

  it('close sends bye, aborts held locks and rejects later calls', async () => {
    const client = connectClient();
    const lock = await client.preempt('L');
    await client.close();

    expect(server.requests('bye')).to.have.length(1);
    expect(lock.signal.aborted).to.equal(true);
    expect(lock.lostReason).to.equal('session_ended');
    expect(server.state.lock('L').owner).to.equal(null);
    const err = await rejectionOf(client.check('L'));
    expect(err.code).to.equal('shutting_down');
    await lock.release(); // nothing left to release: resolves
  });

  it('close rejects a pending acquire with shutting_down', async () => {
    server.holdFor('L', 'someone');
    const client = connectClient();
    const acquiring = client.acquire('L');
    await server.waitFor((m) => m['action'] === 'acquire');
    await client.close();
    expect((await rejectionOf(acquiring)).code).to.equal('shutting_down');
  });

  it('validates its options with bad_request', () => {
    expect(() => new LockClient({ servers: [] })).to.throw(LatchkeyError).with.property('code', 'bad_request');
    expect(() => new LockClient({ servers: ['nohost'] })).to.throw(/servers\[0\]/);
    expect(() => new LockClient({ servers: ['127.0.0.1:1'], ttlMs: 5 })).to.throw(/ttlMs/);
  });
});
