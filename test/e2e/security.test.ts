// Security of the node's ports (issue 5): TLS for clients, peers and HTTP, and peer
// authentication with a cluster secret. In-process 3-node clusters on loopback, with
// certificates made at test time (helpers/certs.ts). Each story checks what a stranger can NOT
// do, next to what a member or a client can.
import { promises as fs } from 'node:fs';
import https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import * as tls from 'node:tls';
import { expect } from 'chai';
import { runClient } from '../../lib/cli/client-cmd';
import { LockClient } from '../../lib/index';
import { newNonce } from '../../lib/io/peer-auth';
import type { TlsMaterial } from '../../lib/io/tls-options';
import { Capture } from '../helpers/capture';
import { createTestCa, type PemPair, type TestCa } from '../helpers/certs';
import { startInProcessCluster, type InProcessCluster } from '../helpers/in-process-cluster';
import { sleep } from '../helpers/raw-client';

/** What a peer-port stranger sends to make a node adopt a far higher term, if it were heard. */
const strangerTerm = 1000;

function appendFrom(from: string, to: string, term: number): Record<string, unknown> {
  return { type: 'append', term, from, to, prevIndex: 0, prevTerm: 0, entries: [], commit: 0, read: 0 };
}

/** Writes `lines` on `socket` and waits until the node closed it (true) or `ms` passed (false). */
async function sendAndWaitClose(socket: net.Socket, lines: unknown[], ms: number): Promise<boolean> {
  const closed = new Promise<boolean>((resolve) => socket.once('close', () => resolve(true)));
  socket.on('error', () => undefined);
  socket.resume(); // read (and drop) a challenge, or 'close' waits for it to be read
  socket.write(lines.map((line) => `${JSON.stringify(line)}\n`).join(''));
  return Promise.race([closed, sleep(ms).then(() => false)]);
}

function connectTcp(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

function connectTls(port: number, options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...options });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

function refusals(cluster: InProcessCluster, id: string): Array<Record<string, unknown>> {
  return cluster.logs(id).filter((line) => line['event'] === 'peer_refused');
}

