// The replica: one node's logic, pure. It composes the consensus core (lib/raft) with the lock
// state machine (lib/locks) and the node's clients, and does the work of DESIGN §1, §5 and §6:
//
// - Requests become commands. The leader stamps them with cluster time and proposes them; a
//   follower forwards them to the leader. Every command carries `origin = node#seq` so the node
//   holding the client's connection recognises the applied entry and answers from it.
// - Every state-changing command carries a request id (the client's `request_id`, or one the
//   node makes up), so a command sent twice (re-forwarded after a leader change or a lost
//   message) takes effect once: `apply` remembers each session's answers.
// - Linearizable reads use read-index: the leader confirms its leadership with a heartbeat
//   round, and the read is answered once that commit index is applied locally.
//
// It holds no sockets, timers or clocks: the shell passes the monotonic time into every call,
// persists what `takeReady()` returns, sends its messages, and calls `afterPersist()`.
import { assert } from '../core/assert';
import { errorAnswer, type Answer } from '../protocol/answers';
import type { ErrorCode } from '../protocol/errors';
import type { CheckRequest, ReadRequest, Request, RequestId } from '../protocol/schemas';
import { isDedupCommand, type AcquireCommand, type Command, type ConnId, type PreemptCommand, type Touch } from '../locks/commands';
import { apply, takeRefusedAhead, type Effect } from '../locks/state-machine';
import { checkLock, createLockState, nextDeadlineAt, readFile, type LockState } from '../locks/state';
import { decodeSnapshot, encodeSnapshot } from '../locks/snapshot';
import { Raft, type Ready } from '../raft/raft';
import type { Entry, Snapshot } from '../raft/messages';
import type { Prng } from '../core/prng';
import { sameSecret } from '../core/secrets';
import { defaultStateLimits, type StateLimits } from '../core/limits';
import { isConnectionless, type ClientConnection, type StatusInfo } from '../io/front-door';
import { isReplicaMessage, type PeerMessage, type ReplicaMessage } from './peer-messages';
import { PeerSnapshot } from './peer-snapshot';

export interface ReplicaConfig {
  nodeId: string;
  /** Distinguishes this process's connection ids from an earlier run's. */
  bootId: string;
  members: string[];
  sessionTtlMsDefault: number;
  heartbeatMs: number;
  electionTimeoutMs: number;
  /** Cluster time is committed at least this often while deadlines are pending. */
  idleTickMs: number;
  /** A request with no answer after this long is answered `unavailable`. */
  unavailableAfterMs: number;
  /** A sent command or read not applied after this long is sent again (it is de-duplicated). */
  resendAfterMs: number;
  /** Save a snapshot (for the disk log to shrink, and a restart to start from) after this many
   *  applied entries. */
  snapshotEveryEntries: number;
  /** Applied entries kept in memory for a follower that lags (or, on a follower, for when it
   *  leads); one further behind gets a snapshot made then. Default 2000, and never more than
   *  snapshotEveryEntries. */
  logEntriesKept?: number;
  entriesPerAppendMax: number;
  rng: Prng;
  /** How linearizable reads are confirmed: 'index' (read-index, thesis §6.4: a heartbeat round,
   *  no log write) or 'log' (each batch of reads rides an entry through the log). 'index' is
   *  the default; 'log' exists to measure the difference. */
  readPath?: 'index' | 'log';
  /** Test-only: deliberately broken Raft rules (see RaftConfig.broken). */
  broken?: { commitOlderTermByCount?: boolean; voteForStaleLog?: boolean };
  /** Draws the unguessable resume secret of a new session (randomness stays outside apply). */
  newSecret: () => string;
  /** With a token, a connection is served only after it presented it (PROTOCOL §1
   *  `--auth-token-file`): as `hello.auth`, or as a bearer token its transport carried. */
  authToken?: string | null;
  /** The bounds this node commits when it becomes leader (default: defaultStateLimits). */
  limits?: StateLimits;
  /** State-changing requests of one connection in the log at once (proposed, not applied);
   *  more wait their turn in order. A flooding client then gets its share of each batch, not
   *  all of it (issue 5: a hostile client must not slow the others). Default 32. */
  proposalsPerConnectionMax?: number;
}

interface ConnState {
  readonly conn: ClientConnection;
  /** The session key in commands: unique per TCP connection, null for HTTP. */
  readonly key: ConnId;
  clientId: string | undefined;
  /** A hello for this connection is sent and not applied yet. */
  helloPending: boolean;
  /** A bye for this connection is sent: the next request needs a new session. */
  byeSent: boolean;
  closed: boolean;
  /** Presented the auth token (always true when none is configured). */
  authed: boolean;
  /** Its state-changing requests proposed and not applied yet, and those waiting their turn. */
  proposing: number;
  parked: Request[];
}

interface Reply {
  conn: ConnState;
  id: RequestId;
}

