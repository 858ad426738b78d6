// End to end over gRPC (PROTOCOL §7, issue 6): a client generated at test time from
// proto/latchkey.proto drives a real 3-node cluster (in this process, over loopback sockets)
// through its leader and a follower. Each test uses its own lock names, so they share one
// cluster.
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { call, newLocksClient, SessionCall, type CallResult, type LocksClient, type Reply } from '../helpers/grpc-client';
import { startInProcessCluster, type InProcessCluster } from '../helpers/in-process-cluster';

describe('e2e: gRPC front door on a 3-node cluster', function () {
  this.timeout(30000);
  let cluster: InProcessCluster;
  let leader: LocksClient;
  let follower: LocksClient;
  let other: LocksClient;
  const streams: SessionCall[] = [];

  before(async () => {
    cluster = await startInProcessCluster({ nodes: 3, nodeOptions: () => ({ grpc: { host: '127.0.0.1', port: 0 } }) });
    const leaderId = await cluster.leader();
    const ids = [...cluster.ids];
    const [followerId, otherId] = ids.filter((id) => id !== leaderId) as [string, string];
    const client = (id: string): LocksClient => newLocksClient(cluster.node(id).addresses.grpc?.port as number);
    [leader, follower, other] = [client(leaderId), client(followerId), client(otherId)];
  });

  afterEach(() => {
    for (const stream of streams.splice(0)) stream.cancel();
  });

  after(async () => {
    for (const c of [leader, follower, other]) c?.close();
    await cluster?.stop();
  });

  function newLock(): string {
    return `grpc/${randomUUID().slice(0, 8)}`;
  }

  function newClient(): string {
    return `c-${randomUUID()}`;
  }

  function openSession(via: LocksClient, hello: Reply): SessionCall {
    const stream = new SessionCall(via, hello);
    streams.push(stream);
    return stream;
  }

  function ok(result: CallResult): Reply {
    if (!result.ok) throw new Error(`expected success, got ${JSON.stringify(result)}`);
    return result.reply;
  }

  async function waitersOf(lock: string, wanted: number): Promise<void> {
    const started = Date.now();
    for (;;) {
      const reply = ok(await call(leader, 'Check', { lock_name: lock }));
      if (reply['waiters'] === wanted) return;
      if (Date.now() - started > 5000) throw new Error(`waiters of ${lock} stayed ${String(reply['waiters'])}, wanted ${wanted}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async function ownerBecomes(lock: string, owner: string | undefined): Promise<Reply> {
    const started = Date.now();
    for (;;) {
      const reply = ok(await call(leader, 'Check', { lock_name: lock }));
      if (reply['owner'] === owner) return reply;
      if (Date.now() - started > 5000) throw new Error(`owner of ${lock} stayed ${String(reply['owner'])}, wanted ${String(owner)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  for (const via of ['leader', 'follower'] as const) {
    it(`preempt, check, append, read and release through the ${via}`, async () => {
      const client = via === 'leader' ? leader : follower;
      const [lock, file, me] = [newLock(), `${newLock()}.txt`, newClient()];
      const held = ok(await call(client, 'Preempt', { lock_name: lock, client_id: me, request_id: 'p1' }));
      expect(held).to.deep.include({ lock_name: lock, owner: me });
      const token = held['token'] as number;
      expect(token).to.be.a('number').greaterThan(0);
      expect(ok(await call(client, 'Check', { lock_name: lock }))).to.deep.equal({ lock_name: lock, owner: me, token, waiters: 0 });
      const first = ok(await call(client, 'Append', { file, data: 'héllo ', lock_name: lock, token, client_id: me }));
      expect(first).to.deep.equal({ file, size: 7 });
      ok(await call(client, 'Append', { file, data: 'world', lock_name: lock, token, client_id: me, request_id: 'a2' }));
      expect(ok(await call(client, 'Read', { file }))).to.deep.equal({ file, data: 'héllo world' });
      expect(ok(await call(client, 'Release', { lock_name: lock, client_id: me, token }))).to.deep.equal({ lock_name: lock });
      expect(ok(await call(client, 'Check', { lock_name: lock }))).to.deep.equal({ lock_name: lock, waiters: 0 });
      const status = ok(await call(client, 'Status', {}));
      expect(status['role']).to.equal(via);
      expect(status['members']).to.have.members([...cluster.ids]);
    });
  }

  it('a blocked Acquire is granted on release, first come first served', async () => {
    const [lock, holder, second, third] = [newLock(), newClient(), newClient(), newClient()];
    const held = ok(await call(leader, 'Preempt', { lock_name: lock, client_id: holder }));
    const secondGrant = call(follower, 'Acquire', { lock_name: lock, client_id: second });
    await waitersOf(lock, 1);
    const thirdGrant = call(leader, 'Acquire', { lock_name: lock, client_id: third });
    await waitersOf(lock, 2);
    let thirdDone = false;
    void thirdGrant.then(() => { thirdDone = true; });
    ok(await call(other, 'Release', { lock_name: lock, client_id: holder }));
    const granted = ok(await secondGrant);
    expect(granted['owner']).to.equal(second);
    expect(granted['token']).to.be.greaterThan(held['token'] as number);
    await waitersOf(lock, 1);
    expect(thirdDone, 'the third waits for the second').to.equal(false);
    ok(await call(follower, 'Release', { lock_name: lock, client_id: second }));
    expect(ok(await thirdGrant)).to.deep.include({ owner: third });
  });

  it('a deadline on Acquire ends the wait and takes the waiter out of the queue', async () => {
    const [lock, holder, waiter] = [newLock(), newClient(), newClient()];
    ok(await call(leader, 'Preempt', { lock_name: lock, client_id: holder }));
    const started = Date.now();
    const waiting = call(follower, 'Acquire', { lock_name: lock, client_id: waiter }, { deadlineMs: 1500 });
    await waitersOf(lock, 1);
    const result = await waiting;
    expect(Date.now() - started).to.be.within(900, 2500);
    expect(result).to.deep.include({ ok: false, status: grpc.status.DEADLINE_EXCEEDED });
    await waitersOf(lock, 0);
    // Nobody is queued behind the holder any more: its release leaves the lock free.
    ok(await call(leader, 'Release', { lock_name: lock, client_id: holder }));
    expect((await ownerBecomes(lock, undefined))['waiters']).to.equal(0);
  });

  it('a cancelled Acquire without request_id gives back the grant it gets later', async () => {
    const [lock, holder, quitter] = [newLock(), newClient(), newClient()];
    const held = ok(await call(leader, 'Preempt', { lock_name: lock, client_id: holder }));
    let cancel!: () => void;
    const waiting = call(follower, 'Acquire', { lock_name: lock, client_id: quitter }, { cancelWhen: new Promise<void>((resolve) => { cancel = resolve; }) });
    await waitersOf(lock, 1);
    cancel();
    expect(await waiting).to.deep.include({ ok: false, status: grpc.status.CANCELLED });
    ok(await call(leader, 'Release', { lock_name: lock, client_id: holder }));
    // The quitter was granted the next token, and the follower released it at once: the lock
    // comes free, and the grant after that has the token after the quitter's.
    await ownerBecomes(lock, undefined);
    const after = ok(await call(leader, 'Preempt', { lock_name: lock, client_id: holder }));
    expect(after['token']).to.equal((held['token'] as number) + 2);
  });

  it('dropping a Session stream ends its session: its locks go to the next waiter', async () => {
    const [lock, me, next] = [newLock(), newClient(), newClient()];
    const stream = openSession(follower, { client_id: me });
    const hello = await stream.hello();
    expect(hello).to.include({ client_id: me, ttl_ms: 30000 });
    const secret = hello['resume_token'] as string;
    ok(await call(follower, 'Preempt', { lock_name: lock, client_id: me }, { session: secret }));
    ok(await call(follower, 'KeepAlive', { client_id: me }, { session: secret }));
    const waiting = call(leader, 'Acquire', { lock_name: lock, client_id: next });
    await waitersOf(lock, 1);
    stream.cancel();
    expect(ok(await waiting)).to.deep.include({ owner: next });
  });

  it('a session on a stream sees lost events when a lease runs out', async () => {
    const [lock, me] = [newLock(), newClient()];
    const stream = openSession(leader, { client_id: me });
    const secret = (await stream.hello())['resume_token'] as string;
    const held = ok(await call(leader, 'Acquire', { lock_name: lock, client_id: me, lease_ms: 300 }, { session: secret }));
    expect(await stream.next(5000)).to.deep.equal({ lost: { lock_name: lock, token: held['token'], reason: 'lease_expired' } });
  });

  it('with grace_ms a new stream resumes the session with its resume_token and keeps the locks', async () => {
    const [lock, me] = [newLock(), newClient()];
    const first = openSession(follower, { client_id: me, grace_ms: 10000 });
    const secret = (await first.hello())['resume_token'] as string;
    const held = ok(await call(follower, 'Preempt', { lock_name: lock, client_id: me }, { session: secret }));
    first.cancel();
    const refused = openSession(other, { client_id: me });
    expect(await refused.done()).to.deep.include({ ok: false, status: grpc.status.FAILED_PRECONDITION, code: 'client_mismatch' });
    const second = openSession(other, { client_id: me, grace_ms: 10000, resume_token: secret });
    expect((await second.hello())['resume_token']).to.equal(secret);
    expect(ok(await call(leader, 'Check', { lock_name: lock }))).to.include({ owner: me, token: held['token'] });
    ok(await call(other, 'Release', { lock_name: lock, client_id: me, token: held['token'] }, { session: secret }));
  });

  it('Bye through the stream ends the session and the stream', async () => {
    const [lock, me] = [newLock(), newClient()];
    const stream = openSession(leader, { client_id: me });
    const secret = (await stream.hello())['resume_token'] as string;
    ok(await call(leader, 'Preempt', { lock_name: lock, client_id: me }, { session: secret }));
    expect(ok(await call(leader, 'Bye', { client_id: me }, { session: secret }))).to.deep.equal({});
    expect(await stream.done()).to.deep.equal({ ok: true, reply: {} });
    expect(ok(await call(leader, 'Check', { lock_name: lock }))).to.not.have.property('owner');
  });

  describe('error codes from the real node', () => {
    function expectError(result: CallResult, status: grpc.status, code: string): void {
      expect(result.ok, JSON.stringify(result)).to.equal(false);
      expect(result).to.deep.include({ status, code });
      expect((result as { details: string }).details.startsWith(`${code}: `)).to.equal(true);
    }

    it('lock_held (FAILED_PRECONDITION, with the owner) and timeout (DEADLINE_EXCEEDED)', async () => {
      const [lock, holder, rival] = [newLock(), newClient(), newClient()];
      ok(await call(follower, 'Preempt', { lock_name: lock, client_id: holder }));
      const held = await call(leader, 'Preempt', { lock_name: lock, client_id: rival });
      expectError(held, grpc.status.FAILED_PRECONDITION, 'lock_held');
      expect((held as { owner: string }).owner).to.equal(holder);
      expectError(await call(follower, 'Acquire', { lock_name: lock, client_id: rival, timeout_ms: 100 }), grpc.status.DEADLINE_EXCEEDED, 'timeout');
      await waitersOf(lock, 0);
    });

    it('not_owner and stale_token (PERMISSION_DENIED) on release and append', async () => {
      const [lock, file, holder, rival] = [newLock(), `${newLock()}.log`, newClient(), newClient()];
      const old = ok(await call(follower, 'Preempt', { lock_name: lock, client_id: holder }))['token'] as number;
      ok(await call(follower, 'Release', { lock_name: lock, client_id: holder }));
      const now = ok(await call(leader, 'Preempt', { lock_name: lock, client_id: holder }))['token'] as number;
      expect(now).to.be.greaterThan(old);
      expectError(await call(leader, 'Release', { lock_name: lock, client_id: rival }), grpc.status.PERMISSION_DENIED, 'not_owner');
      expectError(await call(follower, 'Append', { file, data: 'x', lock_name: lock, token: now, client_id: rival }), grpc.status.PERMISSION_DENIED, 'not_owner');
      expectError(await call(follower, 'Release', { lock_name: lock, client_id: holder, token: old }), grpc.status.PERMISSION_DENIED, 'stale_token');
      expectError(await call(leader, 'Append', { file, data: 'x', lock_name: lock, token: old, client_id: holder }), grpc.status.PERMISSION_DENIED, 'stale_token');
    });

    it('bad_request (INVALID_ARGUMENT) for a name that escapes, a token of 0 and a reused request_id', async () => {
      const [lock, me] = [newLock(), newClient()];
      expectError(await call(follower, 'Check', { lock_name: '../etc' }), grpc.status.INVALID_ARGUMENT, 'bad_request');
      expectError(await call(follower, 'Release', { lock_name: lock, client_id: me, token: 0 }), grpc.status.INVALID_ARGUMENT, 'bad_request');
      ok(await call(follower, 'Preempt', { lock_name: lock, client_id: me, request_id: 'same' }));
      expectError(await call(follower, 'Release', { lock_name: lock, client_id: me, request_id: 'same' }), grpc.status.INVALID_ARGUMENT, 'bad_request');
    });

    it('client_mismatch (FAILED_PRECONDITION): nobody acts for a stream session without its secret', async () => {
      const [lock, me] = [newLock(), newClient()];
      const stream = openSession(follower, { client_id: me });
      const secret = (await stream.hello())['resume_token'] as string;
      ok(await call(follower, 'Preempt', { lock_name: lock, client_id: me }, { session: secret }));
      // No secret (a connectionless call), a wrong one, the right one on a node without the
      // stream, and the right one naming another client: all refused, and the lock stays.
      expectError(await call(follower, 'Release', { lock_name: lock, client_id: me }), grpc.status.FAILED_PRECONDITION, 'client_mismatch');
      expectError(await call(follower, 'Release', { lock_name: lock, client_id: me }, { session: `${secret}x` }), grpc.status.FAILED_PRECONDITION, 'client_mismatch');
      expectError(await call(leader, 'Release', { lock_name: lock, client_id: me }, { session: secret }), grpc.status.FAILED_PRECONDITION, 'client_mismatch');
      expectError(await call(follower, 'Preempt', { lock_name: newLock(), client_id: newClient() }, { session: secret }), grpc.status.FAILED_PRECONDITION, 'client_mismatch');
      expect(ok(await call(leader, 'Check', { lock_name: lock }))).to.include({ owner: me });
    });
  });
});
