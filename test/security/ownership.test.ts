// Issue 5, item 4: a session's locks are released, used for append and kept alive only from
// the connection that owns the session, or by a reconnect that proves itself with the
// resume_token the node handed out at hello (not with the guessable client_id alone).
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { nodeForSuite } from '../helpers/node-process';
import { errorOf, rawClientPool, sleep } from '../helpers/raw-client';

describe('security: session ownership', function () {
  this.timeout(20000);
  const node = nodeForSuite();
  const raw = rawClientPool(() => node().port);

  it('refuses release, append, keepalive and bye from a connection that names the owner\'s client_id', async () => {
    const owner = await raw();
    const client = randomUUID();
    const lock = `own-${randomUUID()}`;
    await owner.request({ action: 'hello', client_id: client });
    const take = await owner.request({ action: 'preempt', lock_name: lock, client_id: client });
    expect(take).to.include({ ok: true });
    const token = take['token'] as number;
    const stranger = await raw();
    for (const request of [
      { action: 'release', lock_name: lock, client_id: client },
      { action: 'release', lock_name: lock, client_id: client, token },
      { action: 'append', lock_name: lock, client_id: client, token, file: lock, data: 'x' },
      { action: 'keepalive', client_id: client },
      { action: 'bye', client_id: client },
      { action: 'hello', client_id: client },
      { action: 'hello', client_id: client, resume_token: 'guessed' },
    ]) {
      const answer = await stranger.request(request);
      expect(answer['ok'], JSON.stringify(request)).to.equal(false);
      expect(errorOf(answer).code, JSON.stringify(request)).to.equal('client_mismatch');
    }
    const check = await stranger.request({ action: 'check', lock_name: lock });
    expect(check).to.include({ owner: client, token });
    const read = await stranger.request({ action: 'read', file: lock });
    expect(read).to.include({ ok: true, data: '' });
  });

  it('a stranger\'s keepalives do not keep someone else\'s session alive', async () => {
    const owner = await raw();
    const client = randomUUID();
    const lock = `own-${randomUUID()}`;
    await owner.request({ action: 'hello', client_id: client, ttl_ms: 600 });
    expect(await owner.request({ action: 'preempt', lock_name: lock, client_id: client })).to.include({ ok: true });
    const lost = owner.next((m) => m['event'] === 'lost', 8000);
    const stranger = await raw();
    // Keep sending keepalives for the owner's client_id from another connection for 2 ttl.
    for (let i = 0; i < 12; i++) {
      await stranger.request({ action: 'keepalive', client_id: client });
      await sleep(100);
    }
    expect(await lost).to.include({ event: 'lost', lock_name: lock, reason: 'session_expired' });
    const check = await stranger.request({ action: 'check', lock_name: lock });
    expect(check).to.include({ owner: null });
  });

  it('a reconnect with the resume_token takes the session over, locks and all', async () => {
    const first = await raw();
    const client = randomUUID();
    const lock = `own-${randomUUID()}`;
    const hello = await first.request({ action: 'hello', client_id: client, grace_ms: 5000 });
    const resume = hello['resume_token'] as string;
    expect(resume).to.be.a('string').with.length.greaterThan(20);
    const take = await first.request({ action: 'preempt', lock_name: lock, client_id: client });
    first.close();
    const second = await raw();
    const back = await second.request({ action: 'hello', client_id: client, resume_token: resume });
    expect(back).to.include({ ok: true, resume_token: resume });
    const append = await second.request({ action: 'append', lock_name: lock, client_id: client, token: take['token'], file: lock, data: 'mine' });
    expect(append).to.include({ ok: true, size: 4 });
    expect(await second.request({ action: 'release', lock_name: lock, client_id: client })).to.include({ ok: true });
  });
});
