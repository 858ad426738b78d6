// Node-to-node messages over TCP (or TLS). Each node dials every other node at the address
// `--peers` gives for it and sends its messages on that outbound connection only; it receives on
// the connections the others dialled. A peer connection shares the client port and announces
// itself with a `peer_hello` first line (the client listener hands such sockets over here).
// With a cluster secret, the hello opens a challenge-response (peer-auth.ts) and nothing else
// passes either way until both sides proved they know the secret.
//
// Messages queued in one turn of the event loop leave in one write per peer. While a peer is
// unreachable its messages are dropped: Raft re-sends what matters, and a bounded queue is
// better than an unbounded one for a peer that may never come back.
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { Logger } from './logger';
import type { PeerMessage } from '../replica/peer-messages';
import { encodePeerMessage } from './entry-codec';
import { isNonce, newNonce, proof, proofMatches, type Handshake } from './peer-auth';
import { peerDialTlsOptions, type TlsMaterial } from './tls-options';

export const peerHelloPrefix = '{"type":"peer_hello"';
/** Peer frames carry whole batches and snapshots; this bounds one line. */
const peerFrameBytesMax = 256 * 1024 * 1024;
/** A line of the handshake (hello, challenge, proof) is small; an unauthenticated peer gets no
 *  more room than this. */
const handshakeLineBytesMax = 4096;
const authTimeoutMsDefault = 5000;
const reconnectMsMin = 20;
const reconnectMsMax = 1000;

export interface PeerTransportOptions {
  selfId: string;
  peers: Map<string, { host: string; port: number }>;
  onMessage: (message: PeerMessage) => void;
  logger: Logger;
  /** With a secret, every peer connection must pass the challenge-response of peer-auth.ts. */
  clusterSecret?: Buffer;
  /** With TLS material, outbound links are TLS, checked against its CA (tls-options.ts). */
  tls?: TlsMaterial;
  /** How long a peer connection may stay unauthenticated before it is cut. Default 5000. */
  authTimeoutMs?: number;
}

type Wire = Record<string, unknown>;

class OutboundPeer {
  private socket: net.Socket | null = null;
  /** Authenticated (or, without a secret, hello sent): messages may be written. */
  private connected = false;
  private queue: string[] = [];
  private scheduled = false;
  private backoffMs = reconnectMsMin;
  private timer: NodeJS.Timeout | null = null;
  private authTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly options: PeerTransportOptions,
    private readonly peerId: string,
    private readonly address: { host: string; port: number },
  ) {
    this.connect();
  }

  send(line: string): void {
    if (!this.connected) return;
    this.queue.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Writes what is queued now (the scheduled flush then finds nothing to do). */
  flush(): void {
    this.scheduled = false;
    if (!this.connected || this.socket === null || this.queue.length === 0) {
      this.queue = [];
      return;
    }
    const text = `${this.queue.join('\n')}\n`;
    this.queue = [];
    this.socket.write(text);
  }

  private connect(): void {
    if (this.closed) return;
    const { host, port } = this.address;
    const material = this.options.tls;
    const socket = material === undefined
      ? net.connect(port, host)
      : tls.connect({ ...peerDialTlsOptions(material), host, port });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on(material === undefined ? 'connect' : 'secureConnect', () => this.hello(socket));
    socket.on('error', (err) => this.options.logger.debug('peer_socket_error', { peer: this.peerId, error: err.message }));
    socket.on('close', () => {
      this.connected = false;
      this.queue = [];
      if (this.authTimer !== null) clearTimeout(this.authTimer);
      if (this.socket === socket) this.socket = null;
      if (this.closed) return;
      this.timer = setTimeout(() => this.connect(), this.backoffMs);
      this.backoffMs = Math.min(reconnectMsMax, this.backoffMs * 2);
    });
  }

  private hello(socket: net.Socket): void {
    const { selfId, clusterSecret: secret } = this.options;
    if (secret === undefined) {
      socket.write(`${JSON.stringify({ type: 'peer_hello', from: selfId, to: this.peerId })}\n`);
      // Nothing is expected back on an outbound connection; drain anything that comes.
      socket.on('data', () => undefined);
      this.open();
      return;
    }
    const dialerNonce = newNonce();
    socket.write(`${JSON.stringify({ type: 'peer_hello', from: selfId, to: this.peerId, nonce: dialerNonce })}\n`);
    const authTimeoutMs = this.options.authTimeoutMs ?? authTimeoutMsDefault;
    this.authTimer = setTimeout(() => this.refuse(socket, `no valid challenge within ${authTimeoutMs} ms`), authTimeoutMs);
    const read = lineReader(() => handshakeLineBytesMax, (line) => {
      if (this.connected) return true; // nothing more is expected; ignore it
      const handshake = this.checkChallenge(line, dialerNonce, secret);
      if (typeof handshake === 'string') {
        this.refuse(socket, handshake);
        return false;
      }
      socket.write(`${JSON.stringify({ type: 'peer_proof', proof: proof(secret, 'dial', handshake) })}\n`);
      this.open();
      return true;
    });
    socket.on('data', (chunk: Buffer) => {
      if (!read(chunk)) socket.destroy();
    });
  }

  /** The handshake the acceptor's challenge proves, or why it does not. */
  private checkChallenge(line: string, dialerNonce: string, secret: Buffer): Handshake | string {
    const message = parseWire(line);
    if (message === null || message['type'] !== 'peer_challenge') return 'the acceptor did not answer with a challenge (no cluster secret there?)';
    if (!isNonce(message['nonce'])) return 'the challenge has no valid nonce';
    const handshake: Handshake = { from: this.options.selfId, to: this.peerId, dialerNonce, acceptorNonce: message['nonce'] };
    if (!proofMatches(secret, 'accept', handshake, message['proof'])) return 'the acceptor\'s proof is wrong (another cluster secret?)';
    return handshake;
  }

  private open(): void {
    if (this.authTimer !== null) clearTimeout(this.authTimer);
    this.connected = true;
    // Reset only now: a peer that accepts and then refuses us must not be redialled at once.
    this.backoffMs = reconnectMsMin;
    this.options.logger.debug('peer_connected', { peer: this.peerId });
  }

  private refuse(socket: net.Socket, reason: string): void {
    this.options.logger.warn('peer_refused', { from: this.options.selfId, to: this.peerId, reason });
    socket.destroy();
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.socket?.destroy();
  }
}