/** A command this node accepted and has not seen applied yet. */
interface PendingCommand {
  command: Command;
  /** Who to answer; none for commands the node makes itself (implicit hello, disconnected). */
  reply: Reply | null;
  /** The connection whose hello this is (its helloPending clears when it is applied). */
  helloFor: ConnState | null;
  /** Keepalives answered by this touch. */
  touchReplies: Reply[] | null;
  /** Reads answered when this entry applies (readPath 'log'). */
  reads: PendingRead[] | null;
  /** Fields only this node knows, added to a success answer (hello: node, leader). */
  extra: Record<string, unknown> | null;
  /** The connection whose share of proposals this command takes (see proposalsPerConnectionMax). */
  share: ConnState | null;
  createdAt: number;
  /** When it was last proposed or forwarded, and to which leader; null while queued. */
  sentAt: number | null;
  /** Ever proposed or forwarded: then it may be in some leader's log. */
  everSent: boolean;
  sentTo: string | null;
}

interface PendingRead {
  reply: Reply;
  request: CheckRequest | ReadRequest;
  createdAt: number;
}

interface ReadBatch {
  reads: PendingRead[];
  sentAt: number;
  sentTo: string;
  /** Known once the leader confirmed it. */
  index: number | null;
}

export interface NodeReady {
  raft: Ready<Command>;
  /** Messages that may leave before persisting: the leader's appends, forwards, read answers. */
  sendNow: PeerMessage[];
}

export interface AfterPersist {
  /** Raft messages that had to wait for the persist. */
  send: PeerMessage[];
  /** A snapshot this node took: write it durably, then compact the disk log through its index. */
  snapshotToSave: Snapshot | null;
  /** Appends applied, for the shell to materialise the guarded files. */
  appends: { file: string; data: string }[];
}

export class Replica {
  state: LockState;
  readonly raft: Raft<Command>;
  private readonly config: ReplicaConfig;
  private readonly prefix: string;
  private readonly pending = new Map<string, PendingCommand>();
  private queued: string[] = [];
  /** Commands for the log when this node leads: its own and those followers forwarded. */
  private leaderBatch: Command[] = [];
  /** Queued acquires by `client \0 lock`. */
  private readonly waiting = new Map<string, Reply[]>();
  /** Sessions seen alive since the last flush, by `client \0 conn`. */
  private touches = new Map<string, Touch>();
  private touchReplies: Reply[] = [];
  private readQueue: PendingRead[] = [];
  private readonly readBatches = new Map<string, ReadBatch>();
  /** Read-index rounds run for followers: ctx -> follower. */
  private readonly remoteReads = new Map<string, { from: string; ctx: string }>();
  private outbox: PeerMessage[] = [];
  private readonly connsByKey = new Map<string, ConnState>();
  private readonly unparkable = new Set<ConnState>();
  private originSeq = 0;
  private connSeq = 0;
  private readSeq = 0;
  // Cluster time (DESIGN §3): a leader resumes from the newest time in its log and advances by
  // its own monotonic clock.
  private wasLeader = false;
  private timeBase = 0;
  private monoBase = 0;
  private lastStampedAt = 0;
  /** Index of the last snapshot saved or installed (the disk log is compacted through it). */
  private savedSnapshotIndex = 0;
  private readonly peerSnapshot = new PeerSnapshot();
  private tickInFlightSince: number | null = null;
  private lastProposalAt = 0;
  private shuttingDown = false;

  constructor(config: ReplicaConfig) {
    this.config = config;
    // Unique per process: a restarted node must not take an entry its previous run proposed (and
    // that applies only now) for one of its own new requests.
    this.prefix = `${config.nodeId}/${config.bootId}#`;
    this.state = createLockState();
    this.raft = new Raft<Command>({
      id: config.nodeId,
      members: config.members,
      electionTimeoutMs: config.electionTimeoutMs,
      heartbeatMs: config.heartbeatMs,
      entriesPerAppendMax: config.entriesPerAppendMax,
      rng: config.rng,
      ...(config.broken === undefined ? {} : { broken: config.broken }),
      snapshotNow: () => this.peerSnapshot.get(this.raft.log.snapshotIndex, () => this.snapshotNow()),
    });
  }

  /** Entries between saved snapshots: snapshotEveryEntries, or half the locks and sessions
   *  when there are more. A snapshot costs time and memory in proportion to the state, so a
   *  large state takes one less often (each entry pays for a constant share of one); the disk
   *  log a restart replays stays shorter than the state the snapshot would have held. */
  private snapshotDueAfter(): number {
    return Math.max(this.config.snapshotEveryEntries, (this.state.locks.size + this.state.sessions.size) >> 1);
  }

