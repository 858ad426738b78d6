// N real Replicas over a simulated network, disk and clock, driven by one event queue
// (TigerBeetle's src/testing/cluster.zig). The shell around each replica does what
// lib/io/node.ts does, in the same order:
//
//   loop: takeReady() -> send `sendNow` -> applyReady() (committed entries are applied and
//   answered at once: they are durable on a majority already) -> issue the ready's writes
//   (term/vote, truncate, append; they overlap with earlier readies' writes, in call order per
//   file; a ready with a snapshot is a barrier: its writes run one after the other and nothing
//   after it is issued before they are done) -> until takeReady() returns null.
//   Once a ready's writes and all earlier readies' are durable, in order: afterPersist() ->
//   send `send` -> if a snapshot was taken: save it, then compact the log (the next
//   afterPersist waits for both) -> run the loop again.
//
// Ticks, peer messages and client requests reach the replica at any time (as the real node's
// timer and sockets do); they only schedule the loop (setImmediate: a zero-delay event). A crash
// throws the replica away: a restart is a new Replica (new bootId) loaded from what the sim disk
// holds, and every client connection of the crashed node closes.
import { Prng } from '../core/prng';
import type { Answer } from '../protocol/answers';
import type { Request, RequestId } from '../protocol/schemas';
import type { ClientConnection, PushEvent } from '../io/front-door';
import { Replica, type ConnState, type NodeReady } from '../replica/replica';
import type { PeerMessage } from '../replica/peer-messages';
import { Checker, type NodeView } from './checkers';
import { EventQueue } from './event-queue';
import { deriveSeed, liveness, SimFailure, TraceHash } from './failure';
import type { SimOptions } from './options';
import { SimDisk, storedEntries, type DiskOp } from './sim-disk';
import { SimNetwork, type PartitionKind } from './sim-network';

/** Whoever owns a client connection (a simulated client). */
export interface ConnOwner {
  readonly name: string;
  onAnswer(conn: SimConn, id: RequestId | null, answer: Answer, refIndex: number): void;
  onPush(conn: SimConn, event: PushEvent): void;
  onClosed(conn: SimConn): void;
}

/** A client's TCP connection to one node incarnation. Both directions are FIFO, like TCP. */
export class SimConn implements ClientConnection {
  readonly kind = 'tcp' as const;
  cs: ConnState | null = null;
  /** Neither side closed it. */
  open = true;
  toNodeAt = 0;
  toClientAt = 0;

  constructor(
    private readonly cluster: SimCluster,
    readonly id: number,
    readonly owner: ConnOwner,
    readonly node: SimNode,
    readonly incarnation: number,
  ) {}

  answer(id: RequestId | null, answer: Answer): void {
    this.cluster.toClient(this, `answer ${this.owner.name}`, JSON.stringify(answer), (copy, refIndex) => this.owner.onAnswer(this, id, copy as Answer, refIndex));
  }

  push(event: PushEvent): void {
    this.cluster.toClient(this, `push ${this.owner.name}`, JSON.stringify(event), (copy) => this.owner.onPush(this, copy as PushEvent));
  }
}

/** One ready on its way through the shell: written, then afterPersist in order. */
interface ReadyRecord {
  ready: NodeReady;
  written: boolean;
}

export class SimNode implements NodeView {
  incarnation = 0;
  replica!: Replica;
  up = false;
  disk!: SimDisk;
  bootAt = 0;
  clockBase = 0;
  rate = 1;
  processScheduled = false;
  /** Readies taken and not yet through afterPersist, in order. */
  chain: ReadyRecord[] = [];
  /** A ready with a snapshot is being written: later readies wait to be issued. */
  barrier = false;
  issueQueue: ReadyRecord[] = [];
  /** An afterPersist is saving a snapshot: the next one waits. */
  afterBusy = false;
  chainScheduled = false;
  crashOnPersist = false;
  restartPending = false;
  /** A clean stop (SIGTERM) is under way. */
  stopping = false;
  /** Set by a fault: the node dies once it has sent this many more messages. */
  crashAfterMessages: number | null = null;
  /** Set by a fault: the node's outbound network dies once it has sent this many more. */
  muteAfterMessages: number | null = null;
  /** The last term in which this node was seen leading (new-leader faults). */
  ledTerm = -1;
  ledFromCommit = 0;
  firstCommitSeen = -1;
  readonly conns = new Set<SimConn>();
  // Event labels, made once.
  readonly tickTag: string;
  readonly processTag: string;
  readonly chainTag: string;

