// The fuzzer's end of a client connection: it writes exactly the bytes it is given and keeps
// every line the node sends back (answers, events, and anything that is not JSON, which is a
// finding in itself), so a target can count answers per line and notice a close.
import * as net from 'node:net';

export type Message = Record<string, unknown>;

export class WireSocket {
  /** Every JSON object the node sent, in order. */
  readonly received: Message[] = [];
  /** Lines the node sent that are not JSON objects (a finding in themselves). */
  readonly unparsable: string[] = [];
  private closedFlag = false;
  /** The socket error that ended the connection, if any (ECONNRESET: the node reset it). */
  error: string | null = null;
  private buffer = '';
  private readonly watchers = new Set<() => void>();
  private nextId = 1;

  private constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error = err.code ?? err.message;
    });
    socket.once('close', () => {
      this.closedFlag = true;
      this.notify();
    });
  }

  static connect(port: number, host = '127.0.0.1'): Promise<WireSocket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host });
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new WireSocket(socket));
      });
      socket.once('error', reject);
    });
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Lines that carry an `id` (answers), in arrival order. */
  answers(): Message[] {
    return this.received.filter((m) => 'id' in m);
  }

  write(bytes: Buffer | string): void {
    if (!this.closedFlag) this.socket.write(bytes);
  }

  /** Resolves true once `done()` holds, false if it still does not after `timeoutMs`. It looks
   *  again on every line and close, and every few ms for conditions that depend on more. */
  until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (result: boolean): void => {
        this.watchers.delete(check);
        clearTimeout(timer);
        clearInterval(poll);
        resolve(result);
      };
      const check = (): void => {
        if (done()) finish(true);
      };
      const timer = setTimeout(() => finish(done()), timeoutMs);
      const poll = setInterval(check, 20);
      this.watchers.add(check);
    });
  }

  /** Sends `fields` with a fresh id and resolves with its answer (null after `timeoutMs`). */
  async request(fields: Message, timeoutMs: number): Promise<Message | null> {
    const id = `w${this.nextId++}`;
    this.write(`${JSON.stringify({ id, ...fields })}\n`);
    const find = (): Message | undefined => this.answers().find((m) => m['id'] === id);
    await this.until(() => find() !== undefined || this.closedFlag, timeoutMs);
    return find() ?? null;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl = this.buffer.indexOf('\n');
    while (nl >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      const message = parseLine(line);
      if (message === null) this.unparsable.push(line);
      else this.received.push(message);
      nl = this.buffer.indexOf('\n');
    }
    this.notify();
  }

  private notify(): void {
    for (const watcher of [...this.watchers]) watcher();
  }
}

function parseLine(line: string): Message | null {
  try {
    const value = JSON.parse(line) as unknown;
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Message;
  } catch {
    // Falls through: the node sent something that is not a JSON object.
  }
  return null;
}