  /** A snapshot of the state as applied now (for a follower that lags, or to save). */
  private snapshotNow(): Snapshot {
    const index = this.state.appliedIndex;
    const term = this.raft.log.termAt(index);
    assert(term !== undefined, `snapshot at ${index}: the log no longer knows its term`);
    return { index, term, data: encodeSnapshot(this.state) };
  }

  /** Restores what was on disk (snapshot, term/vote, log tail); call once before anything else. */
  load(disk: { hardState: { term: number; votedFor: string | null }; snapshot: Snapshot | null; entries: Entry<Command>[] }, now: number): void {
    if (disk.snapshot !== null) {
      this.state = decodeSnapshot(disk.snapshot.data);
      this.savedSnapshotIndex = disk.snapshot.index;
    }
    this.raft.load(disk, now);
    this.lastStampedAt = this.state.now;
  }

  get serving(): boolean {
    return !this.shuttingDown;
  }

  beginShutdown(): void {
    this.shuttingDown = true;
  }


  status(): StatusInfo {
    const role = this.raft.role === 'precandidate' ? 'candidate' : this.raft.role;
    return {
      node: this.config.nodeId,
      role,
      term: this.raft.term,
      leader: this.raft.leader,
      commit_index: this.raft.commitIndex,
      members: [...this.config.members],
    };
  }

  // ---- connections ----

  open(conn: ClientConnection): ConnState {
    const key = isConnectionless(conn.kind) ? null : `${this.config.nodeId}/${this.config.bootId}/${++this.connSeq}`;
    const cs: ConnState = {
      conn, key, clientId: undefined, helloPending: false, byeSent: false, closed: false, authed: this.authorize(conn.bearer),
      proposing: 0, parked: [],
    };
    if (key !== null) this.connsByKey.set(key, cs);
    return cs;
  }

  close(cs: ConnState, now: number): void {
    if (cs.closed) return;
    cs.closed = true;
    if (cs.key === null) return;
    this.connsByKey.delete(cs.key);
    const client = cs.clientId;
    if (client === undefined || this.shuttingDown) return;
    const session = this.state.sessions.get(client);
    if ((session !== undefined && session.conn === cs.key) || cs.helloPending) {
      this.submit({ type: 'disconnected', at: 0, client, conn: cs.key }, null, now);
    }
  }

  /** True when no auth token is configured or `presented` is it. */
  authorize(presented: string | undefined): boolean {
    const token = this.config.authToken ?? null;
    return token === null || (presented !== undefined && sameSecret(presented, token));
  }

  // ---- client requests ----

  request(cs: ConnState, request: Request, now: number, unparking = false): void {
    if (this.shuttingDown) {
      this.answer({ conn: cs, id: request.id }, errorAnswer('shutting_down', 'the node is shutting down'));
      return;
    }
    if (!cs.authed) {
      // Nothing is served, not even status, before the token (PROTOCOL §1); nothing changes.
      const presented = request.action === 'hello' ? request.auth : undefined;
      if (!this.authorize(presented)) {
        this.answer({ conn: cs, id: request.id }, errorAnswer('unauthorized', presented === undefined
          ? 'this node requires an auth token: send hello with auth first'
          : 'wrong auth token'));
        return;
      }
      cs.authed = true;
    }
    switch (request.action) {
      case 'status':
        this.answer({ conn: cs, id: request.id }, { ok: true, ...this.status() });
        return;
      case 'check':
      case 'read':
        this.noteContact(cs);
        if (request.stale_ok === true) this.answer({ conn: cs, id: request.id }, this.readLocal(request));
        else this.readQueue.push({ reply: { conn: cs, id: request.id }, request, createdAt: now });
        return;
      default:
        break;
    }
    // Everything else names a client_id, which binds the connection (PROTOCOL §4 Sessions).
    const client = request.client_id;
    const reply = { conn: cs, id: request.id };
    if (cs.clientId === undefined) cs.clientId = client;
    else if (cs.clientId !== client) {
      this.answer(reply, errorAnswer('client_mismatch', `this connection belongs to client_id ${cs.clientId}`));
      return;
    }
    if (request.action === 'hello') {
      cs.helloPending = true;
      cs.byeSent = false;
      this.submit({
        type: 'hello', at: 0, client, conn: cs.key, implicit: false,
        ttlMs: request.ttl_ms ?? this.config.sessionTtlMsDefault, graceMs: request.grace_ms ?? 0,
        ...(request.resume_token === undefined ? {} : { resume: request.resume_token }),
        fresh: this.config.newSecret(),
      }, reply, now);
      return;
    }
    this.ensureSession(cs, client, now);
    if (request.action === 'keepalive') {
      this.touch(client, cs.key);
      this.touchReplies.push(reply);
      return;
    }
    // Its turn: a connection with its share of proposals in the log waits, in order.
    if (!unparking && (cs.parked.length > 0 || cs.proposing >= this.proposalsMax)) {
      cs.parked.push(request);
      return;
    }
    // The node's own request id when the client gave none: a re-sent command then still takes
    // effect once. It starts with a character a client is unlikely to use in its own ids.
    const origin = this.nextOrigin();
    const req = request.request_id ?? `~${origin}`;
    const common = { at: 0, client, conn: cs.key, req };
    switch (request.action) {
      case 'preempt':
      case 'acquire': {
        const command: PreemptCommand | AcquireCommand = request.action === 'preempt'
          ? { type: 'preempt', ...common, lock: request.lock_name, ...opt('leaseMs', request.lease_ms) }
          : { type: 'acquire', ...common, lock: request.lock_name, ...opt('timeoutMs', request.timeout_ms), ...opt('leaseMs', request.lease_ms) };
        const refused = takeRefusedAhead(this.state, command);
        if (refused !== null) this.answer(reply, refused);
        else this.submit(command, reply, now, origin);
        return;
      }
      case 'release':
        this.submit({ type: 'release', ...common, lock: request.lock_name, ...opt('token', request.token) }, reply, now, origin);
        return;
      case 'append':
        this.submit({
          type: 'append', ...common, lock: request.lock_name, token: request.token, file: request.file, data: request.data,
        }, reply, now, origin);
        return;
      case 'bye':
        this.submit({ type: 'bye', ...common }, reply, now, origin);
        cs.byeSent = true;
        return;
      default: {
        const never: never = request;
        assert(false, `unhandled action ${JSON.stringify(never)}`);
      }
    }
  }