  constructor(readonly id: string, readonly index: number) {
    this.tickTag = `tick ${id}`;
    this.processTag = `process ${id}`;
    this.chainTag = `persisted ${id}`;
  }
}

export interface ClusterStats {
  events: number;
  crashes: number;
  stops: number;
  restarts: number;
  tornPersists: number;
  snapshotsTaken: number;
  snapshotsInstalled: number;
  persists: number;
}

export type Phase = 'safety' | 'liveness' | 'done';

export interface Participant {
  /** Called when the liveness phase starts: finish up, hold nothing. */
  windDown(): void;
  /** True when it has nothing outstanding. */
  readonly idle: boolean;
  describe(): string;
}

export class SimCluster {
  now = 0;
  readonly queue = new EventQueue();
  readonly nodes: SimNode[] = [];
  readonly network: SimNetwork;
  readonly checker: Checker;
  readonly trace = new TraceHash();
  readonly stats: ClusterStats = { events: 0, crashes: 0, stops: 0, restarts: 0, tornPersists: 0, snapshotsTaken: 0, snapshotsInstalled: 0, persists: 0 };
  phase: Phase = 'safety';
  readonly participants: Participant[] = [];
  readonly lockNames: string[];
  private readonly faultPrng: Prng;
  private readonly timingPrng: Prng;
  private connSeq = 0;
  private partitionGeneration = 0;
  private readonly byId = new Map<string, SimNode>();
  readonly log: ((line: string) => void) | null;
  /** The node's ticks, as node.ts: max(1, min(10, heartbeat / 5)) ms. */
  readonly tickMs: number;
  readonly unavailableAfterMs: number;
  readonly resendAfterMs: number;
  private upCache: SimNode[] = [];

  constructor(readonly options: SimOptions, log: ((line: string) => void) | null = null) {
    this.log = log;
    this.faultPrng = new Prng(deriveSeed(options.seed, 1));
    this.timingPrng = new Prng(deriveSeed(options.seed, 2));
    this.tickMs = Math.max(1, Math.min(10, Math.floor(options.heartbeatMs / 5)));
    this.unavailableAfterMs = Math.max(1500, options.electionTimeoutMs * 5);
    this.resendAfterMs = Math.max(200, options.electionTimeoutMs * 2);
    const ids = Array.from({ length: options.nodeCount }, (_, i) => `n${i + 1}`);
    this.lockNames = Array.from({ length: options.lockCount }, (_, i) => `L${i}`);
    for (const [i, id] of ids.entries()) {
      const node = new SimNode(id, i);
      node.disk = new SimDisk(id, { tornReset: options.tornReset }, {
        schedule: (delayMs, tag, run) => this.schedule(delayMs, tag, run),
        durationMs: () => this.persistMs(),
        onStart: (ms) => this.onDiskStart(node, ms),
      });
      this.nodes.push(node);
      this.byId.set(id, node);
    }
    this.network = new SimNetwork(ids, options.network, new Prng(deriveSeed(options.seed, 3)),
      (delayMs, tag, run) => this.schedule(delayMs, tag, run), (message) => {
        this.trace.add(message.type);
        this.trace.add(message.to);
        this.deliverPeer(message);
      });
    this.checker = new Checker({
      seed: deriveSeed(options.seed, 4),
      encodeProbability: options.encodeProbability,
      compareProbability: options.compareProbability,
      nodeInvariantsProbability: options.nodeInvariantsProbability,
      clock: () => this.now,
      clockDriftMax: options.clockDriftMax,
    }, this.lockNames);
  }

  schedule(delayMs: number, tag: string, run: () => void): void {
    this.queue.push(this.now + delayMs, tag, run);
  }

  note(line: string): void {
    if (this.log !== null) this.log(`${this.now.toFixed(3).padStart(10)} ${line}`);
  }

  get upNodes(): SimNode[] {
    return this.upCache;
  }

  private refreshUp(): void {
    this.upCache = this.nodes.filter((n) => n.up);
  }

  local(node: SimNode): number {
    return node.clockBase + (this.now - node.bootAt) * node.rate;
  }

  // ---- the event loop ----

