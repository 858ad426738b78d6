// One latchkey node: the thin shell around the replica. It owns the clock, the timers, the disk
// and the sockets, and runs the one loop of DESIGN §7 / STYLE §6:
//   replica.takeReady() -> send the leader's appends at once -> persist term/vote, snapshot and
//   entries with one write + fsync (group commit) -> replica.afterPersist() applies committed
//   entries and answers clients -> send the messages that had to wait for the disk.
// Everything that arrives while a persist runs goes into the next one, so an answer never
// leaves before the fsync that covers its entry, on this node and (through the majority rule)
// on the others.
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Prng } from '../core/prng';
import type { Command } from '../locks/commands';
import type { Entry, Snapshot } from '../raft/messages';
import type { Ready } from '../raft/raft';
import type { Request, RequestId } from '../protocol/schemas';
import type { Answer } from '../protocol/answers';
import { Replica, type ConnState, type NodeReady } from '../replica/replica';
import type { PeerMessage } from '../replica/peer-messages';
import { startClientListener, type ClientListener } from './client-listener';
import { DiskLog, type FsyncMode, type LogEntry } from './disk-log';
import { commandText } from './entry-codec';
import { FileStore } from './file-store';
import { isConnectionless, type ClientConnection, type ConnectionHandle, type ConnectionKind, type PushEvent, type RequestSink, type StatusInfo } from './front-door';
import type { GrpcListener, GrpcTlsConfig } from './grpc-listener';
import { readHardState, writeHardState } from './hard-state';
import { startHttpListener } from './http-listener';
import type { Logger } from './logger';
import { Metrics } from './metrics';
import { PeerTransport } from './peer-transport';
import { parseSnapshotFile, writeSnapshotFile } from './snapshot-file';
import { defaultConnectionLimits, defaultStateLimits, type ConnectionLimits, type StateLimits } from '../core/limits';
import type { TlsMaterial } from './tls-options';

export interface NodeOptions {
  id: string;
  listen: { host: string; port: number };
  /** Every member, this node included: id -> address it dials. */
  peers: Map<string, { host: string; port: number }>;
  dataDir: string;
  http?: { host: string; port: number };
  grpc?: { host: string; port: number };
  /** TLS for the gRPC front door (plaintext without it). */
  grpcTls?: GrpcTlsConfig;
  fsync: FsyncMode;
  heartbeatMs: number;
  electionTimeoutMs: number;
  sessionTtlMs: number;
  /** Compact the log into a snapshot after this many entries (default 20000). */
  snapshotEveryEntries?: number;
  /** How linearizable reads are confirmed (see ReplicaConfig.readPath). */
  readPath?: 'index' | 'log';
  /** Clients must present this token before anything is served (`--auth-token-file`). */
  authToken?: string;
  /** Bounds of the replicated state this node commits when it leads (default: defaultStateLimits). */
  limits?: StateLimits;
  /** Bounds on this node's client connections (default: defaultConnectionLimits). */
  connectionLimits?: ConnectionLimits;
  /** TLS on the client port, the peer links and HTTP (`--tls-cert --tls-key --tls-ca`). */
  tls?: TlsMaterial;
  /** Peers must prove they know it (`--cluster-secret-file`, peer-auth.ts). */
  clusterSecret?: Buffer;
  logger: Logger;
}

export class LatchkeyNode implements RequestSink {
  readonly metrics = new Metrics();
  private replica!: Replica;
  private log!: DiskLog;
  private files!: FileStore;
  private transport!: PeerTransport;
  private listener: ClientListener | undefined;
  private http: { address: { host: string; port: number }; close(): Promise<void> } | undefined;
  private grpc: GrpcListener | undefined;
  private timer: NodeJS.Timeout | undefined;
  private processScheduled = false;
  /** Resolves when every write started so far is done and handled. */
  private persisted: Promise<void> = Promise.resolve();
  /** Serialises the issuing of writes (see persist). */
  private issueOrder: Promise<void> = Promise.resolve();
  /** Snapshot files are written one at a time, in the order they were made: a local one off
   *  the persist chain, one installed from the leader inside it. */
  private snapshotChain: Promise<void> = Promise.resolve();
  private failed: Error | undefined;
  private stopped = false;
  private lastRole = '';
  private readonly options: NodeOptions;

  constructor(options: NodeOptions) {
    this.options = options;
  }

  get serving(): boolean {
    return !this.stopped && this.failed === undefined && this.replica.serving;
  }

  /** Where the client port and the HTTP and gRPC ports listen (useful with port 0). */
  get addresses(): Record<'client' | 'http' | 'grpc', { host: string; port: number } | undefined> {
    return { client: this.listener?.address, http: this.http?.address, grpc: this.grpc?.address };
  }

  private get snapshotPath(): string {
    return path.join(this.options.dataDir, 'snapshot.json');
  }

