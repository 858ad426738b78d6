// The TCP front door (PROTOCOL §2): NDJSON lines in, answers and events out. It only frames,
// parses and validates; the node decides everything else. Answers produced in one turn of the
// event loop leave in one write per connection.
import * as net from 'node:net';
import * as tls from 'node:tls';
import { defaultConnectionLimits, frameBytesMax, type ConnectionLimits } from '../core/limits';
import { errorAnswer, type Answer } from '../protocol/answers';
import { LineSplitter } from '../protocol/ndjson';
import { validateRequest, type RequestId } from '../protocol/schemas';
import type { ClientConnection, ConnectionHandle, PushEvent, RequestSink } from './front-door';
import type { Logger } from './logger';
import { peerHelloPrefix } from './peer-transport';
import { listenerTlsOptions, type TlsMaterial } from './tls-options';

const peerHello = Buffer.from(peerHelloPrefix, 'utf8');

export interface ClientListenerOptions {
  host: string;
  port: number;
  sink: RequestSink;
  logger: Logger;
  /** Called after a batch of requests was handed to the sink (the node flushes then). */
  onBatch?: () => void;
  onAnswer?: (action: string | undefined, code: string) => void;
  /** A connection that opened with a peer hello: the peer transport takes the socket over.
   *  Peer and client connections share the port but nothing else. */
  onPeer?: (socket: net.Socket, head: Buffer) => void;
  /** Bounds on client connections (default: defaultConnectionLimits). */
  limits?: ConnectionLimits;
  /** Serve TLS: clients may come without a certificate, peers must show one of the CA. */
  tls?: TlsMaterial;
}

interface ClientState {
  handle: ConnectionHandle;
  connection: TcpConnection;
  /** performance.now() of the last complete line. */
  lastRequestAt: number;
}

/** Sockets that have not sent a first line yet (peer or client?), beyond the client bound. */
const undecidedSocketsMax = 1024;
const undecidedTimeoutMs = 10_000;
/** A connection with this much output queued is not reading: it is closed (logged). */
const outputBytesCutMax = 128 * 1024 * 1024;

export interface ClientListener {
  address: { host: string; port: number };
  connections(): number;
  close(): Promise<void>;
}

/** What an answer is counted as before it is encoded: a read's data whole, plus this. Names
 *  are at most 256 characters and messages short, so it is an upper bound for all the rest. */
const answerCharsAllowance = 1024;

interface Queued {
  /** undefined for a pushed event (it has no id). */
  id: RequestId | null | undefined;
  body: Answer | PushEvent;
  chars: number;
}

/**
 * Answers wait here unencoded and are encoded only as the client takes them: at most
 * `aheadMax` bytes beyond what the socket already holds. A client that does not read keeps
 * its answers as they were made (a read's data is the file's own string, shared), costs no
 * encoding, and is cut off once what it has not taken passes outputBytesCutMax. Encoding them
 * all at once (up to pendingPerConnection reads of a file) could take gigabytes and seconds of
 * one turn, long enough for the followers to start an election.
 */
class TcpConnection implements ClientConnection {
  readonly kind = 'tcp' as const;
  private queue: Array<Queued | undefined> = [];
  private head = 0;
  /** The chars counted for the answers in `queue` from `head` on. */
  private queuedChars = 0;
  private scheduled = false;
  /** Requests handed to the node and not answered yet. */
  inFlight = 0;

  constructor(
    private readonly socket: net.Socket,
    private readonly aheadMax: number,
    /** Called after every flush: the listener pauses reading a client with a backlog. */
    private readonly onFlushed: () => void,
    /** Called (once; the socket is then destroyed) when the answers queued for a client that
     *  does not read them pass outputBytesCutMax. */
    private readonly onTooFarBehind: (queued: number) => void,
  ) {}

  /** The node's answer to a request it was handed. */
  answer(id: RequestId | null, answer: Answer): void {
    this.inFlight--;
    this.enqueue(id, answer);
  }

  /** The front door's own answer to a line it did not hand to the node. */
  refuse(id: RequestId | null, answer: Answer): void {
    this.enqueue(id, answer);
  }

  push(event: PushEvent): void {
    this.enqueue(undefined, event);
  }

  /** Bytes the client has not taken: in the socket, and (counted) still to encode. */
  backlog(): number {
    return this.socket.writableLength + this.queuedChars;
  }