  /** Opens the session implicitly for a first request that was not a hello (PROTOCOL §4). */
  private ensureSession(cs: ConnState, client: string, now: number): void {
    if (cs.helloPending) return;
    const session = this.state.sessions.get(client);
    // After a bye the applied state may still show the session until the bye is applied.
    if (session !== undefined && session.conn === cs.key && !cs.byeSent) return;
    cs.byeSent = false;
    cs.helloPending = true;
    this.submit({
      type: 'hello', at: 0, client, conn: cs.key, implicit: true,
      ttlMs: this.config.sessionTtlMsDefault, graceMs: 0, fresh: this.config.newSecret(),
    }, null, now, undefined, null, cs);
  }

  /** Reads from a connection with a session count as contact (PROTOCOL §4: the session ends
   *  when no request from it reached the cluster for ttl_ms). */
  private noteContact(cs: ConnState): void {
    if (cs.clientId !== undefined && this.state.sessions.get(cs.clientId)?.conn === cs.key) this.touch(cs.clientId, cs.key);
  }

  private touch(client: string, conn: ConnId): void {
    this.touches.set(`${client}\u0000${conn ?? ''}`, { client, conn });
  }

  private readLocal(request: CheckRequest | ReadRequest): Answer {
    return request.action === 'check' ? checkLock(this.state, request.lock_name) : readFile(this.state, request.file);
  }

  private nextOrigin(): string {
    return `${this.prefix}${++this.originSeq}`;
  }

  private submit(
    command: Command, reply: Reply | null, now: number, origin = this.nextOrigin(),
    touchReplies: Reply[] | null = null, helloFor: ConnState | null = command.type === 'hello' ? reply?.conn ?? null : null,
  ): void {
    command.origin = origin;
    const extra = command.type === 'hello' && !command.implicit ? { node: this.config.nodeId } : null;
    // A client's own state changes take a share of its connection's proposals.
    const share = reply !== null && isDedupCommand(command) ? reply.conn : null;
    if (share !== null) share.proposing++;
    this.pending.set(origin, { command, reply, helloFor, touchReplies, reads: null, extra, share, createdAt: now, sentAt: null, sentTo: null, everSent: false });
    this.queued.push(origin);
  }

  // ---- peers ----

  receive(message: PeerMessage, now: number): void {
    if (!isReplicaMessage(message)) {
      this.raft.step(message, now);
      return;
    }
    this.onReplicaMessage(message, now);
  }

  private onReplicaMessage(message: ReplicaMessage, now: number): void {
    switch (message.type) {
      case 'forward':
        if (this.raft.isLeader) {
          for (const command of message.commands) this.leaderBatch.push(command);
        } else {
          this.outbox.push({
            type: 'forward_reject', from: this.config.nodeId, to: message.from,
            origins: message.commands.map((c) => c.origin ?? ''), leader: this.raft.leader,
          });
        }
        return;
      case 'forward_reject':
        // Not re-sent at once: while this node still takes the refuser for the leader that
        // would be a storm of forwards and refusals. tick() re-sends once this node's view of
        // the leader changes, or after resendAfterMs.
        return;
      case 'read_index': {
        const ctx = `${message.from}|${message.ctx}`;
        if (this.raft.readIndex(ctx)) this.remoteReads.set(ctx, { from: message.from, ctx: message.ctx });
        else this.outbox.push({ type: 'read_index_resp', from: this.config.nodeId, to: message.from, ctx: message.ctx, index: -1 });
        return;
      }
      case 'read_index_resp': {
        const batch = this.readBatches.get(message.ctx);
        if (batch === undefined) return;
        if (message.index < 0) {
          // Not the leader: tick() re-sends once the leader changes or after resendAfterMs.
          return;
        } else {
          batch.index = message.index;
          this.answerReads(now);
        }
        return;
      }
      default: {
        const never: never = message;
        assert(false, `unhandled replica message ${JSON.stringify(never)}`);
      }
    }
  }

