// The TCP front door (PROTOCOL §2): NDJSON lines in, answers and events out. It only frames,
// parses and validates; the node decides everything else. Answers produced in one turn of the
// event loop leave in one write per connection.
import * as net from 'node:net';
import { frameBytesMax } from '../core/limits';
import { errorAnswer, type Answer } from '../protocol/answers';
import { LineSplitter } from '../protocol/ndjson';
import { validateRequest, type RequestId } from '../protocol/schemas';
import type { ClientConnection, ConnectionHandle, PushEvent, RequestSink } from './front-door';
import type { Logger } from './logger';
import { peerHelloPrefix } from './peer-transport';

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
}

export interface ClientListener {
  address: { host: string; port: number };
  connections(): number;
  close(): Promise<void>;
}

class TcpConnection implements ClientConnection {
  readonly kind = 'tcp' as const;
  private out: string[] = [];
  private scheduled = false;

  constructor(private readonly socket: net.Socket) {}

  answer(id: RequestId | null, answer: Answer): void {
    this.send(JSON.stringify({ id, ...answer }));
  }

  push(event: PushEvent): void {
    this.send(JSON.stringify(event));
  }

  private send(line: string): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    this.out.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  private flush(): void {
    this.scheduled = false;
    if (this.out.length === 0 || this.socket.destroyed || this.socket.writableEnded) return;
    const text = this.out.length === 1 ? `${this.out[0]}\n` : `${this.out.join('\n')}\n`;
    this.out = [];
    this.socket.write(text);
  }

  /** Writes what is queued, then closes (frame_too_large). */
  end(): void {
    this.flush();
    this.socket.end();
  }
}

export function startClientListener(options: ClientListenerOptions): Promise<ClientListener> {
  const { sink, logger } = options;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    if (options.onPeer === undefined) {
      serveClient(socket);
      return;
    }
    // Decide from the first bytes whether this is a peer or a client.
    let head: Buffer = Buffer.alloc(0);
    const onFirst = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const decided = head.length >= peerHello.length || head.includes(10);
      if (!decided) return;
      socket.off('data', onFirst);
      if (head.subarray(0, peerHello.length).equals(peerHello)) {
        sockets.delete(socket);
        options.onPeer?.(socket, head);
      } else {
        serveClient(socket, head);
      }
    };
    socket.on('data', onFirst);
    socket.on('error', () => undefined);
    socket.once('close', () => sockets.delete(socket));
  });
  const serveClient = (socket: net.Socket, head?: Buffer): void => {
    const connection = new TcpConnection(socket);
    const handle: ConnectionHandle = sink.open(connection);
    const splitter = new LineSplitter(frameBytesMax);
    let closed = false;
    const onClose = (): void => {
      if (closed) return;
      closed = true;
      sockets.delete(socket);
      handle.close();
      options.onBatch?.();
    };
    const onData = (chunk: Buffer): void => {
      splitter.push(chunk, (frame) => {
        if (frame.kind === 'too_large') {
          connection.answer(null, errorAnswer('frame_too_large', `a line is limited to ${frameBytesMax} bytes`));
          options.onAnswer?.(undefined, 'frame_too_large');
          connection.end();
          return;
        }
        let message: unknown;
        try {
          message = JSON.parse(frame.line);
        } catch {
          connection.answer(null, errorAnswer('bad_request', 'not valid JSON'));
          options.onAnswer?.(undefined, 'bad_request');
          return;
        }
        const result = validateRequest(message);
        if (!result.ok) {
          connection.answer(result.id, errorAnswer('bad_request', result.message));
          options.onAnswer?.(undefined, 'bad_request');
          return;
        }
        handle.request(result.request);
      });
      options.onBatch?.();
    };
    socket.on('data', onData);
    socket.on('error', (err) => logger.debug('client_socket_error', { error: err.message }));
    socket.on('close', onClose);
    if (head !== undefined) onData(head);
  };
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      const addr = server.address() as net.AddressInfo;
      resolve({
        address: { host: addr.address, port: addr.port },
        connections: () => sockets.size,
        close: () => new Promise<void>((done) => {
          for (const socket of sockets) socket.destroy();
          server.close(() => done());
        }),
      });
    });
  });
}