  private enqueue(id: RequestId | null | undefined, body: Answer | PushEvent): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    const data = (body as { data?: unknown }).data;
    const chars = answerCharsAllowance + (typeof data === 'string' ? data.length : 0);
    const queued = this.backlog() + chars;
    if (queued > outputBytesCutMax) {
      this.queue = [];
      this.head = 0;
      this.queuedChars = 0;
      this.onTooFarBehind(queued);
      this.socket.destroy();
      return;
    }
    this.queue.push({ id, body, chars });
    this.queuedChars += chars;
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.flush(this.aheadMax));
    }
  }

  /** Encodes and writes queued answers while the socket holds less than `aheadMax` (so at
   *  least one when it holds less, however large). */
  private flush(aheadMax: number): void {
    this.scheduled = false;
    if (this.socket.destroyed || this.socket.writableEnded) return;
    const lines: string[] = [];
    let chars = 0;
    while (this.head < this.queue.length && this.socket.writableLength + chars < aheadMax) {
      const q = this.queue[this.head] as Queued;
      this.queue[this.head++] = undefined;
      this.queuedChars -= q.chars;
      const line = JSON.stringify(q.id === undefined ? q.body : { id: q.id, ...q.body });
      lines.push(line);
      chars += line.length + 1;
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    let full = this.socket.writableLength >= this.socket.writableHighWaterMark;
    if (lines.length > 0) full = !this.socket.write(lines.length === 1 ? `${lines[0]}\n` : `${lines.join('\n')}\n`);
    // A full socket says 'drain' (drained() goes on from there); one that took everything does
    // not, so the rest goes in a later turn, after other connections had theirs.
    if (this.head < this.queue.length && !full && !this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush(this.aheadMax));
    }
    this.onFlushed();
  }

  /** The socket took what it held: encode and write more. */
  drained(): void {
    if (this.head < this.queue.length && !this.scheduled) this.flush(this.aheadMax);
  }

  /** Writes what is queued, then closes (frame_too_large). */
  end(): void {
    this.flush(Infinity);
    this.socket.end();
  }
}

