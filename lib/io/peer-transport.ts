// Node-to-node messages over TCP. Each node dials every other node at the address `--peers`
// gives for it and sends its messages on that outbound connection only; it receives on the
// connections the others dialled. A peer connection shares the client port and announces itself
// with a `peer_hello` first line (the client listener hands such sockets over here).
//
// Messages queued in one turn of the event loop leave in one write per peer. While a peer is
// unreachable its messages are dropped: Raft re-sends what matters, and a bounded queue is
// better than an unbounded one for a peer that may never come back.
import * as net from 'node:net';
import type { Logger } from './logger';
import type { PeerMessage } from '../replica/peer-messages';

export const peerHelloPrefix = '{"type":"peer_hello"';
/** Peer frames carry whole batches and snapshots; this bounds one line. */
const peerFrameBytesMax = 256 * 1024 * 1024;
const reconnectMsMin = 20;
const reconnectMsMax = 1000;

export interface PeerTransportOptions {
  selfId: string;
  peers: Map<string, { host: string; port: number }>;
  onMessage: (message: PeerMessage) => void;
  logger: Logger;
}

class OutboundPeer {
  private socket: net.Socket | null = null;
  private connected = false;
  private queue: string[] = [];
  private scheduled = false;
  private backoffMs = reconnectMsMin;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly selfId: string,
    private readonly peerId: string,
    private readonly address: { host: string; port: number },
    private readonly logger: Logger,
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

  private flush(): void {
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
    const socket = net.connect(this.address.port, this.address.host);
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('connect', () => {
      this.connected = true;
      this.backoffMs = reconnectMsMin;
      socket.write(`${JSON.stringify({ type: 'peer_hello', from: this.selfId, to: this.peerId })}\n`);
      this.logger.debug('peer_connected', { peer: this.peerId });
    });
    // Nothing is expected back on an outbound connection; drain anything that comes.
    socket.on('data', () => undefined);
    socket.on('error', (err) => this.logger.debug('peer_socket_error', { peer: this.peerId, error: err.message }));
    socket.on('close', () => {
      this.connected = false;
      this.queue = [];
      if (this.socket === socket) this.socket = null;
      if (this.closed) return;
      this.timer = setTimeout(() => this.connect(), this.backoffMs);
      this.backoffMs = Math.min(reconnectMsMax, this.backoffMs * 2);
    });
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.socket?.destroy();
  }
}

export class PeerTransport {
  private readonly outbound = new Map<string, OutboundPeer>();
  private readonly inbound = new Set<net.Socket>();

  constructor(private readonly options: PeerTransportOptions) {
    for (const [id, address] of options.peers) {
      if (id !== options.selfId) this.outbound.set(id, new OutboundPeer(options.selfId, id, address, options.logger));
    }
  }

  send(messages: readonly PeerMessage[]): void {
    for (const message of messages) {
      if (message.to === this.options.selfId) {
        this.options.onMessage(message);
        continue;
      }
      this.outbound.get(message.to)?.send(JSON.stringify(message));
    }
  }

  /** Takes over a socket whose first bytes are a peer hello; `head` is what was read so far. */
  adopt(socket: net.Socket, head: Buffer): void {
    this.inbound.add(socket);
    let parts: Buffer[] = [];
    let partBytes = 0;
    let from: string | null = null;
    const onLine = (line: string): boolean => {
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch {
        this.options.logger.warn('peer_bad_frame', { from });
        return false;
      }
      if (from === null) {
        const hello = message as { type?: unknown; from?: unknown; to?: unknown };
        if (hello.type !== 'peer_hello' || typeof hello.from !== 'string' || !this.options.peers.has(hello.from)
          || hello.from === this.options.selfId || hello.to !== this.options.selfId) {
          this.options.logger.warn('peer_refused', { from: String(hello.from), to: String(hello.to) });
          return false;
        }
        from = hello.from;
        return true;
      }
      const m = message as { type?: unknown; from?: unknown; to?: unknown };
      if (typeof m !== 'object' || m === null || typeof m.type !== 'string' || m.from !== from || m.to !== this.options.selfId) {
        this.options.logger.warn('peer_bad_message', { from });
        return false;
      }
      this.options.onMessage(message as PeerMessage);
      return true;
    };
    const onData = (chunk: Buffer): void => {
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(10, start);
        if (nl < 0) break;
        let line: string;
        if (partBytes === 0) line = chunk.toString('utf8', start, nl);
        else {
          parts.push(chunk.subarray(start, nl));
          line = Buffer.concat(parts).toString('utf8');
          parts = [];
          partBytes = 0;
        }
        start = nl + 1;
        if (line.length > 0 && !onLine(line)) {
          socket.destroy();
          return;
        }
      }
      if (start < chunk.length) {
        parts.push(chunk.subarray(start));
        partBytes += chunk.length - start;
        if (partBytes > peerFrameBytesMax) socket.destroy();
      }
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
