// PROTOCOL §1 `--auth-token-file`: with a token configured, a node serves nothing, and changes
// nothing, for a client that has not presented it (issue 5, item 1).
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { LockClient, LatchkeyError } from '../../lib';
import { cleanupNodeProcesses, makeTempDir, startNodeProcess, type NodeProcess } from '../helpers/node-process';
import { errorOf, rawClientPool, waitFor, type RawClient } from '../helpers/raw-client';

const token = `tok-${randomUUID()}`;

describe('security: client auth token', function () {
  this.timeout(20000);
  let node: NodeProcess;
  const raw = rawClientPool(() => node.port);

  async function authed(): Promise<RawClient> {
    const c = await raw();
    const hello = await c.request({ action: 'hello', client_id: randomUUID(), auth: token });
    expect(hello, JSON.stringify(hello)).to.include({ ok: true });
    return c;
  }

  const http = (method: string, route: string, headers: Record<string, string> = {}, body?: unknown): Promise<Response> =>
    fetch(`http://127.0.0.1:${node.httpPort}${route}`, {
      method, headers: { 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  before(async () => {
    const dir = await makeTempDir('latchkey-auth-');
    const file = path.join(dir, 'token');
    await fs.writeFile(file, `${token}\n`);
    node = await startNodeProcess({ http: true, args: ['--auth-token-file', file], waitLeader: false });
    // The helper's leader probe has no token; wait here with one.
    await waitFor(async () => {
      const c = await authed();
      const status = await c.request({ action: 'status' });
      c.close();
      return status;
    }, (s) => s['role'] === 'leader', 10000);
  });

  after(async () => {
    await node?.stop();
    await cleanupNodeProcesses();
  });

  it('answers unauthorized to every request before the token, and applies none of them', async () => {
    const c = await raw();
    const lock = `auth-${randomUUID()}`;
    const client = randomUUID();
    for (const request of [
      { action: 'status' },
      { action: 'check', lock_name: lock },
      { action: 'preempt', lock_name: lock, client_id: client },
      { action: 'hello', client_id: client },
    ]) {
      const answer = await c.request(request);
      expect(answer['ok'], JSON.stringify(answer)).to.equal(false);
      expect(errorOf(answer).code).to.equal('unauthorized');
    }
    const wrong = await c.request({ action: 'hello', client_id: client, auth: `${token}x` });
    expect(errorOf(wrong)).to.deep.include({ code: 'unauthorized', message: 'wrong auth token' });
    // Another connection, with the token, sees the lock was never taken.
    const other = await authed();
    const check = await other.request({ action: 'check', lock_name: lock });
    expect(check).to.include({ ok: true, owner: null, token: null });
    // The refused connection may still present the token and be served.
    const hello = await c.request({ action: 'hello', client_id: client, auth: token });
    expect(hello).to.include({ ok: true, client_id: client });
    const take = await c.request({ action: 'preempt', lock_name: lock, client_id: client });
    expect(take).to.include({ ok: true, owner: client });
  });

  it('LockClient presents its authToken option; without it the node refuses', async () => {
    const good = new LockClient({ servers: [`127.0.0.1:${node.port}`], authToken: token });
    const bad = new LockClient({ servers: [`127.0.0.1:${node.port}`], requestTimeoutMs: 3000 });
    try {
      const lock = await good.preempt(`auth-lc-${randomUUID()}`);
      expect(lock.token).to.be.a('number');
      await lock.release();
      const failure = await bad.preempt('auth-lc-x').then(() => null, (err: unknown) => err);
      expect(failure).to.be.instanceOf(LatchkeyError);
      expect((failure as LatchkeyError).code).to.equal('unauthorized');
    } finally {
      await good.close();
      await bad.close();
    }
  });

  it('HTTP needs Authorization: Bearer for actions, status and metrics, but not /healthz', async () => {
    const lock = `auth-http-${randomUUID()}`;
    const body = { lock_name: lock, client_id: randomUUID() };
    const none = await http('POST', '/v1/preempt', {}, body);
    expect(none.status).to.equal(401);
    expect(((await none.json()) as { error: { code: string } }).error.code).to.equal('unauthorized');
    const wrong = await http('POST', '/v1/preempt', { authorization: 'Bearer nope' }, body);
    expect(wrong.status).to.equal(401);
    for (const route of ['/v1/status', '/metrics']) {
      const refused = await http('GET', route);
      expect(refused.status, route).to.equal(401);
      expect(refused.headers.get('www-authenticate'), route).to.equal('Bearer');
      const served = await http('GET', route, { authorization: `Bearer ${token}` });
      expect(served.status, route).to.equal(200);
    }
    expect((await http('GET', '/healthz')).status).to.equal(200);
    const check = await http('POST', '/v1/check', { authorization: `Bearer ${token}` }, { lock_name: lock });
    expect(await check.json()).to.include({ ok: true, owner: null });
    const take = await http('POST', '/v1/preempt', { authorization: `Bearer ${token}` }, body);
    expect(take.status).to.equal(200);
    expect(await take.json()).to.include({ ok: true, owner: body.client_id });
  });

  it('refuses to start with an empty or unreadable token file, saying which', async () => {
    const dir = await makeTempDir('latchkey-auth-');
    const empty = path.join(dir, 'empty');
    await fs.writeFile(empty, '\n');
    for (const [file, expected] of [[empty, /is empty/], [path.join(dir, 'missing'), /cannot read/]] as const) {
      const n = await startNodeProcess({ args: ['--auth-token-file', file], waitLeader: false }).then(
        (started) => started, (err: unknown) => err as Error,
      );
      if (n instanceof Error) {
        expect(n.message).to.match(expected);
      } else {
        const exit = await n.waitExit();
        expect(exit.code).to.equal(2);
        expect(n.stderr()).to.match(expected);
      }
    }
  });
});