  async start(): Promise<void> {
    const { options } = this;
    const logger = options.logger;
    await fs.mkdir(options.dataDir, { recursive: true });
    const hardState = await readHardState(options.dataDir);
    const snapshot = await this.readSnapshot();
    // Replay the log tail after the snapshot, in the pass that opening the log makes anyway;
    // what is committed is learned from the leader (or, alone, by electing ourselves), and
    // applied then. Each entry is decoded once, here, straight from the read buffer.
    let entries: Entry<Command>[] = [];
    this.log = await DiskLog.open(path.join(options.dataDir, 'log'), {
      fsync: options.fsync,
      onWarn: (event, fields) => logger.warn(event, fields),
      replay: {
        from: (snapshot?.index ?? 0) + 1,
        onEntry: (index, term, bytes, start, end) => {
          entries.push({ index, term, data: JSON.parse(bytes.toString('utf8', start, end)) as Command | null });
        },
      },
    });
    if (snapshot !== null && !(await this.logFollowsSnapshot(snapshot))) {
      // A crash between writing an installed snapshot and resetting the log (DESIGN §7): the log
      // ends before the snapshot, or runs past it on another branch. Finish the reset.
      await this.log.reset(snapshot.index + 1);
      entries = [];
    }
    this.replica = new Replica({
      nodeId: options.id,
      bootId: randomUUID().slice(0, 8),
      members: [...options.peers.keys()],
      sessionTtlMsDefault: options.sessionTtlMs,
      heartbeatMs: options.heartbeatMs,
      electionTimeoutMs: options.electionTimeoutMs,
      idleTickMs: options.heartbeatMs * 4,
      unavailableAfterMs: Math.max(1500, options.electionTimeoutMs * 5),
      resendAfterMs: Math.max(200, options.electionTimeoutMs * 2),
      snapshotEveryEntries: options.snapshotEveryEntries ?? 20000,
      entriesPerAppendMax: 4096,
      readPath: options.readPath ?? 'index',
      rng: new Prng(Number.parseInt(randomUUID().slice(0, 8), 16)),
      newSecret: () => randomUUID(),
      authToken: options.authToken ?? null,
      limits: options.limits ?? defaultStateLimits,
    });
    this.replica.load({ hardState, snapshot, entries }, performance.now());
    this.files = new FileStore(path.join(options.dataDir, 'files'), logger);
    await this.files.init(
      [...this.replica.state.files.entries()].map(([name, file]) => [name, file.chunks.join('')]),
    );
    this.transport = new PeerTransport({
      selfId: options.id,
      peers: options.peers,
      logger,
      tls: options.tls,
      clusterSecret: options.clusterSecret,
      onMessage: (message: PeerMessage) => {
        if (this.stopped) return;
        this.replica.receive(message, performance.now());
        this.schedule();
      },
    });
    // A single node elects itself at once; settle that before taking clients.
    this.replica.tick(performance.now());
    this.process();
    await this.persisted;
    const connectionLimits = options.connectionLimits ?? defaultConnectionLimits;
    this.listener = await startClientListener({
      host: options.listen.host, port: options.listen.port, sink: this, logger,
      onBatch: () => this.schedule(),
      onPeer: (socket, head) => this.transport.adopt(socket, head),
      limits: connectionLimits,
      tls: options.tls,
    });
    if (options.http !== undefined) {
      this.http = await startHttpListener({
        host: options.http.host, port: options.http.port, sink: this, metrics: this.metrics, logger,
        limits: connectionLimits, tls: options.tls,
      });
    }
    if (options.grpc !== undefined) {
      const grpcTls = options.grpcTls ?? options.tls;
      // Loaded only when asked for: @grpc/grpc-js and the service take ~0.1 s to load, and every
      // restart (issue 7: serving again within 3 s) would pay for them.
      const { startGrpcListener } = await import('./grpc-listener');
      this.grpc = await startGrpcListener({
        host: options.grpc.host, port: options.grpc.port, sink: this, metrics: this.metrics, logger,
        ...(grpcTls === undefined ? {} : { tls: grpcTls }),
      });
    }
    const tickMs = Math.max(1, Math.min(10, Math.floor(options.heartbeatMs / 5)));
    this.timer = setInterval(() => this.onTimer(), tickMs);
    logger.info('node_started', {
      node: options.id, listen: this.listener.address, http: this.http?.address, grpc: this.grpc?.address,
      snapshot_index: snapshot?.index ?? 0, log_entries: entries.length, term: hardState.term,
      tls: options.tls !== undefined, peer_auth: options.clusterSecret !== undefined,
    });
  }