  private requeue(origin: string, p: PendingCommand): void {
    p.sentAt = null;
    p.sentTo = null;
    this.queued.push(origin);
  }

  // ---- time ----

  /** Advances timers: Raft elections and heartbeats, re-sends, `unavailable` for requests that
   *  waited too long, and ticks of cluster time while this node leads. */
  tick(now: number): void {
    this.raft.tick(now);
    this.noticeLeadership(now);
    const leader = this.raft.leader;
    for (const [origin, p] of this.pending) {
      if (now - p.createdAt >= this.config.unavailableAfterMs) {
        this.pending.delete(origin);
        this.endShare(p);
        // PROTOCOL §5 `unavailable`: retry. A request that never reached a leader was refused
        // before it was applied. One that reached a leader's log without committing may still
        // be applied once a quorum is back, whatever we answer now: say so; re-sent with the
        // same request_id it takes effect at most once and gets the first answer.
        this.failPending(p, 'unavailable', p.everSent
          ? 'no quorum confirmed the request in time; it may still be applied later: re-send it with the same request_id to learn the outcome'
          : 'no leader to send the request to; it was not applied');
        continue;
      }
      if (p.sentAt !== null && leader !== null && (p.sentTo !== leader || now - p.sentAt >= this.config.resendAfterMs)) {
        this.requeue(origin, p);
      }
    }
    this.queued = this.queued.filter((origin) => this.pending.has(origin));
    for (const [ctx, batch] of this.readBatches) {
      if (now - batch.sentAt >= this.config.unavailableAfterMs) {
        this.readBatches.delete(ctx);
        for (const r of batch.reads) this.answer(r.reply, errorAnswer('unavailable', 'no leader confirmed the read in time'));
      } else if (batch.index === null && leader !== null && (batch.sentTo !== leader || now - batch.sentAt >= this.config.resendAfterMs)) {
        this.readBatches.delete(ctx);
        this.readQueue.unshift(...batch.reads);
      }
    }
    this.readQueue = this.readQueue.filter((r) => {
      if (now - r.createdAt < this.config.unavailableAfterMs) return true;
      this.answer(r.reply, errorAnswer('unavailable', 'no leader to confirm the read'));
      return false;
    });
    if (this.raft.isLeader) this.maybeProposeTick(now);
  }

  private noticeLeadership(now: number): void {
    const leading = this.raft.isLeader;
    if (leading && !this.wasLeader) {
      // Resume cluster time from the newest time in the log, never from our own clock's zero.
      this.timeBase = Math.max(this.state.now, this.lastLogTime());
      this.monoBase = now;
      this.lastStampedAt = this.timeBase;
      this.tickInFlightSince = null;
      // The bounds are replicated state: ours take effect once committed, the same on every
      // replica. Members should be configured alike; the latest leader's values win.
      const limits = this.config.limits ?? defaultStateLimits;
      if (!sameLimits(limits, this.limitsInLog())) {
        this.leaderBatch.push({ type: 'limits', at: 0, limits: { ...limits }, origin: `${this.prefix}limits` });
      }
    }
    if (!leading && this.wasLeader) {
      // What we were going to propose goes to the new leader instead, once known.
      for (const command of this.leaderBatch) if (command.origin !== undefined && this.pending.has(command.origin)) this.requeue(command.origin, this.pending.get(command.origin) as PendingCommand);
      this.leaderBatch = [];
      for (const [ctx, remote] of this.remoteReads) {
        this.outbox.push({ type: 'read_index_resp', from: this.config.nodeId, to: remote.from, ctx: remote.ctx, index: -1 });
        this.remoteReads.delete(ctx);
      }
    }
    this.wasLeader = leading;
  }

  /** The bounds in force once everything in the log is applied. */
  private limitsInLog(): StateLimits {
    const log = this.raft.log;
    for (let i = log.lastIndex; i > log.snapshotIndex && i > this.state.appliedIndex; i--) {
      const data = log.entry(i)?.data;
      if (data?.type === 'limits') return data.limits;
    }
    return this.state.limits;
  }

  private lastLogTime(): number {
    const log = this.raft.log;
    for (let i = log.lastIndex; i > log.snapshotIndex; i--) {
      const data = log.entry(i)?.data;
      if (data !== null && data !== undefined) return data.at;
    }
    return this.state.now;
  }

