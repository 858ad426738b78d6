// The node's Prometheus metrics (PROTOCOL §6 `GET /metrics`), named once here so every shell
// reports under the same names.
//
// Each Metrics owns its own Registry instead of prom-client's global default one: the tests
// and the simulator run several nodes in one process, and a shared registry would mix their
// numbers (or throw on the second registration of the same name).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { actions, type Action } from '../protocol/schemas';
import { errorCodes, type ErrorCode } from '../protocol/errors';

/** The outcome label of a request: "ok" or the contract's error code (PROTOCOL §5). */
export type RequestCode = 'ok' | ErrorCode;

// Requests range from a stale check (microseconds) to a blocking acquire (seconds or more).
// Few buckets keep each observation cheap and the scrape small.
const requestBucketsSeconds = [0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10];
// Group-commit fsyncs: sub-millisecond on NVMe, tens of milliseconds on spinning disks.
const fsyncBucketsSeconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5];

interface CounterChild { inc(value?: number): void }
interface HistogramChild { observe(value: number): void }

export interface MetricsOptions {
  /** Labels added to every series, e.g. `{ node: 'n1' }` when nodes share a scrape. */
  labels?: Record<string, string>;
  /** Collect prom-client's process metrics (cpu, memory, event loop lag). Default true. */
  processMetrics?: boolean;
}

export class Metrics {
  readonly registry: Registry;
  private readonly requests: Counter<'action' | 'code'>;
  private readonly requestDuration: Histogram<'action'>;
  private readonly connections: Gauge;
  private readonly sessions: Gauge;
  private readonly locksHeld: Gauge;
  private readonly waiters: Gauge;
  private readonly logEntries: Counter;
  private readonly logFlushes: Counter;
  private readonly fsyncDuration: Histogram;
  private readonly commitIndex: Gauge;
  private readonly term: Gauge;
  private readonly isLeader: Gauge;
  // Children are looked up through nested maps so the hot path builds no key string and no
  // label object per request.
  private readonly requestChildren = new Map<string, Map<string, CounterChild>>();
  private readonly durationChildren = new Map<string, HistogramChild>();

  constructor(options: MetricsOptions = {}) {
    this.registry = new Registry();
    if (options.labels !== undefined) this.registry.setDefaultLabels(options.labels);
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'latchkey_requests_total', help: 'Client requests answered, by action and outcome code.',
      labelNames: ['action', 'code'], registers,
    });
    this.requestDuration = new Histogram({
      name: 'latchkey_request_duration_seconds', help: 'Time from a request arriving to its answer.',
      labelNames: ['action'], buckets: requestBucketsSeconds, registers,
    });
    this.connections = new Gauge({ name: 'latchkey_connections', help: 'Open client connections.', registers });
    this.sessions = new Gauge({ name: 'latchkey_sessions', help: 'Live client sessions.', registers });
    this.locksHeld = new Gauge({ name: 'latchkey_locks_held', help: 'Locks that have an owner.', registers });
    this.waiters = new Gauge({ name: 'latchkey_waiters', help: 'Acquires queued behind an owner.', registers });
    this.logEntries = new Counter({ name: 'latchkey_log_entries_total', help: 'Raft log entries persisted.', registers });
    this.logFlushes = new Counter({ name: 'latchkey_log_flushes_total', help: 'Log writes (group commits).', registers });
    this.fsyncDuration = new Histogram({
      name: 'latchkey_fsync_seconds', help: 'Time spent in fsync of the log.', buckets: fsyncBucketsSeconds, registers,
    });
    this.commitIndex = new Gauge({ name: 'latchkey_commit_index', help: 'Highest committed log index.', registers });
    this.term = new Gauge({ name: 'latchkey_term', help: 'Current raft term.', registers });
    this.isLeader = new Gauge({ name: 'latchkey_is_leader', help: '1 while this node is the leader, else 0.', registers });
    this.precreateChildren();
  }

  /** The Content-Type header that goes with `render()`. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition of every metric in this registry. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  observeRequest(action: Action, code: RequestCode, durationSeconds: number): void {
    this.requestChild(action, code).inc();
    this.durationChild(action).observe(durationSeconds);
  }

  setConnections(count: number): void { this.connections.set(count); }
  addConnections(delta: number): void { this.connections.inc(delta); }
  setSessions(count: number): void { this.sessions.set(count); }
  setLocksHeld(count: number): void { this.locksHeld.set(count); }
  setWaiters(count: number): void { this.waiters.set(count); }
  countLogEntries(count: number): void { this.logEntries.inc(count); }
  countLogFlush(): void { this.logFlushes.inc(); }
  observeFsync(durationSeconds: number): void { this.fsyncDuration.observe(durationSeconds); }
  setCommitIndex(index: number): void { this.commitIndex.set(index); }
  setTerm(term: number): void { this.term.set(term); }
  setLeader(leader: boolean): void { this.isLeader.set(leader ? 1 : 0); }

  private precreateChildren(): void {
    // 10 actions x 13 outcomes: small enough to create up front, and every label value that
    // reaches these metrics comes from a closed set, so cardinality stays bounded.
    for (const action of actions) {
      const byCode = new Map<string, CounterChild>();
      byCode.set('ok', this.requests.labels(action, 'ok'));
      for (const code of errorCodes) byCode.set(code, this.requests.labels(action, code));
      this.requestChildren.set(action, byCode);
      this.durationChildren.set(action, this.requestDuration.labels(action));
    }
  }

  private requestChild(action: string, code: string): CounterChild {
    let byCode = this.requestChildren.get(action);
    if (byCode === undefined) {
      byCode = new Map();
      this.requestChildren.set(action, byCode);
    }
    let child = byCode.get(code);
    if (child === undefined) {
      child = this.requests.labels(action, code);
      byCode.set(code, child);
    }
    return child;
  }

  private durationChild(action: string): HistogramChild {
    let child = this.durationChildren.get(action);
    if (child === undefined) {
      child = this.requestDuration.labels(action);
      this.durationChildren.set(action, child);
    }
    return child;
  }
}
