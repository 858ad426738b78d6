// One latchkey node: the thin shell around the replica. It owns the clock, the timers, the disk
// log and the front doors, and runs the one loop of DESIGN §7 / STYLE §6:
//   requests -> replica proposals -> one write + fsync for the whole batch (group commit)
//   -> apply in log order -> answers.
// Everything proposed while a flush is running goes into the next single write + fsync, so an
// answer never leaves before the fsync that covers its entry.
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Command } from '../locks/commands';
import type { Request } from '../protocol/schemas';
import { Replica, type ConnState } from '../replica/replica';
import { startClientListener, type ClientListener } from './client-listener';
import { DiskLog, type FsyncMode, type LogEntry } from './disk-log';
import { FileStore } from './file-store';
import type { Answer } from '../protocol/answers';
import type { ClientConnection, ConnectionHandle, PushEvent, RequestSink, StatusInfo } from './front-door';
import { startHttpListener } from './http-listener';
import type { Logger } from './logger';
import { Metrics } from './metrics';
import type { RequestId } from '../protocol/schemas';

export interface NodeOptions {
  id: string;
  listen: { host: string; port: number };
  /** Every member, this node included: id -> address it dials. */
  peers: Map<string, { host: string; port: number }>;
  dataDir: string;
  http?: { host: string; port: number };
  fsync: FsyncMode;
  heartbeatMs: number;
  electionTimeoutMs: number;
  sessionTtlMs: number;
  logger: Logger;
}

const term = 1;

export class LatchkeyNode implements RequestSink {
  readonly metrics = new Metrics();
  private replica!: Replica;
  private log!: DiskLog;
  private files!: FileStore;
  private listener: ClientListener | undefined;
  private http: { address: { host: string; port: number }; close(): Promise<void> } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private flushing = false;
  private flushScheduled = false;
  private failed: Error | undefined;
  private stopped = false;
  private readonly options: NodeOptions;

  constructor(options: NodeOptions) {
    this.options = options;
  }

  get serving(): boolean {
    return !this.stopped && this.failed === undefined && this.replica.serving;
  }

  /** Where the client port and the HTTP port listen (useful with port 0). */
  get addresses(): { client: { host: string; port: number } | undefined; http: { host: string; port: number } | undefined } {
    return { client: this.listener?.address, http: this.http?.address };
  }

  async start(): Promise<void> {
    const { options } = this;
    const logger = options.logger;
    this.log = await DiskLog.open(path.join(options.dataDir, 'log'), {
      fsync: options.fsync,
      onWarn: (event, fields) => logger.warn(event, fields),
    });
    this.replica = new Replica({
      nodeId: options.id,
      bootId: randomUUID().slice(0, 8),
      members: [...options.peers.keys()],
      sessionTtlMsDefault: options.sessionTtlMs,
      idleTickMs: options.heartbeatMs * 4,
      newSecret: () => randomUUID(),
    });
    // Replay: a restarted node answers exactly as before the crash.
    let replayed = 0;
    await this.log.replay(this.log.firstIndex, (entry) => {
      this.replica.applyCommitted(entry.index, JSON.parse(entry.data.toString('utf8')) as Command);
      replayed++;
    });
    this.files = new FileStore(path.join(options.dataDir, 'files'), logger);
    await this.files.init(
      [...this.replica.state.files.keys()].map((name) => [name, (this.replica.state.files.get(name)?.chunks ?? []).join('')]),
    );
    this.replica.start(performance.now());
    this.listener = await startClientListener({
      host: options.listen.host, port: options.listen.port, sink: this, logger,
      onBatch: () => this.scheduleFlush(),
    });
    if (options.http !== undefined) {
      this.http = await startHttpListener({ host: options.http.host, port: options.http.port, sink: this, metrics: this.metrics, logger });
    }
    this.timer = setInterval(() => this.onTimer(), Math.max(5, Math.floor(options.heartbeatMs / 2)));
    this.metrics.setLeader(true);
    this.metrics.setTerm(term);
    logger.info('node_started', {
      node: options.id, listen: this.listener.address, http: this.http?.address, replayed,
      commit_index: this.replica.state.appliedIndex,
    });
  }

  // ---- RequestSink ----

  open(connection: ClientConnection): ConnectionHandle {
    const counted = new CountingConnection(connection, this.metrics);
    const cs: ConnState = this.replica.open(counted);
    this.metrics.addConnections(connection.kind === 'tcp' ? 1 : 0);
    let closed = false;
    return {
      request: (request: Request) => {
        counted.started(request);
        if (this.failed !== undefined) {
          counted.answer(request.id, { ok: false, error: { code: 'internal', message: 'the node stopped writing its log' } });
          return;
        }
        this.replica.request(cs, request, performance.now());
        this.scheduleFlush();
      },
      close: () => {
        if (closed) return;
        closed = true;
        if (connection.kind === 'tcp') this.metrics.addConnections(-1);
        if (!this.stopped) this.replica.close(cs, performance.now());
        this.scheduleFlush();
      },
    };
  }

  status(): StatusInfo {
    return this.replica.status();
  }

  // ---- the loop ----

  private onTimer(): void {
    this.replica.tick(performance.now());
    this.scheduleFlush();
    const state = this.replica.state;
    this.metrics.setSessions(state.sessions.size);
    this.metrics.setLocksHeld(state.locks.size);
    this.metrics.setCommitIndex(state.appliedIndex);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.flushing || this.failed !== undefined) return;
    if (!this.replica.hasProposals) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.flushing || this.failed !== undefined) return;
    this.flushing = true;
    try {
      while (this.replica.hasProposals) {
        const commands = this.replica.takeProposals(performance.now());
        const first = this.log.lastIndex + 1;
        const entries: LogEntry[] = commands.map((command, i) => ({
          index: first + i, term, data: Buffer.from(JSON.stringify(command), 'utf8'),
        }));
        const started = performance.now();
        if (this.options.fsync === 'always') {
          for (const entry of entries) await this.log.append([entry]);
        } else {
          await this.log.append(entries);
        }
        this.metrics.observeFsync((performance.now() - started) / 1000);
        this.metrics.countLogFlush();
        this.metrics.countLogEntries(entries.length);
        for (let i = 0; i < commands.length; i++) this.applyOne(first + i, commands[i] as Command);
      }
    } catch (err) {
      // A log that cannot be written cannot acknowledge anything: stop serving rather than
      // answer from state that is not durable.
      this.failed = err as Error;
      this.options.logger.error('log_write_failed', { error: (err as Error).message });
      this.replica.failAll('internal', 'the node could not write its log');
    } finally {
      this.flushing = false;
    }
  }

  private applyOne(index: number, command: Command): void {
    const applied = this.replica.applyCommitted(index, command);
    if (command.type === 'append' && applied.answer?.ok === true) this.files.append(command.file, command.data);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.replica?.beginShutdown();
    // Let the batch in flight reach the disk and its answers go out.
    while (this.flushing) await new Promise((resolve) => setTimeout(resolve, 1));
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.replica?.failAll('shutting_down', 'the node is shutting down');
    await this.listener?.close();
    await this.http?.close();
    await this.files?.drain();
    await this.log?.close();
    this.options.logger.info('node_stopped', { node: this.options.id });
  }
}

/** Counts answers by action and code for /metrics, without touching the replica. */
class CountingConnection implements ClientConnection {
  private readonly started_ = new Map<RequestId, { action: Request['action']; at: number }>();

  constructor(private readonly inner: ClientConnection, private readonly metrics: Metrics) {}

  get kind(): 'tcp' | 'http' {
    return this.inner.kind;
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