  clusterNow(now: number): number {
    return Math.max(this.lastStampedAt, this.timeBase + (now - this.monoBase));
  }

  /** Cluster time for a command: whole milliseconds, so that every time the state keeps (grants,
   *  contacts, deadlines: all this plus whole-ms durations) is a small integer, not a boxed
   *  double, and snapshots write it short (issue 7: memory per lock). Never early: rounded down. */
  private stampNow(now: number): number {
    const at = Math.floor(this.clusterNow(now));
    this.lastStampedAt = at;
    return at;
  }

  private maybeProposeTick(now: number): void {
    if (this.tickInFlightSince !== null && now - this.tickInFlightSince < this.config.resendAfterMs) return;
    const next = nextDeadlineAt(this.state);
    if (next === null) return;
    if (next <= this.clusterNow(now) || now - this.lastProposalAt >= this.config.idleTickMs) {
      this.tickInFlightSince = now;
      this.leaderBatch.push({ type: 'tick', at: 0, origin: `${this.prefix}tick` });
    }
  }

  // ---- the loop: takeReady -> persist -> afterPersist ----

  /** Sends what is queued (propose as leader, forward as follower) and drains Raft's output. */
  takeReady(now: number): NodeReady | null {
    this.noticeLeadership(now);
    this.unpark(now);
    this.flushTouch(now);
    this.flushCommands(now);
    this.flushReads(now);
    const sendNow = this.outbox;
    this.outbox = [];
    if (!this.raft.hasReady() && sendNow.length === 0) return null;
    const raft = this.raft.ready();
    for (const m of raft.sendNow) sendNow.push(m);
    for (const read of raft.reads) this.onReadConfirmed(read.ctx, read.index, sendNow);
    const empty = raft.hardState === null && raft.snapshot === null && raft.truncateFrom === null && raft.entries.length === 0
      && raft.messages.length === 0 && raft.committed.length === 0 && raft.reads.length === 0 && sendNow.length === 0;
    // Never hand the shell an empty ready: it would take the next one at once, forever.
    return empty ? null : { raft, sendNow };
  }

  get hasWork(): boolean {
    return this.queued.length > 0 || this.leaderBatch.length > 0 || this.touchReplies.length > 0
      || this.touches.size > 0 || this.readQueue.length > 0 || this.outbox.length > 0 || this.raft.hasReady();
  }

  private flushTouch(now: number): void {
    if (this.touchReplies.length === 0 && this.touches.size === 0) return;
    const replies = this.touchReplies;
    this.submit({ type: 'touch', at: 0, touches: [...this.touches.values()] }, null, now, this.nextOrigin(), replies);
    this.touches = new Map();
    this.touchReplies = [];
  }

  private flushCommands(now: number): void {
    const leader = this.raft.leader;
    if (this.queued.length > 0 && leader !== null) {
      const leading = leader === this.config.nodeId && this.raft.isLeader;
      const forward: Command[] = [];
      for (const origin of this.queued) {
        const p = this.pending.get(origin);
        if (p === undefined || p.sentAt !== null) continue;
        p.sentAt = now;
        p.sentTo = leader;
        p.everSent = true;
        if (leading) this.leaderBatch.push(p.command);
        else forward.push(p.command);
      }
      this.queued = [];
      if (forward.length > 0) this.outbox.push({ type: 'forward', from: this.config.nodeId, to: leader, commands: forward });
    }
    if (this.leaderBatch.length > 0 && this.raft.isLeader) {
      const batch = this.leaderBatch;
      this.leaderBatch = [];
      // Each proposal is a fresh copy: a command re-sent after a lost answer is the same object
      // as the one already in the log, and stamping that in place would change an entry that
      // was already sent and written.
      this.raft.propose(batch.map((command) => ({ ...command, at: this.stampNow(now) })));
      this.lastProposalAt = now;
    }
  }

  private flushReads(now: number): void {
    const leader = this.raft.leader;
    if (this.readQueue.length === 0 || leader === null) return;
    if (this.config.readPath === 'log') {
      // The reads are answered from the state right after an entry of their own applies.
      const origin = this.nextOrigin();
      this.submit({ type: 'touch', at: 0, touches: [] }, null, now, origin);
      (this.pending.get(origin) as PendingCommand).reads = this.readQueue;
      this.readQueue = [];
      this.flushCommands(now);
      return;
    }
    const ctx = `r${++this.readSeq}`;
    const batch: ReadBatch = { reads: this.readQueue, sentAt: now, sentTo: leader, index: null };
    this.readQueue = [];
    this.readBatches.set(ctx, batch);
    if (this.raft.isLeader) {
      const started = this.raft.readIndex(`${this.config.nodeId}|${ctx}`);
      assert(started, 'a leader starts a read-index round');
    } else {
      this.outbox.push({ type: 'read_index', from: this.config.nodeId, to: leader, ctx });
    }
  }

