// An in-process TCP proxy for one directed link between two nodes (A dials B through the proxy
// A->B), so scenarios and tests can cut, heal and slow down that link on its own.
//
// - `cut()` destroys every connection going through the proxy and, until `heal()`, closes every
//   new one as soon as it is accepted, so the dialer's reconnect loop cannot get through. The
//   listening port stays bound (nobody else can take it meanwhile).
// - `delay(ms)` holds every chunk that long, in both directions, without reordering: a chunk is
//   never released before one that arrived earlier on the same direction.
// - Buffers are bounded: a direction whose held bytes (plus what its destination has not taken
//   yet) pass `highWaterBytes` stops reading its source until they drain below half of that, so
//   back pressure reaches the sender's kernel rather than this process's memory.
// - Peer resets, refused upstream connects and the like are swallowed: the proxy never throws.
import * as net from 'node:net';

export interface LinkProxyOptions {
  /** Where connections are forwarded to (B's port). */
  target: { host: string; port: number };
  /** Listening host (default 127.0.0.1). */
  host?: string;
  /** Listening port (default 0: any free port). */
  port?: number;
  /** Per direction, per connection (default 4 MiB). */
  highWaterBytes?: number;
  /** A label for `stats()` and debugging, e.g. 'n1->n2'. */
  name?: string;
}

export interface LinkProxyStats {
  name: string;
  cut: boolean;
  delayMs: number;
  /** Connections currently forwarded. */
  open: number;
  /** Connections accepted and forwarded since the start. */
  accepted: number;
  /** Connections closed at once because the link was cut. */
  refused: number;
  /** Bytes delivered dialer -> target and target -> dialer. */
  bytesForward: number;
  bytesBackward: number;
}

interface Held {
  chunk: Buffer | null; // null: the source ended (forward the FIN once everything before it left)
  dueAt: number;
}

/** One direction of one proxied connection. */
class Pipe {
  private held: Held[] = [];
  private heldBytes = 0;
  private lastDueAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private sourcePaused = false;
  private onDrain = (): void => this.maybeResume();
  done = false;

  constructor(
    private readonly src: net.Socket,
    private readonly dst: net.Socket,
    private readonly proxy: LinkProxy,
    private readonly highWater: number,
    private readonly count: (bytes: number) => void,
  ) {
    src.on('data', (chunk: Buffer) => this.push(chunk));
    src.on('end', () => this.push(null));
    dst.on('drain', this.onDrain);
  }

  private push(chunk: Buffer | null): void {
    if (this.done) return;
    const delayMs = this.proxy.delayMs;
    if (delayMs <= 0 && this.held.length === 0) {
      this.deliver(chunk);
    } else {
      const now = Date.now();
      const dueAt = Math.max(now + delayMs, this.lastDueAt);
      this.lastDueAt = dueAt;
      this.held.push({ chunk, dueAt });
      if (chunk !== null) this.heldBytes += chunk.length;
      this.schedule();
    }
    if (!this.sourcePaused && this.backlog() > this.highWater) {
      this.sourcePaused = true;
      this.src.pause();
    }
  }

  private backlog(): number {
    return this.heldBytes + (this.dst.destroyed ? 0 : this.dst.writableLength);
  }

  private deliver(chunk: Buffer | null): void {
    if (this.dst.destroyed) return;
    if (chunk === null) {
      this.dst.end();
      return;
    }
    this.count(chunk.length);
    this.dst.write(chunk);
  }

  private schedule(): void {
    if (this.timer !== null || this.held.length === 0 || this.done) return;
    const head = this.held[0] as Held;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.release();
    }, Math.max(0, head.dueAt - Date.now()));
  }

  private release(): void {
    const now = Date.now();
    while (this.held.length > 0 && (this.held[0] as Held).dueAt <= now && !this.done) {
      const { chunk } = this.held.shift() as Held;
      if (chunk !== null) this.heldBytes -= chunk.length;
      this.deliver(chunk);
    }
    this.maybeResume();
    this.schedule();
  }

  private maybeResume(): void {
    if (this.sourcePaused && !this.done && this.backlog() <= this.highWater / 2) {
      this.sourcePaused = false;
      this.src.resume();
    }
  }

  stop(): void {
    this.done = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.held = [];
    this.heldBytes = 0;
    this.dst.off('drain', this.onDrain);
  }
}

/**
 * Closes a socket at once: with a reset when it is connected (that looks most like a broken link
 * to the other side), else a plain destroy. No reset on a socket still connecting (it would wait
 * for the connect and could let buffered bytes through first), nor on one we already `end()`ed:
 * in Node 20 a reset while that shutdown is in flight fails with `EINVAL reset`, never emits
 * 'close', leaks the handle, and the process then spins at 100% CPU in its exit cleanup.
 */