/**
 * One accepted peer connection: hello, then (with a secret) the challenge and the dialer's
 * proof, then messages. Anything out of order drops the connection.
 */
class InboundPeer {
  private stage: 'hello' | 'proof' | 'open' = 'hello';
  private from: string | null = null;
  private handshake: Handshake | null = null;
  private readonly authTimer: NodeJS.Timeout;

  constructor(private readonly socket: net.Socket, private readonly options: PeerTransportOptions) {
    const authTimeoutMs = options.authTimeoutMs ?? authTimeoutMsDefault;
    this.authTimer = setTimeout(() => {
      this.refuse(`not authenticated within ${authTimeoutMs} ms`);
      socket.destroy();
    }, authTimeoutMs);
    socket.once('close', () => clearTimeout(this.authTimer));
  }

  /** The longest line accepted now: little until the peer is known. */
  lineBytesMax(): number {
    return this.stage === 'open' ? peerFrameBytesMax : handshakeLineBytesMax;
  }

  /** false: drop the connection. */
  onLine(line: string): boolean {
    const message = parseWire(line);
    if (message === null) {
      if (this.stage !== 'open') return this.refuse('unparsable handshake line');
      this.options.logger.warn('peer_bad_frame', { from: this.from });
      return false;
    }
    switch (this.stage) {
      case 'hello': return this.onHello(message);
      case 'proof': return this.onProof(message);
      case 'open': return this.onMessage(message);
    }
  }

  private onHello(hello: Wire): boolean {
    const { selfId, peers, clusterSecret: secret } = this.options;
    if (hello['type'] !== 'peer_hello') return this.refuse('no hello');
    if (typeof hello['from'] !== 'string' || !peers.has(hello['from']) || hello['from'] === selfId) {
      return this.refuse('hello from an unknown node', hello['from']);
    }
    this.from = hello['from'];
    if (hello['to'] !== selfId) return this.refuse(`hello for another node (${clip(hello['to'])})`);
    if (secret === undefined) {
      if (hello['nonce'] !== undefined) return this.refuse('the dialer has a cluster secret and this node has none');
      return this.authenticated();
    }
    if (!isNonce(hello['nonce'])) return this.refuse('hello without a valid nonce (no cluster secret on the dialer?)');
    this.handshake = { from: this.from, to: selfId, dialerNonce: hello['nonce'], acceptorNonce: newNonce() };
    const challenge = { type: 'peer_challenge', nonce: this.handshake.acceptorNonce, proof: proof(secret, 'accept', this.handshake) };
    this.socket.write(`${JSON.stringify(challenge)}\n`);
    this.stage = 'proof';
    return true;
  }

