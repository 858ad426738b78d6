// Peer authentication with a cluster secret (peer-auth.ts, peer-transport.ts): the proofs on
// their own, then two real PeerTransports on loopback, and a stranger who reaches the port and
// says `peer_hello` without knowing the secret. The goal: nothing from an unauthenticated
// connection reaches the node, and every refusal is logged without the secret.
import * as net from 'node:net';
import { expect } from 'chai';
import { createLogger, type Logger } from '../../lib/io/logger';
import { newNonce, proof, proofMatches, type Handshake } from '../../lib/io/peer-auth';
import { PeerTransport } from '../../lib/io/peer-transport';
import type { PeerMessage } from '../../lib/replica/peer-messages';
import { freePorts } from '../../lib/scenario/cluster';
import { sleep } from '../helpers/raw-client';

const secret = Buffer.from('correct horse battery staple');
const otherSecret = Buffer.from('incorrect horse');

describe('peer auth: proofs', () => {
  const handshake: Handshake = { from: 'n1', to: 'n2', dialerNonce: newNonce(), acceptorNonce: newNonce() };

  it('a proof matches only for the same secret, role, ids and nonces', () => {
    const good = proof(secret, 'dial', handshake);
    expect(proofMatches(secret, 'dial', handshake, good)).to.equal(true);
    expect(proofMatches(otherSecret, 'dial', handshake, good)).to.equal(false);
    // The acceptor's proof cannot be reflected back as the dialer's.
    expect(proofMatches(secret, 'accept', handshake, good)).to.equal(false);
    expect(proofMatches(secret, 'dial', { ...handshake, from: 'n3' }, good)).to.equal(false);
    expect(proofMatches(secret, 'dial', { ...handshake, from: 'n2', to: 'n1' }, good)).to.equal(false);
    expect(proofMatches(secret, 'dial', { ...handshake, acceptorNonce: newNonce() }, good)).to.equal(false);
    expect(proofMatches(secret, 'dial', { ...handshake, dialerNonce: newNonce() }, good)).to.equal(false);
  });

  it('malformed proofs are refused, not thrown on', () => {
    for (const given of [undefined, null, 42, '', 'zz', proof(secret, 'dial', handshake).slice(2), `${proof(secret, 'dial', handshake)}00`]) {
      expect(proofMatches(secret, 'dial', handshake, given)).to.equal(false);
    }
  });
});

interface Side {
  transport: PeerTransport;
  received: PeerMessage[];
  logs: Array<Record<string, unknown>>;
  logText: string[];
  server: net.Server;
}

/** Nodes n1 and n2, each with a listener that hands every connection to its transport (as the
 *  client listener does with a peer hello). */
async function startPair(secrets: { n1?: Buffer; n2?: Buffer }, authTimeoutMs = 5000): Promise<{ n1: Side; n2: Side; ports: number[]; stop(): Promise<void> }> {
  const ports = await freePorts(2);
  const peers = new Map([['n1', { host: '127.0.0.1', port: ports[0] as number }], ['n2', { host: '127.0.0.1', port: ports[1] as number }]]);
  const sides: Side[] = [];
  for (const id of ['n1', 'n2'] as const) {
    const received: PeerMessage[] = [];
    const logs: Array<Record<string, unknown>> = [];
    const logText: string[] = [];
    const logger: Logger = createLogger('info', { node: id }, (line) => {
      logText.push(line);
      logs.push(JSON.parse(line) as Record<string, unknown>);
    });
    const secretOfSide = secrets[id];
    const transport = new PeerTransport({
      selfId: id, peers, logger, authTimeoutMs, onMessage: (m) => received.push(m),
      ...(secretOfSide === undefined ? {} : { clusterSecret: secretOfSide }),
    });
    const server = net.createServer((socket) => transport.adopt(socket, Buffer.alloc(0)));
    await new Promise<void>((resolve) => server.listen(peers.get(id)?.port, '127.0.0.1', () => resolve()));
    sides.push({ transport, received, logs, logText, server });
  }
  const [n1, n2] = sides as [Side, Side];
  return {
    n1, n2, ports,
    stop: async () => {
      for (const side of sides) side.transport.close();
      await Promise.all(sides.map((side) => new Promise<void>((resolve) => side.server.close(() => resolve()))));
    },
  };
}

function vote(from: string, to: string, term: number): PeerMessage {
  return { type: 'vote', term, from, to, lastIndex: 0, lastTerm: 0, pre: false };
}

/** Sends `message` from n1 to n2 every 20 ms until n2 has it or `timeoutMs` passed. */
async function deliver(pair: { n1: Side; n2: Side }, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    pair.n1.transport.send([vote('n1', 'n2', 7)]);
    await sleep(20);
    if (pair.n2.received.length > 0) return true;
  }
  return false;
}

function refusals(side: Side): Array<Record<string, unknown>> {
  return side.logs.filter((line) => line['event'] === 'peer_refused');
}

/** A raw connection to `port` that records what comes back and when it closes. */
async function stranger(port: number): Promise<{ socket: net.Socket; lines: string[]; closed: Promise<void> }> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  const lines: string[] = [];
  let buffer = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      lines.push(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
    }
  });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, lines, closed };
}