export function startClientListener(options: ClientListenerOptions): Promise<ClientListener> {
  const { sink, logger } = options;
  const limits = options.limits ?? defaultConnectionLimits;
  /** Client connections, and sockets that have not yet shown whether they are peers. */
  const clients = new Map<net.Socket, ClientState>();
  const undecided = new Map<net.Socket, number>();
  /** Silent sockets closed to make room since the last log line (logged at most every 10 s). */
  let silentEvicted = 0;
  let silentEvictedLoggedAt = -Infinity;
  const onSocket = (socket: net.Socket): void => {
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    if (options.onPeer === undefined) {
      serveClient(socket);
      return;
    }
    // Peers share the port, so a socket is not refused for the client bound before it has
    // said what it is; sockets still silent are bounded on their own and time out quickly.
    // At the bound the oldest silent one makes room: clients and peers say their first line
    // within milliseconds, so only sockets that stay silent are pushed out. (Refusing the new
    // one instead let 1024 silent sockets lock every newcomer out, peers included.)
    const now = performance.now();
    if (undecided.size >= undecidedSocketsMax) {
      const [oldest] = undecided.keys();
      if (oldest !== undefined) {
        undecided.delete(oldest);
        oldest.destroy();
      }
      silentEvicted++;
      if (now - silentEvictedLoggedAt >= undecidedTimeoutMs) {
        logger.warn('silent_connections_closed', { reason: 'too many connections that have not sent a line', closed: silentEvicted });
        silentEvicted = 0;
        silentEvictedLoggedAt = now;
      }
    }
    undecided.set(socket, now);
    // Decide from the first bytes whether this is a peer or a client.
    let head: Buffer = Buffer.alloc(0);
    const onFirst = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const decided = head.length >= peerHello.length || head.includes(10);
      if (!decided) return;
      socket.off('data', onFirst);
      undecided.delete(socket);
      if (head.subarray(0, peerHello.length).equals(peerHello)) {
        if (options.tls !== undefined && !(socket as tls.TLSSocket).authorized) {
          // Anyone may be a client; only a holder of a certificate of the cluster CA may be a peer.
          const reason = (socket as tls.TLSSocket).authorizationError ?? 'no client certificate';
          logger.warn('peer_refused', { reason: `TLS: ${String(reason)}`, remote: socket.remoteAddress });
          socket.destroy();
          return;
        }
        options.onPeer?.(socket, head);
      } else {
        serveClient(socket, head);
      }
    };
    socket.on('data', onFirst);
    socket.once('close', () => undecided.delete(socket));
  };
  const server = options.tls === undefined
    ? net.createServer(onSocket)
    // A handshake that does not finish is bounded like a socket that never sends a line.
    : tls.createServer({ ...listenerTlsOptions(options.tls), handshakeTimeout: undecidedTimeoutMs }, onSocket);
  // Connections still in their TLS handshake are not in `clients` yet; close() cuts them too.
  const rawSockets = new Set<net.Socket>();
  if (options.tls !== undefined) {
    server.on('connection', (raw: net.Socket) => {
      rawSockets.add(raw);
      raw.once('close', () => rawSockets.delete(raw));
    });
    server.on('tlsClientError', (err) => logger.debug('tls_client_error', { error: err.message }));
  }
  const serveClient = (socket: net.Socket, head?: Buffer): void => {
    if (clients.size >= limits.connections) {
      // One line that says why, then close: the client can try another node.
      socket.end(`${JSON.stringify({ id: null, ...errorAnswer('limit_exceeded', `this node serves at most ${limits.connections} client connections`) })}\n`);
      options.onAnswer?.(undefined, 'limit_exceeded');
      return;
    }
    let paused = false;
    const connection = new TcpConnection(socket, limits.outputBytesMax, () => {
      // Backpressure: a client that does not read its answers stops being read, so it cannot
      // make the node buffer without bound; one far behind is cut off (in enqueue).
      if (connection.backlog() > limits.outputBytesMax && !paused) {
        paused = true;
        socket.pause();
      }
    }, (queued) => {
      logger.warn('client_cut_off', { reason: 'not reading its answers', queued_bytes: queued });
    });
    socket.on('drain', () => {
      connection.drained();
      if (!paused || connection.backlog() > limits.outputBytesMax) return;
      paused = false;
      socket.resume();
    });
    const handle: ConnectionHandle = sink.open(connection);
    const state: ClientState = { handle, connection, lastRequestAt: performance.now() };
    clients.set(socket, state);
    const splitter = new LineSplitter(frameBytesMax);
    let closed = false;
    const onClose = (): void => {
      if (closed) return;
      closed = true;
      clients.delete(socket);
      handle.close();
      options.onBatch?.();
    };
    const refuse = (id: RequestId | null, answer: Answer & { ok: false }): void => {
      connection.refuse(id, answer);
      options.onAnswer?.(undefined, answer.error.code);
    };
    const onData = (chunk: Buffer): void => {
      splitter.push(chunk, (frame) => {
        state.lastRequestAt = performance.now();
        if (frame.kind === 'too_large') {
          refuse(null, errorAnswer('frame_too_large', `a line is limited to ${frameBytesMax} bytes`));
          connection.end();
          return;
        }
        if (frame.kind === 'not_utf8') {
          refuse(null, errorAnswer('bad_request', 'the line is not valid UTF-8'));
          return;
        }
        let message: unknown;
        try {
          message = JSON.parse(frame.line);
        } catch {
          refuse(null, errorAnswer('bad_request', 'not valid JSON'));
          return;
        }
        const result = validateRequest(message);
        if (!result.ok) {
          refuse(result.id, errorAnswer('bad_request', result.message));
          return;
        }
        if (connection.inFlight >= limits.pendingPerConnection) {
          refuse(result.request.id, errorAnswer('limit_exceeded', `${limits.pendingPerConnection} requests on this connection are not answered yet`));
          return;
        }
        connection.inFlight++;
        handle.request(result.request);
      });
      options.onBatch?.();
    };
    socket.on('data', onData);
    socket.on('error', (err) => logger.debug('client_socket_error', { error: err.message }));
    socket.on('close', onClose);
    if (head !== undefined) onData(head);
  };
  // Connections with no session that send nothing are closed; so are sockets that never say
  // whether they are clients or peers.
  const sweep = setInterval(() => {
    const now = performance.now();
    for (const [socket, openedAt] of undecided) {
      if (now - openedAt >= Math.min(limits.idleMs, undecidedTimeoutMs)) socket.destroy();
    }
    for (const [socket, state] of clients) {
      if (!state.handle.bound && state.connection.inFlight === 0 && now - state.lastRequestAt >= limits.idleMs) {
        logger.debug('client_idle_closed', { idle_ms: Math.round(now - state.lastRequestAt) });
        socket.destroy();
      }
    }
  }, Math.max(10, Math.min(1000, limits.idleMs / 4)));
  sweep.unref();
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      const addr = server.address() as net.AddressInfo;
      resolve({
        address: { host: addr.address, port: addr.port },
        connections: () => clients.size,
        close: () => new Promise<void>((done) => {
          clearInterval(sweep);
          for (const socket of [...clients.keys(), ...undecided.keys()]) socket.destroy();
          for (const raw of rawSockets) raw.destroy();
          server.close(() => done());
        }),
      });
    });
  });
}