  private onReadConfirmed(fullCtx: string, index: number, out: PeerMessage[]): void {
    const remote = this.remoteReads.get(fullCtx);
    if (remote !== undefined) {
      this.remoteReads.delete(fullCtx);
      out.push({ type: 'read_index_resp', from: this.config.nodeId, to: remote.from, ctx: remote.ctx, index });
      return;
    }
    const batch = this.readBatches.get(fullCtx.slice(fullCtx.indexOf('|') + 1));
    if (batch !== undefined) batch.index = index;
  }

  /** Answers confirmed reads whose index is applied here. */
  private answerReads(_now: number): void {
    for (const [ctx, batch] of this.readBatches) {
      if (batch.index === null || batch.index > this.state.appliedIndex) continue;
      this.readBatches.delete(ctx);
      for (const r of batch.reads) this.answer(r.reply, this.readLocal(r.request));
    }
  }

  /**
   * Installs a received snapshot and applies the ready's committed entries, answering clients.
   * The shell may call this BEFORE persisting the ready: committed entries are already durable
   * on a majority (the leader counts itself only for entries on its own disk), so answering
   * them while this node's own write is in flight acknowledges nothing that could be lost.
   * Returns the appends applied, for the shell to materialise the guarded files.
   */
  applyReady(ready: NodeReady, now: number): { file: string; data: string }[] {
    const appends: { file: string; data: string }[] = [];
    const snapshot = ready.raft.snapshot;
    if (snapshot !== null && snapshot.index > this.state.appliedIndex) {
      this.state = decodeSnapshot(snapshot.data);
      this.savedSnapshotIndex = snapshot.index;
      this.reconcileWaiting();
    }
    for (const entry of ready.raft.committed) {
      if (entry.index <= this.state.appliedIndex) continue;
      if (entry.data === null) {
        this.state.appliedIndex = entry.index;
        continue;
      }
      const command = entry.data;
      const { answer, effects } = apply(this.state, entry.index, command);
      if (command.type === 'append' && answer?.ok === true) appends.push({ file: command.file, data: command.data });
      const origin = command.origin;
      if (origin !== undefined && origin.startsWith(this.prefix)) this.answerOrigin(origin, command, answer);
      for (const effect of effects) this.deliverEffect(effect);
    }
    this.answerReads(now);
    return appends;
  }

  /** After a snapshot replaced the state, the queued acquires this node was waiting on may
   *  have been granted or ended inside it: answer what can be answered. */
  private reconcileWaiting(): void {
    for (const [key, replies] of this.waiting) {
      const [client, lockName] = key.split('\u0000') as [string, string];
      const lock = this.state.locks.get(lockName);
      if (lock?.owner === client) {
        this.waiting.delete(key);
        for (const reply of replies) this.answer(reply, { ok: true, lock_name: lockName, owner: client, token: lock.token });
      } else if (lock?.waiters?.get(client) === undefined) {
        this.waiting.delete(key);
        for (const reply of replies) this.answer(reply, errorAnswer('unavailable', 'this node lost track of the wait; send the acquire again (with the same request_id)'));
      }
    }
  }

  /** The shell persisted `ready.raft`: apply what `applyReady` has not yet, let Raft advance,
   *  take a snapshot when due, and hand back the messages that had to wait for the disk. */
  afterPersist(ready: NodeReady, now: number): AfterPersist {
    const appends = this.applyReady(ready, now);
    this.raft.advance(ready.raft);
    let snapshotToSave: Snapshot | null = null;
    const raft = this.raft;
    // Memory holds only the entries someone may still need; the disk log keeps them until a
    // snapshot, saved every snapshotEveryEntries, covers them (issue 7: memory per lock).
    if (raft.appliedIndex === this.state.appliedIndex) {
      const compactable = raft.compactableIndex(Math.min(this.config.logEntriesKept ?? 2000, this.config.snapshotEveryEntries));
      if (compactable > raft.log.snapshotIndex) raft.compact(compactable);
      this.peerSnapshot.forgetBefore(raft.log.snapshotIndex);
      if (raft.appliedIndex - this.savedSnapshotIndex >= this.snapshotDueAfter() && raft.appliedIndex <= raft.log.stableIndex) {
        snapshotToSave = this.snapshotNow();
        this.savedSnapshotIndex = snapshotToSave.index;
      }
    }
    return { send: ready.raft.messages, snapshotToSave, appends };
  }