function hardClose(s: net.Socket): void {
  if (s.destroyed) return;
  if (s.connecting || s.pending || s.writableEnded) {
    s.destroy();
    return;
  }
  try {
    s.resetAndDestroy();
  } catch {
    s.destroy();
  }
}

class Connection {
  private readonly pipes: Pipe[] = [];
  private closed = false;

  constructor(
    readonly downstream: net.Socket,
    readonly upstream: net.Socket,
    proxy: LinkProxy,
    highWater: number,
    onClose: (c: Connection) => void,
  ) {
    const finish = (): void => {
      if (this.closed) return;
      this.closed = true;
      this.destroy();
      onClose(this);
    };
    for (const s of [downstream, upstream]) {
      s.on('error', () => finish());
      // A clean close of one side (both its directions ended) still lets the other side deliver
      // what it holds and its own FIN; a close after an error (a reset) takes both down at once.
      s.on('close', (hadError: boolean) => {
        if (hadError || (downstream.destroyed && upstream.destroyed)) finish();
      });
    }
    this.pipes.push(new Pipe(downstream, upstream, proxy, highWater, (n) => proxy.countForward(n)));
    this.pipes.push(new Pipe(upstream, downstream, proxy, highWater, (n) => proxy.countBackward(n)));
  }

  destroy(): void {
    for (const pipe of this.pipes) pipe.stop();
    hardClose(this.downstream);
    hardClose(this.upstream);
  }
}

export class LinkProxy {
  readonly target: { host: string; port: number };
  readonly name: string;
  private readonly host: string;
  private readonly requestedPort: number;
  private readonly highWater: number;
  private server: net.Server | null = null;
  private readonly connections = new Set<Connection>();
  private isCut = false;
  private closed = false;
  private listenPort = 0;
  delayMs = 0;
  private accepted = 0;
  private refused = 0;
  private bytesForward = 0;
  private bytesBackward = 0;

  constructor(options: LinkProxyOptions) {
    this.target = { ...options.target };
    this.host = options.host ?? '127.0.0.1';
    this.requestedPort = options.port ?? 0;
    this.highWater = options.highWaterBytes ?? 4 * 1024 * 1024;
    this.name = options.name ?? `proxy->${this.target.host}:${this.target.port}`;
  }

  /** The port it listens on (0 before `listen()`). */
  get port(): number {
    return this.listenPort;
  }

  get cutNow(): boolean {
    return this.isCut;
  }

  /** Starts listening; resolves with the port. */
  async listen(): Promise<number> {
    if (this.closed) throw new Error(`${this.name}: proxy is closed`);
    if (this.server !== null) return this.listenPort;
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket));
    server.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      server.once('error', onError);
      server.listen(this.requestedPort, this.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    this.server = server;
    this.listenPort = (server.address() as net.AddressInfo).port;
    return this.listenPort;
  }

  private accept(downstream: net.Socket): void {
    downstream.on('error', () => undefined);
    if (this.isCut || this.closed) {
      this.refused++;
      hardClose(downstream);
      return;
    }
    this.accepted++;
    downstream.setNoDelay(true);
    const upstream = net.connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true });
    upstream.setNoDelay(true);
    upstream.on('error', () => undefined);
    const connection = new Connection(downstream, upstream, this, this.highWater, (c) => this.connections.delete(c));
    this.connections.add(connection);
    downstream.resume();
  }

  /** Drops every connection now and refuses new ones until `heal()`. */
  cut(): void {
    this.isCut = true;
    for (const c of [...this.connections]) c.destroy();
    this.connections.clear();
  }

  heal(): void {
    this.isCut = false;
  }

  /** Holds every chunk `ms` milliseconds in both directions (0: none). Order is kept. */
  delay(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`delay must be >= 0 ms (got ${ms})`);
    this.delayMs = ms;
  }

  /** @internal */
  countForward(bytes: number): void {
    this.bytesForward += bytes;
  }

  /** @internal */
  countBackward(bytes: number): void {
    this.bytesBackward += bytes;
  }

  stats(): LinkProxyStats {
    return {
      name: this.name, cut: this.isCut, delayMs: this.delayMs, open: this.connections.size,
      accepted: this.accepted, refused: this.refused, bytesForward: this.bytesForward, bytesBackward: this.bytesBackward,
    };
  }

  /** Closes every connection and the listener. Safe to call twice. */
  async close(): Promise<void> {
    this.closed = true;
    for (const c of [...this.connections]) c.destroy();
    this.connections.clear();
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
