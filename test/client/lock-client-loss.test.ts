// A Lock handle's signal: aborted by the server's `lost` event, and on the client's own clock
// when keepalives stop being answered (DESIGN §3) or the lease runs out.
import { expect } from 'chai';
import { LatchkeyError, LockClient } from '../../lib/index';
import { safetyMarginMs } from '../../lib/client/keepalive';
import { FakeServer, delay, whenAborted, type Message } from '../helpers/fake-server';

describe('LockClient lost locks', () => {
  let server: FakeServer;
  let client: LockClient;

  afterEach(async () => {
    await client.close();
    await server.close();
  });

  it('a lost event aborts the handle with the matching name and token only', async () => {
    server = await FakeServer.start();
    client = new LockClient({ servers: [server.address] });
    const lock = await client.preempt('L');
    const other = await client.preempt('M');

    server.pushAll({ event: 'lost', lock_name: 'L', token: lock.token + 100, reason: 'session_expired' });
    server.pushAll({ event: 'some_future_event', lock_name: 'L' });
    await client.check('L'); // a round trip, so both events were read
    expect(lock.signal.aborted).to.equal(false);

    server.expire('L', 'lease_expired');
    await whenAborted(lock.signal, 2000);
    expect(lock.lostReason).to.equal('lease_expired');
    expect(lock.signal.reason).to.be.instanceOf(LatchkeyError);
    expect((lock.signal.reason as LatchkeyError).code).to.equal('not_owner');
    expect(other.signal.aborted).to.equal(false);
  });

  it('sends keepalives every ttl/3', async () => {
    server = await FakeServer.start({ ttlMs: 300 });
    client = new LockClient({ servers: [server.address] });
    await client.connect();
    await delay(650);
    const count = server.requests('keepalive').length;
    expect(count).to.be.within(5, 7);
    expect(server.requests('keepalive')[0]).to.deep.include({ action: 'keepalive', client_id: client.clientId });
  });

  it('aborts on the client clock before ttl passes since the last answered keepalive was SENT', async () => {
    const ttlMs = 600;
    const answerDelayMs = 100;
    server = await FakeServer.start({ ttlMs });
    // Answers come late, as from a busy leader: a client that counted from the answer instead
    // of the send would trust its lock for answerDelayMs too long, past the server's expiry.
    let answering = true;
    const answeredAtMs: number[] = [];
    server.intercept = (m, conn) => {
      if (m['action'] !== 'keepalive') return undefined;
      if (answering) {
        answeredAtMs.push(performance.now());
        setTimeout(() => conn.answer(m['id'], { ok: true, ttl_ms: ttlMs }), answerDelayMs);
      }
      return 'drop';
    };
    client = new LockClient({ servers: [server.address] });
    const lock = await client.preempt('L');

    await delay(2 * ttlMs); // keepalives answered: the lock stays
    expect(lock.signal.aborted).to.equal(false);

    answering = false;
    const lastAnsweredArrivalMs = answeredAtMs[answeredAtMs.length - 1] as number;
    const abortedAtMs = await whenAborted(lock.signal, 3 * ttlMs);

    expect(lock.lostReason).to.equal('keepalive_overdue');
    // The server would expire the session ttl after the keepalive arrived, no earlier.
    expect(abortedAtMs - lastAnsweredArrivalMs).to.be.below(ttlMs);
    // ...and the client did not give up much earlier than its margin asks.
    expect(abortedAtMs - lastAnsweredArrivalMs).to.be.above(ttlMs - safetyMarginMs(ttlMs) - answerDelayMs - 20);
    // Our own clock gave up, not the server: the client hands the lock back.
    server.intercept = null;
    await server.waitFor((m: Message) => m['action'] === 'release' && m['token'] === lock.token, 3000);
  });

  it('a grant arriving when keepalives are overdue is lost at once', async () => {
    server = await FakeServer.start({ ttlMs: 300 });
    server.intercept = (m) => (m['action'] === 'keepalive' ? 'drop' : undefined);
    client = new LockClient({ servers: [server.address] });
    await client.connect();
    await delay(400);

    const lock = await client.preempt('L');
    expect(lock.signal.aborted).to.equal(true);
    expect(lock.lostReason).to.equal('keepalive_overdue');
  });

  it('reading the signal re-checks the clock even if timers could not run', async () => {
    server = await FakeServer.start({ ttlMs: 300 });
    server.intercept = (m) => (m['action'] === 'keepalive' ? 'drop' : undefined);
    client = new LockClient({ servers: [server.address] });
    const lock = await client.preempt('L');
    const untilMs = performance.now() + 400;
    while (performance.now() < untilMs) { /* a blocked event loop: no timer fires */ }
    expect(lock.signal.aborted).to.equal(true);
  });

  it('a lease aborts the handle on the client clock, a little before leaseMs', async () => {
    server = await FakeServer.start();
    client = new LockClient({ servers: [server.address] });
    const startedMs = performance.now();
    const lock = await client.preempt('L', { leaseMs: 300 });
    expect(server.requests('preempt')[0]).to.include({ lease_ms: 300 });

    const abortedAtMs = await whenAborted(lock.signal, 2000);
    expect(lock.lostReason).to.equal('lease_overdue');
    expect(abortedAtMs - startedMs).to.be.below(300);
    expect(abortedAtMs - startedMs).to.be.above(300 - safetyMarginMs(300) - 20);
  });
});