  /** Runs events until `until` (simulated ms) or `stop()` returns true; checks after each one. */
  runUntil(until: number, stop: () => boolean = () => false): void {
    for (;;) {
      const at = this.queue.peekAt();
      if (at === undefined || at > until) {
        this.now = Math.max(this.now, until);
        return;
      }
      const event = this.queue.pop();
      if (event === undefined) return;
      this.now = event.at;
      this.network.now = event.at;
      this.stats.events++;
      if (this.stats.events > this.options.maxEvents) this.runaway();
      this.trace.addNumber(event.at);
      this.trace.add(event.tag);
      event.run();
      this.checker.afterEvent(this.upCache);
      if (this.phase === 'safety') this.watchLeaders();
      if (stop()) return;
    }
  }

  /** Far more events than any run needs: something loops without bound (a message storm). */
  private runaway(): never {
    const types = [...this.network.sentByType].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([t, n]) => `${t}=${n}`).join(' ');
    liveness(`runaway: over ${this.options.maxEvents} events by ${Math.round(this.now)}ms simulated; messages sent: ${types}`);
  }

  // ---- nodes ----

  bootAll(): void {
    for (const node of this.nodes) this.boot(node);
  }

  boot(node: SimNode): void {
    if (node.up) return;
    if (!node.disk.idle) {
      // A clean stop lets the writes in flight finish (DiskLog.close waits for them); the
      // process starts again only once they are done.
      this.schedule(1, `boot ${node.id}`, () => this.boot(node));
      return;
    }
    const o = this.options;
    node.incarnation++;
    node.up = true;
    node.stopping = false;
    node.restartPending = false;
    node.bootAt = this.now;
    node.clockBase = this.timingPrng.int(0, 5000);
    node.rate = 1 + (this.timingPrng.next() * 2 - 1) * o.clockDriftMax;
    const stream = 1000 + node.index * 100_000 + node.incarnation;
    const secrets = new Prng(deriveSeed(o.seed, stream + 50_000));
    node.replica = new Replica({
      nodeId: node.id,
      bootId: `b${node.incarnation}`,
      members: this.nodes.map((n) => n.id),
      sessionTtlMsDefault: o.sessionTtlMs,
      heartbeatMs: o.heartbeatMs,
      electionTimeoutMs: o.electionTimeoutMs,
      idleTickMs: o.heartbeatMs * 4,
      unavailableAfterMs: this.unavailableAfterMs,
      resendAfterMs: this.resendAfterMs,
      snapshotEveryEntries: o.snapshotEveryEntries,
      entriesPerAppendMax: o.entriesPerAppendMax,
      rng: new Prng(deriveSeed(o.seed, stream)),
      readPath: o.readPath,
      ...(o.broken === undefined ? {} : { broken: o.broken }),
      newSecret: () => `k${secrets.int(0, 0x7fffffff).toString(36)}${secrets.int(0, 0x7fffffff).toString(36)}`,
    });
    this.refreshUp();
    const image = node.disk.load();
    this.note(`boot ${node.id}#${node.incarnation} ${node.disk.describe()}`);
    node.replica.load(image, this.local(node));
    node.replica.tick(this.local(node));
    this.process(node);
    const inc = node.incarnation;
    const tick = (): void => {
      if (!node.up || node.incarnation !== inc) return;
      node.replica.tick(this.local(node));
      this.scheduleProcess(node);
      this.schedule(this.tickMs, node.tickTag, tick);
    };
    this.schedule(this.tickMs * this.timingPrng.next(), node.tickTag, tick);
  }

  crash(node: SimNode, why: string): void {
    if (!node.up) return;
    this.stats.crashes++;
    const writing = node.disk.busy;
    if (writing) this.stats.tornPersists++;
    node.disk.crash(this.faultPrng);
    if (this.phase === 'safety') this.network.crashed(node.id, this.options.crashLosesInFlightProbability);
    this.note(`crash ${node.id}#${node.incarnation} (${why})${writing ? ' while writing' : ''} -> ${node.disk.describe()}`);
    node.up = false;
    this.forgetShellState(node);
    node.crashOnPersist = false;
    node.crashAfterMessages = null;
    node.muteAfterMessages = null;
    this.refreshUp();
    for (const conn of node.conns) {
      if (!conn.open) continue;
      conn.open = false;
      this.toClientRaw(conn, `closed ${conn.owner.name}`, () => conn.owner.onClosed(conn));
    }
    node.conns.clear();
  }

  /** What the process's loop had in memory (scheduled work, the write chain) dies with it. */
  private forgetShellState(node: SimNode): void {
    node.processScheduled = false;
    node.chainScheduled = false;
    node.chain = [];
    node.issueQueue = [];
    node.barrier = false;
    node.afterBusy = false;
  }

  /**
   * A clean stop and restart (SIGTERM), as node.ts stop() does it: refuse new requests
   * (`shutting_down`), let the writes in flight reach the disk and their answers go out, then
   * fail what is still pending with `shutting_down` and close the connections. Sessions are
   * left to their ttl or grace, as after a crash. Nothing is torn: the disk finishes what it was
   * writing before the process can start again.
   */
  stopGracefully(node: SimNode, why: string): void {
    if (!node.up || node.stopping || this.phase !== 'safety') return;
    node.stopping = true;
    const inc = node.incarnation;
    this.note(`stop ${node.id}#${inc} (${why})`);
    node.replica.beginShutdown();
    const live = (): boolean => node.up && node.incarnation === inc;
    const finish = (): void => {
      if (!live()) return;
      node.up = false;
      this.stats.stops++;
      this.refreshUp();
      node.replica.failAll('shutting_down', 'the node is shutting down');
      for (const conn of node.conns) this.closeFromNode(conn);
      node.conns.clear();
      this.forgetShellState(node);
      this.restartLater(node, this.options.restartMsMin + this.faultPrng.next() * (this.options.restartMsMax - this.options.restartMsMin));
    };
    // `await this.persisted`: the readies taken so far, through their afterPersist.
    const last = node.chain[node.chain.length - 1];
    const awaitPersisted = (): void => {
      if (!live()) return;
      if (node.afterBusy || (last !== undefined && node.chain.includes(last))) {
        this.schedule(1, `stopping ${node.id}`, awaitPersisted);
        return;
      }
      finish();
    };
    awaitPersisted();
  }

  /** The node closes a client's connection, after what it already sent. */
  private closeFromNode(conn: SimConn): void {
    if (!conn.open) return;
    this.toClientRaw(conn, `closed ${conn.owner.name}`, () => {
      if (!conn.open) return;
      conn.open = false;
      conn.owner.onClosed(conn);
    });
  }

  restartLater(node: SimNode, delayMs: number): void {
    if (node.restartPending) return;
    node.restartPending = true;
    this.schedule(delayMs, `restart ${node.id}`, () => {
      // Also in the liveness phase: a clean stop that began before it may end after it.
      if (node.up) return;
      this.stats.restarts++;
      this.boot(node);
    });
  }

  private deliverPeer(message: PeerMessage): void {
    const node = this.byId.get(message.to);
    if (node === undefined || !node.up) return;
    node.replica.receive(message, this.local(node));
    this.scheduleProcess(node);
  }

  scheduleProcess(node: SimNode): void {
    if (!node.up || node.processScheduled) return;
    node.processScheduled = true;
    const inc = node.incarnation;
    // setImmediate in node.ts: whatever else happens at this instant is batched in.
    this.schedule(0, node.processTag, () => {
      if (node.incarnation !== inc) return;
      node.processScheduled = false;
      this.process(node);
    });
  }

  private persistMs(): number {
    const o = this.options;
    let ms = o.persistMsMin + this.timingPrng.next() * (o.persistMsMax - o.persistMsMin);
    if (this.timingPrng.chance(o.slowPersistProbability)) ms += this.timingPrng.next() * o.slowPersistMsMax;
    return ms;
  }

  /** Sends a node's messages; a node set to die after its k-th message dies right there. */
  private sendFrom(node: SimNode, messages: readonly PeerMessage[]): void {
    if (node.muteAfterMessages !== null && this.phase === 'safety') {
      const allowed = messages.slice(0, node.muteAfterMessages);
      node.muteAfterMessages -= allowed.length;
      this.network.send(allowed);
      if (node.muteAfterMessages > 0) return;
      node.muteAfterMessages = null;
      this.network.mute(node.id, true);
      this.network.send(messages.slice(allowed.length));
      const o = this.options;
      this.note(`mute ${node.id} (new leader)`);
      this.schedule(o.partitionMsMin + this.faultPrng.next() * (o.partitionMsMax - o.partitionMsMin), `unmute ${node.id}`, () => {
        if (this.phase !== 'safety') return;
        this.network.mute(node.id, false);
        this.note(`unmute ${node.id}`);
      });
      return;
    }
    if (node.crashAfterMessages === null || this.phase !== 'safety') {
      this.network.send(messages);
      return;
    }
    if (node.crashAfterMessages <= 0) return; // its network is gone: nothing more leaves
    const allowed = messages.slice(0, node.crashAfterMessages);
    node.crashAfterMessages -= allowed.length;
    this.network.send(allowed);
    if (node.crashAfterMessages > 0) return;
    // Its network dies after that message (the rest of this batch is lost), and the node itself
    // a little later: its writes in flight may or may not make it to the disk.
    const inc = node.incarnation;
    const o = this.options;
    this.schedule(this.faultPrng.next() * 2 * o.persistMsMax, `crash ${node.id}`, () => {
      if (node.incarnation === inc && this.phase === 'safety') this.crashAndRestart(node, 'its network died after a few messages');
    });
  }

  /** A disk operation of this node started; a pending "crash while writing" fault lands in it. */
  private onDiskStart(node: SimNode, ms: number): void {
    if (!node.crashOnPersist || !node.up) return;
    node.crashOnPersist = false;
    const inc = node.incarnation;
    this.schedule(ms * this.faultPrng.next(), `crash ${node.id}`, () => {
      if (node.incarnation === inc) this.crashAndRestart(node, 'crash while writing');
    });
  }

  /** node.ts process(): takes every ready there is, applies and issues each one. */
  private process(node: SimNode): void {
    for (let idle = 0; ; ) {
      if (!node.up) return;
      const ready = node.replica.takeReady(this.local(node));
      if (ready === null) return;
      // node.ts loops while takeReady() returns something, without yielding: a Ready that never
      // runs dry would hang the real node.
      idle = isEmptyReady(ready) ? idle + 1 : 0;
      if (idle > 1000) {
        const r = node.replica.raft;
        throw new SimFailure('liveness', `${node.id} busy-loops: takeReady() keeps returning an empty Ready (role ${r.role}, commit ${r.commitIndex}, applied ${r.appliedIndex}, stable ${r.log.stableIndex}, last ${r.log.lastIndex}, snapshot ${r.log.snapshotIndex}); node.ts would never yield`);
      }
      this.sendFrom(node, ready.sendNow);
      this.checker.beforeApply(node, ready.raft.committed, ready.raft.snapshot);
      if (ready.raft.snapshot !== null) this.stats.snapshotsInstalled++;
      const before = node.replica.state.appliedIndex;
      node.replica.applyReady(ready, this.local(node));
      this.checker.afterApply(node, before);
      const record: ReadyRecord = { ready, written: false };
      node.chain.push(record);
      if (node.barrier) node.issueQueue.push(record);
      else this.issue(node, record);
    }
  }

  /** node.ts persist()/write()/writeWithSnapshot(): starts the ready's writes. */
  private issue(node: SimNode, record: ReadyRecord): void {
    const r = record.ready.raft;
    const inc = node.incarnation;
    const written = (): void => {
      if (!node.up || node.incarnation !== inc) return;
      record.written = true;
      this.scheduleChain(node);
    };
    const entries: DiskOp[] = [];
    if (r.truncateFrom !== null) entries.push({ kind: 'truncate', from: r.truncateFrom });
    if (r.entries.length > 0) entries.push({ kind: 'append', entries: storedEntries(r.entries) });
    const hardState: DiskOp[] = r.hardState === null ? [] : [{ kind: 'hard_state', hardState: { ...r.hardState } }];
    if (r.snapshot !== null) {
      // A barrier: one write after the other, and nothing later is issued before it is done.
      this.stats.persists++;
      if (this.phase === 'safety' && this.faultPrng.chance(this.options.installCrashProbability)) {
        // Somewhere in the middle of it (the snapshot file, the log reset, the entries after).
        this.schedule(this.faultPrng.next() * 3 * this.options.persistMsMax, `crash ${node.id}`, () => {
          if (node.incarnation === inc) this.crashAndRestart(node, 'crash while installing a snapshot');
        });
      }
      node.barrier = true;
      node.disk.sequence([...hardState, { kind: 'snapshot', snapshot: { ...r.snapshot } }, { kind: 'reset', nextIndex: r.snapshot.index + 1 }, ...entries], () => {
        if (!node.up || node.incarnation !== inc) return;
        node.barrier = false;
        written();
        while (!node.barrier) {
          const next = node.issueQueue.shift();
          if (next === undefined) break;
          this.issue(node, next);
        }
      });
      return;
    }
    const ops = [...hardState, ...entries];
    if (ops.length === 0) {
      written();
      return;
    }
    this.stats.persists++;
    let left = ops.length;
    for (const op of ops) node.disk.submit(op, () => { if (--left === 0) written(); });
  }

  /** The `persisted` promise chain: afterPersist runs for each written ready, in order. */
  private scheduleChain(node: SimNode): void {
    if (node.chainScheduled) return;
    node.chainScheduled = true;
    const inc = node.incarnation;
    this.schedule(0, node.chainTag, () => {
      if (!node.up || node.incarnation !== inc) return;
      node.chainScheduled = false;
      this.runChain(node);
    });
  }

  private runChain(node: SimNode): void {
    while (node.up && !node.afterBusy) {
      const head = node.chain[0];
      if (head === undefined || !head.written) return;
      node.chain.shift();
      this.afterPersist(node, head.ready);
      this.scheduleProcess(node);
    }
  }

  private afterPersist(node: SimNode, ready: NodeReady): void {
    this.checker.beforeApply(node, ready.raft.committed, ready.raft.snapshot);
    const before = node.replica.state.appliedIndex;
    const out = node.replica.afterPersist(ready, this.local(node));
    this.sendFrom(node, out.send);
    this.checker.afterApply(node, before);
    const snapshot = out.snapshotToSave;
    if (snapshot === null) return;
    this.stats.snapshotsTaken++;
    this.checker.compareSnapshot(node.id, snapshot, 'taken');
    node.afterBusy = true;
    const inc = node.incarnation;
    // Only once the snapshot is durable may the log before it go (DESIGN §7).
    node.disk.sequence([{ kind: 'snapshot', snapshot: { ...snapshot } }, { kind: 'compact', through: snapshot.index }], () => {
      if (!node.up || node.incarnation !== inc) return;
      node.afterBusy = false;
      this.scheduleChain(node);
      this.scheduleProcess(node);
    });
  }

  // ---- client connections (FIFO both ways, small latency) ----

  private clientLatencyMs(): number {
    return 0.05 + this.timingPrng.next() * 0.5;
  }

  connect(owner: ConnOwner, node: SimNode): SimConn {
    const conn = new SimConn(this, ++this.connSeq, owner, node, node.incarnation);
    this.toNode(conn, `open ${owner.name}>${node.id}`, () => {
      if (!node.up || node.incarnation !== conn.incarnation) {
        // Connection refused: the node is down (or restarted since the dial began).
        conn.open = false;
        this.toClientRaw(conn, `refused ${owner.name}`, () => owner.onClosed(conn));
        return;
      }
      node.conns.add(conn);
      conn.cs = node.replica.open(conn);
    });
    return conn;
  }

  send(conn: SimConn, request: Request): void {
    const text = JSON.stringify(request);
    this.toNode(conn, `request ${conn.owner.name}>${conn.node.id} ${request.action}`, () => {
      const node = conn.node;
      if (conn.cs === null || !node.up || node.incarnation !== conn.incarnation) return;
      node.replica.request(conn.cs, JSON.parse(text) as Request, this.local(node));
      this.scheduleProcess(node);
    });
  }

  /** The client closes the connection. */
  close(conn: SimConn): void {
    if (!conn.open) return;
    conn.open = false;
    this.toNode(conn, `close ${conn.owner.name}>${conn.node.id}`, () => {
      const node = conn.node;
      node.conns.delete(conn);
      if (conn.cs === null || !node.up || node.incarnation !== conn.incarnation) return;
      node.replica.close(conn.cs, this.local(node));
      this.scheduleProcess(node);
    });
  }

  /** Bytes from the client reach the node; even after the client closed, what it wrote first
   *  arrives first (a close is just the last thing on the stream). */
  private toNode(conn: SimConn, tag: string, run: () => void): void {
    const at = Math.max(conn.toNodeAt, this.now + this.clientLatencyMs());
    conn.toNodeAt = at;
    this.queue.push(at, tag, run);
  }

  /** An answer or event from the node reaches the client, unless the connection is closed by then. */
  toClient(conn: SimConn, tag: string, json: string, run: (copy: unknown, refIndex: number) => void): void {
    if (!conn.open) return;
    const refIndex = this.checker.referenceIndex;
    this.toClientRaw(conn, tag, () => {
      if (conn.open) run(JSON.parse(json), refIndex);
    });
  }

  private toClientRaw(conn: SimConn, tag: string, run: () => void): void {
    const at = Math.max(conn.toClientAt, this.now + this.clientLatencyMs());
    conn.toClientAt = at;
    this.queue.push(at, tag, run);
  }

  // ---- faults (safety phase) ----

  /** Notices new leaders, and sometimes crashes one within its first round trips. */
  private watchLeaders(): void {
    for (const node of this.upCache) {
      const raft = node.replica.raft;
      if (raft.role === 'leader' && node.ledTerm === raft.term && node.firstCommitSeen < raft.term && raft.commitIndex > node.ledFromCommit) {
        // Its commit index moved for the first time in this term: what it sends next (the
        // commit index, the rest of its entries) may never arrive.
        node.firstCommitSeen = raft.term;
        if (this.faultPrng.chance(this.options.firstCommitIsolateProbability)) this.isolateNode(node, `first commit of term ${raft.term}`);
      }
      if (raft.role !== 'leader' || node.ledTerm === raft.term) continue;
      node.ledTerm = raft.term;
      node.ledFromCommit = raft.commitIndex;
      const o = this.options;
      const windowMs = 3 * o.network.latencyMsMax + o.heartbeatMs + o.persistMsMax;
      const inc = node.incarnation;
      if (this.faultPrng.chance(o.newLeaderCrashProbability / 2)) {
        // Dies after a few messages: a cut at a message boundary, where a time window would
        // rarely land (e.g. after an old entry was acknowledged, before the new no-op went out).
        node.crashAfterMessages = this.faultPrng.int(0, 3 * (this.nodes.length - 1));
      } else if (this.faultPrng.chance(o.newLeaderCrashProbability)) {
        this.schedule(this.faultPrng.next() * windowMs, `crash ${node.id}`, () => {
          if (node.incarnation === inc && this.phase === 'safety') this.crashAndRestart(node, `new leader of term ${raft.term}`);
        });
      } else if (this.faultPrng.chance(o.newLeaderIsolateProbability / 2)) {
        node.muteAfterMessages = this.faultPrng.int(0, 3 * (this.nodes.length - 1));
      } else if (this.faultPrng.chance(o.newLeaderIsolateProbability)) {
        const delayMs = this.faultPrng.chance(0.3) ? 0 : this.faultPrng.next() * windowMs;
        this.schedule(delayMs, `isolate ${node.id}`, () => this.isolateNode(node, `new leader of term ${raft.term}`));
      }
    }
  }

  startFaults(): void {
    const tick = (): void => {
      if (this.phase !== 'safety') return;
      this.faultTick();
      this.schedule(100, 'faults', tick);
    };
    this.schedule(100, 'faults', tick);
  }

  private crashAndRestart(node: SimNode, why: string): void {
    // Faults end with the safety phase, including those scheduled before it ended.
    if (this.phase !== 'safety') return;
    const o = this.options;
    this.crash(node, why);
    this.restartLater(node, o.restartMsMin + this.faultPrng.next() * (o.restartMsMax - o.restartMsMin));
  }

  private faultTick(): void {
    const o = this.options;
    const p = this.faultPrng;
    const perTick = 0.1;
    for (const node of this.nodes) {
      if (node.up && p.chance(o.stopRate * perTick)) this.stopGracefully(node, 'SIGTERM');
    }
    for (const node of this.nodes) {
      if (!node.up || !p.chance(o.crashRate * perTick)) continue;
      if (p.chance(o.crashInPersistProbability)) node.crashOnPersist = true;
      else this.crashAndRestart(node, 'crash');
    }
    for (const node of this.nodes) if (p.chance(o.nodeIsolateRate * perTick)) this.isolateNode(node, 'isolation');
    if (p.chance(o.leaderCrashRate * perTick)) {
      const leader = this.upCache.find((n) => n.replica.raft.isLeader);
      if (leader !== undefined) this.crashAndRestart(leader, 'leader crash');
    }
    if (p.chance(o.clusterCrashRate * perTick)) {
      for (const node of this.nodes) if (node.up) this.crashAndRestart(node, 'whole cluster crash');
    }
    for (const link of this.network.links) {
      if (!p.chance(o.linkFlapRate * perTick)) continue;
      this.network.flap(link, true);
      this.schedule(p.next() * o.linkDownMsMax, 'link up', () => {
        if (this.phase === 'safety') this.network.flap(link, false);
      });
    }
    if (!this.network.partitioned && p.chance(o.partitionRate * perTick)) {
      const kinds: PartitionKind[] = ['isolate', 'isolate', 'split', 'one_way_in', 'one_way_out', 'random_links'];
      const what = this.network.partition(p.pick(kinds));
      this.note(`partition: ${what}`);
      this.healLater();
    }
  }

  /** Cuts a node off both ways for a while (overlapping other isolations and partitions). */
  private isolateNode(node: SimNode, why: string): void {
    if (this.phase !== 'safety') return;
    const o = this.options;
    this.network.isolateNode(node.id, true);
    this.note(`isolate ${node.id} (${why})`);
    this.schedule(o.partitionMsMin + this.faultPrng.next() * (o.partitionMsMax - o.partitionMsMin), `rejoin ${node.id}`, () => {
      if (this.phase !== 'safety') return;
      this.network.isolateNode(node.id, false);
      this.note(`rejoin ${node.id}`);
    });
  }

  private healLater(): void {
    const o = this.options;
    const generation = ++this.partitionGeneration;
    this.schedule(o.partitionMsMin + this.faultPrng.next() * (o.partitionMsMax - o.partitionMsMin), 'heal', () => {
      if (this.phase !== 'safety' || generation !== this.partitionGeneration) return;
      this.network.heal();
      this.note('heal');
    });
  }

  // ---- phases ----

  /** TigerBeetle's transition_to_liveness_mode: heal everything, restart every node, stop
   *  faults, and let the participants finish. */
  startLiveness(): void {
    this.phase = 'liveness';
    this.network.faulty = false;
    this.network.healAll();
    this.note('liveness phase: healed, faults off, restarting every node');
    for (const node of this.nodes) {
      node.crashOnPersist = false;
      node.crashAfterMessages = null;
      node.muteAfterMessages = null;
      if (!node.up) {
        this.stats.restarts++;
        this.boot(node);
      }
    }
    for (const p of this.participants) p.windDown();
  }

  /** Converged: one leader whose whole log is committed, every node applied all of it, and every
   *  participant is idle. */
  converged(): boolean {
    if (this.upCache.length !== this.nodes.length) return false;
    const leaders = this.nodes.filter((n) => n.replica.raft.isLeader);
    if (leaders.length !== 1) return false;
    const raft = (leaders[0] as SimNode).replica.raft;
    if (raft.commitIndex !== raft.log.lastIndex) return false;
    for (const node of this.nodes) {
      if (node.replica.state.appliedIndex !== raft.commitIndex) return false;
      if (node.replica.raft.term !== raft.term) return false;
    }
    return this.participants.every((p) => p.idle);
  }

  describeStuck(): string {
    const nodes = this.nodes.map((n) => {
      if (!n.up) return `${n.id}: down`;
      const r = n.replica.raft;
      return `${n.id}: ${r.role} term=${r.term} leader=${r.leader ?? '-'} commit=${r.commitIndex} applied=${n.replica.state.appliedIndex} last=${r.log.lastIndex} snap=${r.log.snapshotIndex}`;
    });
    const busy = this.participants.filter((p) => !p.idle).map((p) => p.describe());
    return `${nodes.join('; ')}${busy.length > 0 ? ` | not idle: ${busy.join('; ')}` : ''}`;
  }

  /** Runs the liveness phase until convergence, or fails. */
  awaitConvergence(deadline: number): void {
    let converged = false;
    const probeMs = 25;
    const probe = (): void => {
      if (this.converged()) {
        converged = true;
        return;
      }
      this.schedule(probeMs, 'probe', probe);
    };
    this.schedule(probeMs, 'probe', probe);
    this.runUntil(deadline, () => converged);
    if (!converged) liveness(`no convergence ${Math.round(deadline - this.now + this.options.livenessMs)}ms into the liveness phase: ${this.describeStuck()}`);
  }

  nodeById(id: string): SimNode {
    const node = this.byId.get(id);
    if (node === undefined) throw new SimFailure('crash', `no node ${id}`);
    return node;
  }
}

function isEmptyReady(ready: NodeReady): boolean {
  const r = ready.raft;
  return ready.sendNow.length === 0 && r.hardState === null && r.snapshot === null && r.truncateFrom === null
    && r.entries.length === 0 && r.messages.length === 0 && r.committed.length === 0 && r.reads.length === 0;
}
