// LockClient failover: a closed connection is replaced by one to the next server, which gets a
// hello with the resume_token and then every pending request again, same request_id.
import { expect } from 'chai';
import { LockClient } from '../../lib/index';
import { FakeServer, FakeState, rejectionOf, whenAborted, type Message } from '../helpers/fake-server';

describe('LockClient reconnect', () => {
  let servers: FakeServer[] = [];
  let client: LockClient | null = null;

  async function cluster(n: number, state = new FakeState()): Promise<FakeServer[]> {
    for (let i = 0; i < n; i++) servers.push(await FakeServer.start({ state, node: `n${i + 1}` }));
    return servers;
  }

  afterEach(async () => {
    await client?.close();
    client = null;
    await Promise.all(servers.map((s) => s.close()));
    servers = [];
  });

  it('re-sends a pending acquire to the next server with the same request_id after resuming', async () => {
    const [a, b] = (await cluster(2)) as [FakeServer, FakeServer];
    a.holdFor('L', 'someone');
    client = new LockClient({ servers: [a.address, b.address], graceMs: 5000 });
    const acquiring = client.acquire('L');
    const sent = await a.waitFor((m) => m['action'] === 'acquire');
    const resumeToken = a.state.sessions.get(client.clientId)?.resumeToken;
    expect(resumeToken).to.be.a('string');

    await a.close(); // the node dies before answering

    const hello = await b.waitFor((m) => m['action'] === 'hello');
    expect(hello['resume_token']).to.equal(resumeToken);
    const resent = await b.waitFor((m) => m['action'] === 'acquire');
    expect(resent['request_id']).to.equal(sent['request_id']);
    // hello goes first: the pending request is sent only once the session is resumed.
    const order = b.received.map((r) => r.request['action']);
    expect(order.indexOf('hello')).to.be.below(order.indexOf('acquire'));

    b.forceRelease('L');
    const lock = await acquiring;
    expect(lock.token).to.equal(2);
    expect(lock.signal.aborted).to.equal(false);
  });

  it('a request applied by a node that died before answering takes effect once', async () => {
    const [a, b] = (await cluster(2)) as [FakeServer, FakeServer];
    a.intercept = (m, conn) => {
      if (m['action'] !== 'preempt') return undefined;
      a.process(m, conn); // applied...
      conn.socket.destroy(); // ...but the answer is lost with the connection
      return 'drop';
    };
    client = new LockClient({ servers: [a.address, b.address] });

    const lock = await client.preempt('L');

    const [first, second] = [a.requests('preempt')[0], b.requests('preempt')[0]] as [Message, Message];
    expect(second['request_id']).to.equal(first['request_id']);
    expect(lock.token).to.equal(1); // the first (and only) grant
    expect(b.state.lock('L')).to.include({ owner: client.clientId, token: 1 });
  });

  it('rotates round robin: after the second server fails it goes back to the first', async () => {
    const [a, b] = (await cluster(2)) as [FakeServer, FakeServer];
    client = new LockClient({ servers: [a.address, b.address] });
    await client.check('x');
    a.dropConnections();
    await client.check('x');
    b.dropConnections();
    await client.check('x');
    expect(a.requests('hello')).to.have.length(2);
    expect(b.requests('hello')).to.have.length(1);
  });

  it('rejects pending requests with unavailable when no server answers within requestTimeoutMs', async () => {
    const [a] = (await cluster(1)) as [FakeServer];
    const address = a.address;
    await a.close();
    servers = [];
    client = new LockClient({ servers: [address, address], requestTimeoutMs: 300, connectTimeoutMs: 100 });
    const startedMs = performance.now();

    const err = await rejectionOf(client.check('L'));

    expect(err.code).to.equal('unavailable');
    expect(performance.now() - startedMs).to.be.within(250, 1500);
  });

  it('a node that accepts but never answers hello is left for the next one', async () => {
    const [a, b] = (await cluster(2)) as [FakeServer, FakeServer];
    a.intercept = () => 'drop';
    client = new LockClient({ servers: [a.address, b.address], requestTimeoutMs: 1000, connectTimeoutMs: 200 });
    const state = await client.check('L');
    expect(state.owner).to.equal(null);
    expect(b.requests('check')).to.have.length(1);
  });

  it('a reconnect that finds a new session aborts the locks of the old one', async () => {
    // Two servers that share nothing: the second has never heard of the session.
    const a = await FakeServer.start();
    const b = await FakeServer.start();
    servers.push(a, b);
    client = new LockClient({ servers: [a.address, b.address] });
    const lock = await client.preempt('L');

    a.dropConnections();
    await client.check('L');

    await whenAborted(lock.signal, 2000);
    expect(lock.lostReason).to.equal('session_ended');
    expect(b.requests('hello')[0]).to.have.property('resume_token');
  });

  it('moves to the next server when a node answers shutting_down, re-sending the request', async () => {
    const [a, b] = (await cluster(2)) as [FakeServer, FakeServer];
    a.intercept = (m) => (m['action'] === 'preempt' ? { ok: false, error: { code: 'shutting_down', message: 'bye' } } : undefined);
    client = new LockClient({ servers: [a.address, b.address] });
    const lock = await client.preempt('L');
    expect(lock.token).to.equal(1);
    expect(b.requests('preempt')[0]?.['request_id']).to.equal(a.requests('preempt')[0]?.['request_id']);
  });
});