  private onProof(message: Wire): boolean {
    if (message['type'] !== 'peer_proof') return this.refuse('a message before authentication');
    if (!proofMatches(this.options.clusterSecret as Buffer, 'dial', this.handshake as Handshake, message['proof'])) {
      return this.refuse('wrong proof (another cluster secret?)');
    }
    return this.authenticated();
  }

  private authenticated(): true {
    clearTimeout(this.authTimer);
    this.stage = 'open';
    this.options.logger.debug('peer_accepted', { from: this.from });
    return true;
  }

  private onMessage(message: Wire): boolean {
    if (typeof message['type'] !== 'string' || message['from'] !== this.from || message['to'] !== this.options.selfId) {
      this.options.logger.warn('peer_bad_message', { from: this.from });
      return false;
    }
    this.options.onMessage(message as unknown as PeerMessage);
    return true;
  }

  private refuse(reason: string, from: unknown = this.from): false {
    // Never the secret, nor a proof: only who claimed to be whom, and why it failed.
    this.options.logger.warn('peer_refused', { from: clip(from), to: this.options.selfId, reason, remote: this.socket.remoteAddress });
    return false;
  }
}

export class PeerTransport {
  private readonly outbound = new Map<string, OutboundPeer>();
  private readonly inbound = new Set<net.Socket>();

  constructor(private readonly options: PeerTransportOptions) {
    for (const [id, address] of options.peers) {
      if (id !== options.selfId) this.outbound.set(id, new OutboundPeer(options, id, address));
    }
  }

  send(messages: readonly PeerMessage[]): void {
    for (const message of messages) {
      if (message.to === this.options.selfId) {
        this.options.onMessage(message);
        continue;
      }
      this.outbound.get(message.to)?.send(encodePeerMessage(message));
    }
  }

  /**
   * Writes every peer's queue now instead of in the next turn. The node calls this at the end of
   * its own turn (which already runs as an immediate, so a flush scheduled from it would wait a
   * whole extra turn of the loop: latency on every hop of every request).
   */
  flush(): void {
    for (const peer of this.outbound.values()) peer.flush();
  }

  /** Takes over a socket whose first bytes are a peer hello; `head` is what was read so far. */
  adopt(socket: net.Socket, head: Buffer): void {
    this.inbound.add(socket);
    const peer = new InboundPeer(socket, this.options);
    const read = lineReader(() => peer.lineBytesMax(), (line) => peer.onLine(line));
    const onData = (chunk: Buffer): void => {
      if (!read(chunk)) socket.destroy();
    };
    socket.on('data', onData);
    socket.on('error', () => undefined);
    socket.on('close', () => this.inbound.delete(socket));
    if (head.length > 0) onData(head);
  }

  close(): void {
    for (const peer of this.outbound.values()) peer.close();
    for (const socket of this.inbound) socket.destroy();
  }
}

/**
 * Splits a byte stream into lines for `onLine`. Returns a function to feed chunks to; it returns
 * false when the connection must go: `onLine` said so, or a line grew past `lineBytesMax()`
 * (asked each time, as the bound depends on how far the handshake got).
 */
function lineReader(lineBytesMax: () => number, onLine: (line: string) => boolean): (chunk: Buffer) => boolean {
  let parts: Buffer[] = [];
  let partBytes = 0;
  return (chunk) => {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      if (partBytes + nl - start > lineBytesMax()) return false;
      let line: string;
      if (partBytes === 0) line = chunk.toString('utf8', start, nl);
      else {
        parts.push(chunk.subarray(start, nl));
        line = Buffer.concat(parts).toString('utf8');
        parts = [];
        partBytes = 0;
      }
      start = nl + 1;
      if (line.length > 0 && !onLine(line)) return false;
    }
    if (start < chunk.length) {
      parts.push(chunk.subarray(start));
      partBytes += chunk.length - start;
      if (partBytes > lineBytesMax()) return false;
    }
    return true;
  };
}

function parseWire(line: string): Wire | null {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value as Wire : null;
  } catch {
    return null;
  }
}

/** A claimed id as it goes into a log line: a stranger chooses it, so keep it short. */
function clip(value: unknown): string {
  return String(value).slice(0, 64);
}