describe('e2e: security', function () {
  this.timeout(60000);
  let dir: string;
  let ca: TestCa;
  let nodePem: PemPair;
  let strangerCa: TestCa;
  let strangerPem: PemPair;
  let material: TlsMaterial;
  let cluster: InProcessCluster | undefined;
  const clients: LockClient[] = [];

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'latchkey-certs-'));
    ca = await createTestCa(dir, 'cluster-ca');
    nodePem = await ca.issue('node');
    strangerCa = await createTestCa(dir, 'stranger-ca');
    strangerPem = await strangerCa.issue('stranger');
    material = { cert: nodePem.cert, key: nodePem.key, ca: ca.cert };
  });

  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => Promise.race([c.close(), sleep(2000)])));
    await cluster?.stop();
    cluster = undefined;
  });

  describe('TLS', () => {
    beforeEach(async () => {
      cluster = await startInProcessCluster({ nodes: 3, http: true, nodeOptions: () => ({ tls: material }) });
    });

    it('elects a leader over TLS peer links and serves LockClient preempt/release over TLS', async () => {
      const c = cluster as InProcessCluster;
      await c.leader();
      const client = new LockClient({ servers: c.ids.map((id) => `127.0.0.1:${c.port(id)}`), tls: { ca: ca.cert } });
      clients.push(client);
      const lock = await client.preempt('tls-lock');
      expect(lock.token).to.be.a('number');
      expect((await client.check('tls-lock')).owner).to.equal(client.clientId);
      await lock.release();
      expect((await client.check('tls-lock')).owner).to.equal(null);
    });

    it('the client command speaks TLS with --tls-ca', async () => {
      const c = cluster as InProcessCluster;
      await c.leader();
      const stdout = new Capture();
      const stderr = new Capture();
      const stdin = new PassThrough();
      stdin.end();
      const servers = c.ids.map((id) => `127.0.0.1:${c.port(id)}`).join(',');
      const code = await runClient(['--server', servers, '--tls-ca', ca.certPath, 'notes', 'WRITE', 'over tls'], {
        stdin, stdout, stderr, env: {}, terminal: false,
      });
      expect(stderr.text).to.equal('');
      expect(code).to.equal(0);
      expect(stdout.text).to.include("WROTE 'over tls' to notes");
    });

    it('a client that does not trust the CA does not connect', async () => {
      const c = cluster as InProcessCluster;
      await c.leader();
      const client = new LockClient({ servers: [`127.0.0.1:${c.port('n1')}`], tls: { ca: strangerCa.cert }, requestTimeoutMs: 1500 });
      clients.push(client);
      let error: unknown;
      await client.preempt('x').catch((err: unknown) => { error = err; });
      expect(error).to.have.property('code', 'unavailable');
    });

    it('a plain-TCP client gets nothing served', async () => {
      const c = cluster as InProcessCluster;
      await c.leader();
      const socket = await connectTcp(c.port('n1'));
      const received: string[] = [];
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => received.push(chunk));
      const closed = await sendAndWaitClose(socket, [{ id: 1, action: 'status' }], 5000);
      socket.destroy();
      expect(closed).to.equal(true);
      expect(received.join('')).to.not.include('"ok"');
    });

    it('refuses a peer whose certificate another CA signed, or that shows none, and logs why', async () => {
      const c = cluster as InProcessCluster;
      const leader = await c.leader();
      const victim = c.ids.find((id) => id !== leader) as string;
      const termBefore = c.node(victim).status().term;
      const from = c.ids.find((id) => id !== victim) as string;
      const attempts: Array<{ name: string; options: tls.ConnectionOptions }> = [
        { name: 'another CA', options: { cert: strangerPem.cert, key: strangerPem.key, ca: ca.cert, servername: 'localhost' } },
        { name: 'no certificate', options: { ca: ca.cert, servername: 'localhost' } },
      ];
      for (const { name, options } of attempts) {
        const before = refusals(c, victim).length;
        const socket = await connectTls(c.port(victim), options);
        const hello = { type: 'peer_hello', from, to: victim };
        const closed = await sendAndWaitClose(socket, [hello, appendFrom(from, victim, strangerTerm)], 5000);
        socket.destroy();
        expect(closed, name).to.equal(true);
        const refused = refusals(c, victim).slice(before);
        expect(refused, name).to.have.length(1);
        expect(String(refused[0]?.['reason']), name).to.match(/^TLS: /);
      }
      expect(c.node(victim).status().term).to.be.below(strangerTerm);
      expect(c.node(victim).status().term).to.be.at.least(termBefore);
    });

    it('a peer with a certificate of the cluster CA is heard (the refusal above is the CA\'s doing)', async () => {
      // The control for the test above: the same hello and append, over TLS with the cluster's
      // own certificate and no cluster secret, does move the node to the stranger's term.
      const c = cluster as InProcessCluster;
      const leader = await c.leader();
      const victim = c.ids.find((id) => id !== leader) as string;
      const socket = await connectTls(c.port(victim), { cert: nodePem.cert, key: nodePem.key, ca: ca.cert, servername: 'localhost' });
      socket.on('error', () => undefined);
      const from = c.ids.find((id) => id !== victim) as string;
      socket.write(`${JSON.stringify({ type: 'peer_hello', from, to: victim })}\n${JSON.stringify(appendFrom(from, victim, strangerTerm))}\n`);
      const deadline = Date.now() + 5000;
      while (c.node(victim).status().term < strangerTerm && Date.now() < deadline) await sleep(20);
      socket.destroy();
      expect(c.node(victim).status().term).to.be.at.least(strangerTerm);
    });

    it('serves HTTPS on the --http port', async () => {
      const c = cluster as InProcessCluster;
      await c.leader();
      const port = c.node('n1').addresses.http?.port as number;
      const body = await new Promise<string>((resolve, reject) => {
        https.get({ host: '127.0.0.1', port, path: '/v1/status', ca: ca.cert }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => { text += chunk; });
          res.on('end', () => resolve(text));
        }).on('error', reject);
      });
      expect(JSON.parse(body)).to.include({ ok: true, node: 'n1' });
    });
  });

  describe('cluster secret', () => {
    const secret = Buffer.from('s3cret-for-tests');

    it('a cluster with the same secret elects a leader and serves', async () => {
      cluster = await startInProcessCluster({ nodes: 3, nodeOptions: () => ({ clusterSecret: secret }) });
      await cluster.leader();
      const client = new LockClient({ servers: cluster.ids.map((id) => `127.0.0.1:${(cluster as InProcessCluster).port(id)}`) });
      clients.push(client);
      const lock = await client.preempt('secret-lock');
      await lock.release();
      for (const id of cluster.ids) expect(refusals(cluster, id)).to.deep.equal([]);
    });

    it('a stranger without the secret is refused and cannot change a node\'s term', async () => {
      cluster = await startInProcessCluster({ nodes: 3, nodeOptions: () => ({ clusterSecret: secret }) });
      const c = cluster;
      const leader = await c.leader();
      const victim = c.ids.find((id) => id !== leader) as string;
      const from = leader; // the most convincing lie: "I am your leader"
      const attempts: Array<{ name: string; lines: unknown[] }> = [
        { name: 'no proof', lines: [{ type: 'peer_hello', from, to: victim }, appendFrom(from, victim, strangerTerm)] },
        {
          name: 'append instead of a proof',
          lines: [{ type: 'peer_hello', from, to: victim, nonce: newNonce() }, appendFrom(from, victim, strangerTerm)],
        },
        {
          name: 'wrong proof',
          lines: [{ type: 'peer_hello', from, to: victim, nonce: newNonce() }, { type: 'peer_proof', proof: 'ab'.repeat(32) }, appendFrom(from, victim, strangerTerm)],
        },
        { name: 'vote instead of a proof', lines: [{ type: 'peer_hello', from, to: victim, nonce: newNonce() }, { type: 'vote', term: strangerTerm, from, to: victim, lastIndex: 1e9, lastTerm: 1e9, pre: false }] },
      ];
      for (const { name, lines } of attempts) {
        const before = refusals(c, victim).length;
        const socket = await connectTcp(c.port(victim));
        expect(await sendAndWaitClose(socket, lines, 5000), name).to.equal(true);
        expect(refusals(c, victim).length, name).to.equal(before + 1);
      }
      await sleep(200);
      expect(c.node(victim).status().term).to.be.below(strangerTerm);
    });

    it('without a secret, the same stranger does move the term (the control for the test above)', async () => {
      cluster = await startInProcessCluster({ nodes: 3 });
      const c = cluster;
      const leader = await c.leader();
      const victim = c.ids.find((id) => id !== leader) as string;
      const socket = await connectTcp(c.port(victim));
      socket.on('error', () => undefined);
      socket.write(`${JSON.stringify({ type: 'peer_hello', from: leader, to: victim })}\n${JSON.stringify(appendFrom(leader, victim, strangerTerm))}\n`);
      const deadline = Date.now() + 5000;
      while (c.node(victim).status().term < strangerTerm && Date.now() < deadline) await sleep(20);
      socket.destroy();
      expect(c.node(victim).status().term).to.be.at.least(strangerTerm);
    });

    it('a node configured with another secret does not join', async () => {
      cluster = await startInProcessCluster({
        nodes: 3,
        nodeOptions: (id) => ({ clusterSecret: id === 'n3' ? Buffer.from('another secret') : secret }),
      });
      const c = cluster;
      const leader = await c.leader(['n1', 'n2']);
      const client = new LockClient({ servers: [`127.0.0.1:${c.port(leader)}`] });
      clients.push(client);
      await (await client.preempt('committed-without-n3')).release();
      await sleep(1000); // many heartbeats: n3 would have heard of the leader by now
      const n3 = c.node('n3').status();
      expect(n3.leader).to.equal(null);
      expect(n3.commit_index).to.equal(0);
      expect(c.node(leader).status().commit_index).to.be.above(0);
      expect(refusals(c, 'n3').length).to.be.above(0);
      expect(refusals(c, leader).some((line) => line['from'] === 'n3' || line['to'] === 'n3')).to.equal(true);
    });
  });
});