async function closesWithin(closed: Promise<void>, ms: number): Promise<boolean> {
  return Promise.race([closed.then(() => true), sleep(ms).then(() => false)]);
}

describe('peer auth: PeerTransport with a cluster secret', function () {
  this.timeout(20000);
  let pair: Awaited<ReturnType<typeof startPair>> | undefined;

  afterEach(async () => {
    await pair?.stop();
    pair = undefined;
  });

  it('without secrets, messages flow as before', async () => {
    pair = await startPair({});
    expect(await deliver(pair, 5000)).to.equal(true);
  });

  it('with the same secret on both sides, messages flow once the handshake is done', async () => {
    pair = await startPair({ n1: secret, n2: secret });
    expect(await deliver(pair, 5000)).to.equal(true);
    expect(pair.n2.received[0]).to.deep.include({ type: 'vote', from: 'n1', to: 'n2' });
    expect(refusals(pair.n1)).to.deep.equal([]);
    expect(refusals(pair.n2)).to.deep.equal([]);
  });

  it('with different secrets nothing flows, both sides log peer_refused, and the secret is never logged', async () => {
    pair = await startPair({ n1: secret, n2: otherSecret });
    expect(await deliver(pair, 1500)).to.equal(false);
    // n1 dials n2: n2's challenge proof is wrong for n1's secret, so the dialer refuses.
    expect(refusals(pair.n1).some((line) => line['from'] === 'n1' && line['to'] === 'n2')).to.equal(true);
    // n2 dials n1: the same, seen from the other side.
    expect(refusals(pair.n2).some((line) => line['from'] === 'n2' && line['to'] === 'n1')).to.equal(true);
    const allLogs = [...pair.n1.logText, ...pair.n2.logText].join('');
    expect(allLogs).to.not.include(secret.toString());
    expect(allLogs).to.not.include(otherSecret.toString());
  });

  it('a node with a secret refuses a peer without one, and the other way round', async () => {
    pair = await startPair({ n2: secret });
    expect(await deliver(pair, 1500)).to.equal(false);
    expect(refusals(pair.n2).some((line) => line['from'] === 'n1' && /nonce/.test(String(line['reason'])))).to.equal(true);
    expect(refusals(pair.n1).some((line) => line['from'] === 'n2' && /secret/.test(String(line['reason'])))).to.equal(true);
  });

  it('a hello without proof, a message before the proof, and a wrong proof are refused; nothing is passed on', async () => {
    pair = await startPair({ n1: secret, n2: secret });
    const port = pair.ports[1] as number;
    const cases: Array<{ name: string; play(s: Awaited<ReturnType<typeof stranger>>): Promise<void> }> = [
      { name: 'no nonce', play: async (s) => { s.socket.write(`${JSON.stringify({ type: 'peer_hello', from: 'n1', to: 'n2' })}\n${JSON.stringify(vote('n1', 'n2', 99))}\n`); } },
      { name: 'message before proof', play: async (s) => { s.socket.write(`${JSON.stringify({ type: 'peer_hello', from: 'n1', to: 'n2', nonce: newNonce() })}\n${JSON.stringify(vote('n1', 'n2', 99))}\n`); } },
      {
        name: 'wrong proof',
        play: async (s) => {
          const dialerNonce = newNonce();
          s.socket.write(`${JSON.stringify({ type: 'peer_hello', from: 'n1', to: 'n2', nonce: dialerNonce })}\n`);
          while (s.lines.length === 0) await sleep(10);
          const challenge = JSON.parse(s.lines[0] as string) as { nonce: string };
          const forged = proof(otherSecret, 'dial', { from: 'n1', to: 'n2', dialerNonce, acceptorNonce: challenge.nonce });
          s.socket.write(`${JSON.stringify({ type: 'peer_proof', proof: forged })}\n${JSON.stringify(vote('n1', 'n2', 99))}\n`);
        },
      },
      { name: 'unknown node', play: async (s) => { s.socket.write(`${JSON.stringify({ type: 'peer_hello', from: 'mallory', to: 'n2', nonce: newNonce() })}\n`); } },
    ];
    for (const { name, play } of cases) {
      const before = refusals(pair.n2).length;
      const s = await stranger(port);
      await play(s);
      expect(await closesWithin(s.closed, 3000), name).to.equal(true);
      expect(refusals(pair.n2).length, name).to.equal(before + 1);
    }
    expect(pair.n2.received).to.deep.equal([]);
  });

  it('an unauthenticated peer connection is cut after the auth timeout', async () => {
    pair = await startPair({ n1: secret, n2: secret }, 300);
    const s = await stranger(pair.ports[1] as number);
    s.socket.write(`${JSON.stringify({ type: 'peer_hello', from: 'n1', to: 'n2', nonce: newNonce() })}\n`);
    const startedMs = Date.now();
    expect(await closesWithin(s.closed, 5000)).to.equal(true);
    expect(Date.now() - startedMs).to.be.at.least(200);
    expect(refusals(pair.n2).some((line) => /within 300 ms/.test(String(line['reason'])))).to.equal(true);
  });
});
