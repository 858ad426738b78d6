// A tiny raw NDJSON client for end-to-end tests: it sends exactly the bytes a test asks for and
// hands back every line the node sends (answers and events), so tests can pin the wire format.
import * as net from 'node:net';

export type Message = Record<string, unknown>;

export interface ErrorBody {
  code: string;
  message: string;
  owner?: string;
}

export interface RawClient {
  socket: net.Socket;
  /** Sends one JSON object as one line. */
  send(obj: unknown): void;
  /** Sends a line as is (a newline is added). */
  sendLine(line: string): void;
  /** Sends raw bytes as is (no newline added). */
  sendBytes(bytes: Buffer | string): void;
  /** Sends obj with a fresh numeric id (unless it has one) and resolves with the answer to it. */
  request(obj: Record<string, unknown>, timeoutMs?: number): Promise<Message>;
  /** The next message (answer or event) matching `predicate`, not yet taken by anyone. */
  next(predicate?: (m: Message) => boolean, timeoutMs?: number): Promise<Message>;
  /** Messages received and not taken yet. */
  backlog(): Message[];
  /** Every message received on this connection, in order. */
  received(): Message[];
  close(): void;
  /** Resolves once the socket closed (for any reason). */
  closed: Promise<void>;
  readonly isClosed: boolean;
}

interface Waiter {
  predicate: (m: Message) => boolean;
  resolve: (m: Message) => void;
  reject: (err: Error) => void;
}

let nextId = 1;

export function connectRaw(port: number, host = '127.0.0.1'): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host });
    socket.setNoDelay(true);
    const backlog: Message[] = [];
    const all: Message[] = [];
    const waiters: Waiter[] = [];
    let buffer = '';
    let isClosed = false;
    const closed = new Promise<void>((done) => socket.once('close', () => {
      isClosed = true;
      // Nothing more will arrive: whoever still waits fails now rather than at its timeout.
      for (const waiter of waiters.splice(0)) waiter.reject(new Error(`connection closed; backlog: ${JSON.stringify(backlog).slice(0, 2000)}`));
      done();
    }));
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      for (;;) {
        const nl = buffer.indexOf('\n');
        if (nl < 0) break;
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.length === 0) continue;
        let message: Message;
        try {
          message = JSON.parse(line) as Message;
        } catch {
          message = { unparsable: line };
        }
        all.push(message);
        const at = waiters.findIndex((w) => w.predicate(message));
        if (at >= 0) {
          const [waiter] = waiters.splice(at, 1);
          waiter?.resolve(message);
        } else {
          backlog.push(message);
        }
      }
    });
    socket.on('error', () => undefined);

    const next = (predicate: (m: Message) => boolean = () => true, timeoutMs = 5000): Promise<Message> => {
      const at = backlog.findIndex(predicate);
      if (at >= 0) return Promise.resolve(backlog.splice(at, 1)[0] as Message);
      if (isClosed) return Promise.reject(new Error(`connection closed; backlog: ${JSON.stringify(backlog).slice(0, 2000)}`));
      return new Promise((res, rej) => {
        const waiter: Waiter = {
          predicate,
          resolve: (m) => {
            clearTimeout(timer);
            res(m);
          },
          reject: (err) => {
            clearTimeout(timer);
            rej(err);
          },
        };
        const timer = setTimeout(() => {
          const i = waiters.indexOf(waiter);
          if (i >= 0) waiters.splice(i, 1);
          rej(new Error(`no matching message within ${timeoutMs} ms (closed: ${isClosed}); backlog: ${JSON.stringify(backlog).slice(0, 2000)}`));
        }, timeoutMs);
        waiters.push(waiter);
      });
    };

    const client: RawClient = {
      socket,
      send: (obj) => {
        socket.write(`${JSON.stringify(obj)}\n`);
      },
      sendLine: (line) => {
        socket.write(`${line}\n`);
      },
      sendBytes: (bytes) => {
        socket.write(bytes);
      },
      request: (obj, timeoutMs = 5000) => {
        const id = obj['id'] ?? nextId++;
        const answer = next((m) => 'id' in m && m['id'] === id, timeoutMs);
        if (!isClosed) socket.write(`${JSON.stringify({ ...obj, id })}\n`);
        return answer;
      },
      next,
      backlog: () => backlog,
      received: () => all,
      close: () => {
        socket.destroy();
      },
      closed,
      get isClosed() {
        return isClosed;
      },
    };
    socket.once('connect', () => resolve(client));
    socket.once('error', (err) => reject(err));
  });
}

/** The error body of an answer (throws if the answer was a success). */
export function errorOf(answer: Message): ErrorBody {
  if (answer['ok'] !== false) throw new Error(`expected an error answer, got ${JSON.stringify(answer)}`);
  return answer['error'] as ErrorBody;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `probe` until it returns a value that `done` accepts, or fails after `timeoutMs`. */
export async function waitFor<T>(probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 5000, stepMs = 20): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: T = await probe();
  while (!done(last)) {
    if (Date.now() > until) throw new Error(`condition not met within ${timeoutMs} ms; last value ${JSON.stringify(last)}`);
    await sleep(stepMs);
    last = await probe();
  }
  return last;
}

/** For a mocha `describe`: returns a connect function whose clients are all closed after each
 *  test. `port` is read at connect time (the node usually starts in a `before` hook). */
export function rawClientPool(port: () => number): () => Promise<RawClient> {
  const open: RawClient[] = [];
  afterEach(() => {
    for (const c of open.splice(0)) c.close();
  });
  return async () => {
    const c = await connectRaw(port());
    open.push(c);
    return c;
  };
}
