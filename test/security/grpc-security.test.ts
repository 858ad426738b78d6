// Issue 6 item 3 with issue 5: the auth token, TLS and the bounds apply to the gRPC front door
// as they do to TCP and HTTP (the token as `authorization: Bearer` metadata).
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { defaultStateLimits } from '../../lib/core/limits';
import { createTestCa, type TestCa } from '../helpers/certs';
import { call, newLocksClient, type CallResult, type LocksClient } from '../helpers/grpc-client';
import { startInProcessCluster, type InProcessCluster } from '../helpers/in-process-cluster';

const token = `tok-${randomUUID()}`;

function failure(result: CallResult): { status: grpc.status; code: string | undefined } {
  if (result.ok) throw new Error(`expected a failure, got ${JSON.stringify(result.reply)}`);
  return { status: result.status, code: result.code };
}

describe('security: gRPC with auth token, TLS and limits', function () {
  this.timeout(30000);
  let dir: string;
  let ca: TestCa;
  let cluster: InProcessCluster;
  let client: LocksClient;

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'latchkey-grpc-sec-'));
    ca = await createTestCa(dir, 'ca');
    const pem = await ca.issue('node');
    cluster = await startInProcessCluster({
      nodes: 1,
      nodeOptions: () => ({
        grpc: { host: '127.0.0.1', port: 0 },
        authToken: token,
        tls: { cert: pem.cert, key: pem.key, ca: ca.cert },
        limits: { ...defaultStateLimits, waitersPerLock: 1 },
      }),
    });
    await cluster.leader();
    const port = cluster.node('n1').addresses.grpc?.port as number;
    client = newLocksClient(port, grpc.credentials.createSsl(ca.cert));
  });

  after(async () => {
    client?.close();
    await cluster?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('refuses every call without the token, or with a wrong one, as UNAUTHENTICATED / unauthorized', async () => {
    const lock = `g-${randomUUID()}`;
    for (const bearer of [undefined, 'wrong']) {
      for (const [method, request] of [
        ['Status', {}], ['Check', { lock_name: lock }], ['Preempt', { lock_name: lock, client_id: randomUUID() }],
      ] as const) {
        const result = await call(client, method, request, bearer === undefined ? {} : { bearer });
        expect(failure(result), `${method} with ${String(bearer)}`).to.deep.equal({ status: grpc.status.UNAUTHENTICATED, code: 'unauthorized' });
      }
    }
    const check = await call(client, 'Check', { lock_name: lock }, { bearer: token });
    expect(check.ok ? check.reply : check).to.include({ lock_name: lock });
  });

  it('serves over TLS with the token, and maps a bound to RESOURCE_EXHAUSTED / limit_exceeded', async () => {
    const lock = `g-${randomUUID()}`;
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    const take = await call(client, 'Preempt', { lock_name: lock, client_id: a }, { bearer: token });
    expect(take.ok, JSON.stringify(take)).to.equal(true);
    const waiting = call(client, 'Acquire', { lock_name: lock, client_id: b, timeout_ms: 5000 }, { bearer: token });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const refused = await call(client, 'Acquire', { lock_name: lock, client_id: c, timeout_ms: 5000 }, { bearer: token });
    expect(failure(refused)).to.deep.equal({ status: grpc.status.RESOURCE_EXHAUSTED, code: 'limit_exceeded' });
    const release = await call(client, 'Release', { lock_name: lock, client_id: a }, { bearer: token });
    expect(release.ok, JSON.stringify(release)).to.equal(true);
    const granted = await waiting;
    expect(granted.ok && granted.reply['owner']).to.equal(b);
  });

  it('refuses a plaintext channel to the TLS port', async () => {
    const port = cluster.node('n1').addresses.grpc?.port as number;
    const plain = newLocksClient(port);
    try {
      const result = await call(plain, 'Status', {}, { bearer: token, deadlineMs: 3000 });
      expect(result.ok).to.equal(false);
    } finally {
      plain.close();
    }
  });
});