  private answerOrigin(origin: string, command: Command, answer: Answer | null): void {
    if (command.type === 'tick') {
      this.tickInFlightSince = null;
      return;
    }
    const p = this.pending.get(origin);
    if (p === undefined) return; // answered by an earlier copy of the same command
    this.pending.delete(origin);
    this.endShare(p);
    if (command.type === 'touch') {
      for (const r of p.reads ?? []) this.answer(r.reply, this.readLocal(r.request));
      for (const reply of p.touchReplies ?? []) {
        const client = reply.conn.clientId;
        const session = client === undefined ? undefined : this.state.sessions.get(client);
        if (session !== undefined && session.conn !== reply.conn.key) {
          this.answer(reply, errorAnswer('client_mismatch', `the session of ${client} belongs to another connection`));
        } else if (session === undefined) {
          this.answer(reply, errorAnswer('unavailable', 'the session ended; send the request again to open a new one'));
        } else {
          this.answer(reply, { ok: true, ttl_ms: session.ttlMs });
        }
      }
      return;
    }
    if (p.helloFor !== null) p.helloFor.helloPending = false;
    if (p.reply === null) return;
    if (answer === null) {
      if (command.type === 'acquire') this.wait(`${command.client}\u0000${command.lock}`, p.reply);
      return;
    }
    const extra = p.extra === null || !answer.ok ? null : { ...p.extra, leader: this.raft.leader };
    this.answer(p.reply, extra === null ? answer : { ...answer, ...extra });
  }

  private wait(key: string, reply: Reply): void {
    const list = this.waiting.get(key);
    if (list === undefined) this.waiting.set(key, [reply]);
    else list.push(reply);
  }

  private deliverEffect(effect: Effect): void {
    switch (effect.kind) {
      case 'granted':
      case 'wait_ended': {
        const key = `${effect.client}\u0000${effect.lock}`;
        const list = this.waiting.get(key);
        if (list === undefined) return;
        this.waiting.delete(key);
        const answer: Answer = effect.kind === 'granted'
          ? { ok: true, lock_name: effect.lock, owner: effect.client, token: effect.token }
          : effect.answer;
        for (const reply of list) this.answer(reply, answer);
        return;
      }
      case 'lost': {
        if (effect.conn === null) return;
        const cs = this.connsByKey.get(effect.conn);
        if (cs === undefined || cs.closed) return;
        cs.conn.push({ event: 'lost', lock_name: effect.lock, token: effect.token, reason: effect.reason });
        return;
      }
      case 'session_ended':
        return;
      default: {
        const never: never = effect;
        assert(false, `unhandled effect ${JSON.stringify(never)}`);
      }
    }
  }

  private get proposalsMax(): number {
    return this.config.proposalsPerConnectionMax ?? 32;
  }

  /** A command left the log's way (applied, or failed): its connection may propose again. */
  private endShare(p: PendingCommand): void {
    if (p.share === null) return;
    p.share.proposing--;
    if (p.share.parked.length > 0) this.unparkable.add(p.share);
  }

  /** Connections whose waiting requests may go now, in the order they were sent. */
  private unpark(now: number): void {
    if (this.unparkable.size === 0) return;
    const ready = [...this.unparkable];
    this.unparkable.clear();
    for (const cs of ready) {
      if (cs.closed) {
        cs.parked = [];
        continue;
      }
      while (cs.parked.length > 0 && cs.proposing < this.proposalsMax) this.request(cs, cs.parked.shift() as Request, now, true);
    }
  }

  private answer(reply: Reply, answer: Answer): void {
    if (reply.conn.closed) return;
    reply.conn.conn.answer(reply.id, answer);
  }

  private failPending(p: PendingCommand, code: ErrorCode, message: string): void {
    const answer = errorAnswer(code, message);
    if (p.helloFor !== null) p.helloFor.helloPending = false;
    if (p.reply !== null) this.answer(p.reply, answer);
    for (const reply of p.touchReplies ?? []) this.answer(reply, answer);
    for (const r of p.reads ?? []) this.answer(r.reply, answer);
  }

  /** Fails every request still waiting (shutdown). */
  failAll(code: ErrorCode, message: string): void {
    const answer = errorAnswer(code, message);
    for (const p of this.pending.values()) this.failPending(p, code, message);
    for (const cs of this.connsByKey.values()) {
      for (const request of cs.parked) this.answer({ conn: cs, id: request.id }, answer);
      cs.parked = [];
    }
    for (const list of this.waiting.values()) for (const reply of list) this.answer(reply, answer);
    for (const reply of this.touchReplies) this.answer(reply, answer);
    for (const r of this.readQueue) this.answer(r.reply, answer);
    for (const batch of this.readBatches.values()) for (const r of batch.reads) this.answer(r.reply, answer);
    this.pending.clear();
    this.waiting.clear();
    this.touchReplies = [];
    this.readQueue = [];
    this.readBatches.clear();
    this.queued = [];
  }
}

export type { ConnState };

function opt<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

function sameLimits(a: StateLimits, b: StateLimits): boolean {
  return (Object.keys(a) as Array<keyof StateLimits>).every((key) => a[key] === b[key]);
}