  /** The log continues the snapshot: it holds the snapshot's last entry with the same term, or
   *  starts right after it. */
  private async logFollowsSnapshot(snapshot: Snapshot): Promise<boolean> {
    const log = this.log;
    if (log.lastIndex < snapshot.index) return false;
    if (log.firstIndex === snapshot.index + 1) return true;
    if (log.firstIndex > snapshot.index + 1) return false;
    let term: number | null = null;
    await log.replay(snapshot.index, (entry) => { term = entry.term; }, snapshot.index);
    return term === snapshot.term;
  }

  private async readSnapshot(): Promise<Snapshot | null> {
    let text: string;
    try {
      text = await fs.readFile(this.snapshotPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    return parseSnapshotFile(text);
  }

  // ---- RequestSink ----

  open(connection: ClientConnection): ConnectionHandle {
    const counted = new CountingConnection(connection, this.metrics);
    const cs: ConnState = this.replica.open(counted);
    const counts = !isConnectionless(connection.kind);
    if (counts) this.metrics.addConnections(1);
    let closed = false;
    return {
      get bound() {
        return cs.clientId !== undefined;
      },
      request: (request: Request) => {
        counted.started(request);
        if (this.failed !== undefined) {
          counted.answer(request.id, { ok: false, error: { code: 'internal', message: 'the node stopped writing its log' } });
          return;
        }
        this.replica.request(cs, request, performance.now());
        this.schedule();
      },
      close: () => {
        if (closed) return;
        closed = true;
        if (counts) this.metrics.addConnections(-1);
        if (!this.stopped) this.replica.close(cs, performance.now());
        this.schedule();
      },
    };
  }

  status(): StatusInfo {
    return this.replica.status();
  }

  authorize(bearer: string | undefined): boolean {
    return this.replica.authorize(bearer);
  }

  // ---- the loop ----

  private onTimer(): void {
    if (this.stopped) return;
    this.replica.tick(performance.now());
    this.schedule();
    const status = this.replica.status();
    if (status.role !== this.lastRole) {
      this.lastRole = status.role;
      this.options.logger.info('role_changed', { role: status.role, term: status.term, leader: status.leader });
    }
  }

  private schedule(): void {
    if (this.processScheduled || this.failed !== undefined || this.stopped) return;
    this.processScheduled = true;
    setImmediate(() => {
      this.processScheduled = false;
      this.process();
    });
  }

  /**
   * Takes every ready the replica has, at once: sends what may go before the disk, applies what
   * is committed (durable on a majority already), and starts its write. Writes are issued in
   * order and the disk log merges appends queued behind a running fsync into the next one
   * (group commit); each ready's `afterPersist` runs once its own write and all earlier ones
   * are done, so the messages that depend on the disk never overtake it.
   */
  private process(): void {
    if (this.failed !== undefined) return;
    try {
      for (;;) {
        const ready = this.replica.takeReady(performance.now());
        if (ready === null) break;
        this.transport.send(ready.sendNow);
        this.materialise(this.replica.applyReady(ready, performance.now()));
        const written = this.persist(ready.raft);
        this.persisted = this.persisted
          .then(() => written)
          .then(() => this.afterPersist(ready))
          .catch((err: Error) => this.fail(err))
          .finally(() => this.schedule());
      }
      this.transport.flush();
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private fail(err: Error): void {
    if (this.failed !== undefined) return;
    // A node that cannot write its log cannot acknowledge anything: stop serving rather than
    // answer from state that is not durable.
    this.failed = err;
    this.options.logger.error('log_write_failed', { error: err.message, stack: err.stack });
    this.replica.failAll('internal', 'the node could not write its log');
  }

  /**
   * Starts the writes of one ready and resolves when they are durable. Writes are ISSUED in the
   * order readies were taken (the disk log runs its operations in call order and merges queued
   * appends into one write + fsync), but not waited for one by one, so group commit spans
   * readies. A ready with a snapshot is a barrier: the snapshot must be durable before the log
   * is reset, and nothing after it may reach the log first.
   */
  private persist(ready: Ready<Command>): Promise<void> {
    let done: Promise<void> = Promise.resolve();
    const issued = this.issueOrder.then(() => {
      done = ready.snapshot !== null ? this.writeWithSnapshot(ready) : this.write(ready);
      return ready.snapshot !== null ? done : undefined;
    });
    this.issueOrder = issued.then(() => undefined, () => undefined);
    return issued.then(() => done);
  }

  private write(ready: Ready<Command>): Promise<void> {
    const ops: Promise<unknown>[] = [];
    if (ready.hardState !== null) ops.push(writeHardState(this.options.dataDir, ready.hardState));
    if (ready.truncateFrom !== null) ops.push(this.log.truncateSuffix(ready.truncateFrom));
    if (ready.entries.length > 0) ops.push(this.appendEntries(ready.entries));
    return Promise.all(ops).then(() => undefined);
  }

  private async writeWithSnapshot(ready: Ready<Command>): Promise<void> {
    const snapshot = ready.snapshot as Snapshot;
    if (ready.hardState !== null) await writeHardState(this.options.dataDir, ready.hardState);
    await this.inSnapshotOrder(() => writeSnapshotFile(this.snapshotPath, snapshot));
    await this.log.reset(snapshot.index + 1);
    if (ready.truncateFrom !== null) await this.log.truncateSuffix(ready.truncateFrom);
    if (ready.entries.length > 0) await this.appendEntries(ready.entries);
  }

  private async appendEntries(entries: readonly Entry<Command>[]): Promise<void> {
    const records: LogEntry[] = entries.map((entry) => ({
      index: entry.index, term: entry.term, data: Buffer.from(commandText(entry), 'utf8'),
    }));
    const started = performance.now();
    // With --fsync always each entry gets its own write + fsync (the disk log merges nothing in
    // that mode); they are issued together so the order of the log is kept.
    if (this.options.fsync === 'always') await Promise.all(records.map((record) => this.log.append([record])));
    else await this.log.append(records);
    this.metrics.observeFsync((performance.now() - started) / 1000);
    this.metrics.countLogFlush();
    this.metrics.countLogEntries(records.length);
  }

  private async afterPersist(ready: NodeReady): Promise<void> {
    const out = this.replica.afterPersist(ready, performance.now());
    this.transport.send(out.send);
    this.materialise(out.appends);
    if (ready.raft.snapshot !== null) {
      // A snapshot from the leader replaced our state: rewrite the readable copies of the files.
      await this.files.init([...this.replica.state.files.entries()].map(([name, file]) => [name, file.chunks.join('')]));
    }
    const toSave = out.snapshotToSave;
    if (toSave !== null) {
      // Off the persist chain: answers never wait for a snapshot to reach the disk (a save of
      // a large state took up to half a second, and every answer waited behind it). A crash
      // before it is durable loses nothing: the old snapshot and the whole log are still there.
      void this.inSnapshotOrder(async () => {
        await writeSnapshotFile(this.snapshotPath, toSave);
        // Only once the snapshot is durable may the log before it go (DESIGN §7).
        await this.log.compactPrefix(toSave.index);
        this.options.logger.info('snapshot_saved', { index: toSave.index, bytes: toSave.data.length });
      }).catch((err: Error) => this.fail(err));
    }
    const state = this.replica.state;
    this.metrics.setSessions(state.sessions.size);
    this.metrics.setLocksHeld(state.locks.size);
    this.metrics.setCommitIndex(this.replica.raft.commitIndex);
    this.metrics.setTerm(this.replica.raft.term);
    this.metrics.setLeader(this.replica.raft.isLeader);
  }

  private inSnapshotOrder(job: () => Promise<void>): Promise<void> {
    const run = this.snapshotChain.then(job);
    this.snapshotChain = run.catch(() => undefined);
    return run;
  }

  private materialise(appends: readonly { file: string; data: string }[]): void {
    for (const append of appends) this.files.append(append.file, append.data);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.replica?.beginShutdown();
    // Sessions of this node's connections are NOT ended: like a crash, a clean stop leaves them
    // to their ttl (or grace), so their clients resume them on another node without losing
    // their locks (a rolling restart must not drop every lock). An acquire queued through this
    // node stays queued in the cluster; it is answered shutting_down here and, re-sent elsewhere
    // with the same request_id, joins its place in the queue.
    // Let the writes in flight reach the disk and their answers go out.
    await this.persisted;
    await this.snapshotChain;
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.replica?.failAll('shutting_down', 'the node is shutting down');
    await new Promise((resolve) => setImmediate(resolve));
    this.transport?.close();
    await this.listener?.close();
    await this.http?.close();
    await this.grpc?.close();
    await this.files?.drain();
    await this.log?.close();
    this.options.logger.info('node_stopped', { node: this.options.id });
  }
}

/** Counts answers by action and code for /metrics, without touching the replica. */
class CountingConnection implements ClientConnection {
  private readonly started_ = new Map<RequestId, { action: Request['action']; at: number }>();

  constructor(private readonly inner: ClientConnection, private readonly metrics: Metrics) {}

  get kind(): ConnectionKind {
    return this.inner.kind;
  }

  get bearer(): string | undefined {
    return this.inner.bearer;
  }

  started(request: Request): void {
    this.started_.set(request.id, { action: request.action, at: performance.now() });
  }

  answer(id: RequestId | null, answer: Answer): void {
    const start = id === null ? undefined : this.started_.get(id);
    if (start !== undefined && id !== null) {
      this.started_.delete(id);
      this.metrics.observeRequest(start.action, answer.ok ? 'ok' : answer.error.code, (performance.now() - start.at) / 1000);
    }
    this.inner.answer(id, answer);
  }

  push(event: PushEvent): void {
    this.inner.push(event);
  }
}
