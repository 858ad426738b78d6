// A connection's state-changing requests take a bounded share of the log (32 proposed and not
// yet applied); more wait their turn in the order they were sent. Requests keep their order and
// effect, and a blocked acquire (applied, waiting in the lock's queue) takes no share.
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { nodeForSuite } from '../helpers/node-process';
import { rawClientPool, type Message } from '../helpers/raw-client';

describe('security: a fair share of the log per connection', function () {
  this.timeout(30000);
  const node = nodeForSuite();
  const raw = rawClientPool(() => node().port);

  it('serves 300 pipelined takes in the order they were sent (tokens rise with the send order)', async () => {
    const c = await raw();
    const client = randomUUID();
    const prefix = `share-${randomUUID().slice(0, 8)}`;
    const answers = await Promise.all(Array.from({ length: 300 }, (_, i) =>
      c.request({ action: 'preempt', lock_name: `${prefix}/${i}`, client_id: client }, 15000)));
    const tokens = answers.map((a: Message) => {
      expect(a, JSON.stringify(a)).to.include({ ok: true });
      return a['token'] as number;
    });
    for (let i = 1; i < tokens.length; i++) expect(tokens[i], `take ${i}`).to.be.above(tokens[i - 1] as number);
  });

  it('blocked acquires take no share: 40 of them, and the connection still takes and releases', async () => {
    const owner = await raw();
    const ownerId = randomUUID();
    const prefix = `share-${randomUUID().slice(0, 8)}`;
    await Promise.all(Array.from({ length: 40 }, (_, i) => owner.request({ action: 'preempt', lock_name: `${prefix}/${i}`, client_id: ownerId })));
    const waiter = await raw();
    const waiterId = randomUUID();
    const blocked = Array.from({ length: 40 }, (_, i) => waiter.request({ action: 'acquire', lock_name: `${prefix}/${i}`, client_id: waiterId }, 20000));
    const free = await waiter.request({ action: 'preempt', lock_name: `${prefix}/free`, client_id: waiterId }, 5000);
    expect(free).to.include({ ok: true, owner: waiterId });
    expect(await waiter.request({ action: 'release', lock_name: `${prefix}/free`, client_id: waiterId }, 5000)).to.include({ ok: true });
    await Promise.all(Array.from({ length: 40 }, (_, i) => owner.request({ action: 'release', lock_name: `${prefix}/${i}`, client_id: ownerId })));
    for (const answer of await Promise.all(blocked)) expect(answer).to.include({ ok: true, owner: waiterId });
  });
});
