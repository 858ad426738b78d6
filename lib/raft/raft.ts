// The consensus core: Raft (Ongaro & Ousterhout, "In Search of an Understandable Consensus
// Algorithm", 2014) with pre-vote and check-quorum (Ongaro's thesis §9.6, §6.2) and read-index
// (thesis §6.4). It is deterministic: time comes in as `now` (ms), randomness from an injected
// seeded Prng, and all output is collected for `ready()`:
//   hardState + entries (+ a snapshot) to persist, then messages to send, then entries to apply.
// The caller persists a Ready before sending its `messages` and applying its `committed`
// entries, then calls `advance()`. `sendNow` messages (a leader's appends) may go out before
// the leader's own fsync: the leader counts itself toward a majority only for durable entries.
import { assert } from '../core/assert';
import type { Prng } from '../core/prng';
import type {
  AppendRequest, AppendResponse, Entry, NodeId, RaftMessage, Snapshot, SnapshotRequest, VoteRequest, VoteResponse,
} from './messages';
import { RaftLog } from './log';
import { committedIndex, majority, voteResult } from './quorum';

export type Role = 'follower' | 'precandidate' | 'candidate' | 'leader';

export interface RaftConfig {
  id: NodeId;
  /** Every voter, this node included. */
  members: NodeId[];
  electionTimeoutMs: number;
  heartbeatMs: number;
  /** Most entries in one AppendEntries. */
  entriesPerAppendMax: number;
  rng: Prng;
  /** Deliberately broken rules, for showing that the simulation catches them. Never set
   *  outside tests. */
  broken?: { commitOlderTermByCount?: boolean; voteForStaleLog?: boolean };
  /** Makes a snapshot of the state machine as applied now, for a follower that needs entries
   *  the log no longer holds. With it, the core keeps no snapshot data of its own (a copy of
   *  the whole state, held only for the rare lagging follower); without it, the last snapshot
   *  given to compact() or installed is sent. */
  snapshotNow?: () => Snapshot;
}

export interface HardState {
  term: number;
  votedFor: NodeId | null;
}

export interface Ready<P> {
  /** Changed term/vote, to be durable before `messages` go out. */
  hardState: HardState | null;
  /** A snapshot received from the leader: persist it, then restore the state machine from it. */
  snapshot: Snapshot | null;
  /** Disk must drop entries >= this before appending `entries`. */
  truncateFrom: number | null;
  entries: Entry<P>[];
  /** May be sent at once (before persisting). */
  sendNow: RaftMessage<P>[];
  /** Sent after persisting. */
  messages: RaftMessage<P>[];
  /** Committed entries to apply, in order, after persisting. */
  committed: Entry<P>[];
  /** Read-index rounds confirmed by a majority: `ctx` may be answered once `index` is applied. */
  reads: { ctx: string; index: number }[];
}

interface Progress {
  next: number;
  match: number;
  /** Probe: one append in flight until the follower answers (§5.3 backing up); replicate:
   *  appends are pipelined. */
  probing: boolean;
  paused: boolean;
  /** The commit index this follower was last told. */
  sentCommit: number;
  /** Answered since the last check-quorum round. */
  active: boolean;
}

interface PendingRead {
  ctx: string;
  index: number;
  seq: number;
  acks: Set<NodeId>;
}

export class Raft<P> {
  readonly id: NodeId;
  readonly log = new RaftLog<P>();
  term = 0;
  votedFor: NodeId | null = null;
  role: Role = 'follower';
  leader: NodeId | null = null;
  commitIndex = 0;
  /** Highest index handed out in `committed` (applied by the caller). */
  appliedIndex = 0;

  private readonly config: RaftConfig;
  private readonly peers: NodeId[];
  private electionDeadline = 0;
  private heartbeatDue = 0;
  private quorumCheckDue = 0;
  /** Last time a leader of the current term was heard from (pre-vote stickiness). */
  private leaderContactAt = -Infinity;
  private votes = new Map<NodeId, boolean>();
  private progress = new Map<NodeId, Progress>();
  private readSeq = 0;
  private pendingReads: PendingRead[] = [];
  /** Reads waiting until this leader has committed an entry of its own term (thesis §6.4). */
  private deferredReads: string[] = [];
  private snapshot: Snapshot | null = null;

  // Output collected until ready().
  private hardStateDirty = false;
  private truncateFrom: number | null = null;
  private snapshotToPersist: Snapshot | null = null;
  private outNow: RaftMessage<P>[] = [];
  private outAfter: RaftMessage<P>[] = [];
  private reads: { ctx: string; index: number }[] = [];

  constructor(config: RaftConfig) {
    assert(config.members.includes(config.id), 'members include this node');
    assert(config.electionTimeoutMs > config.heartbeatMs, 'election timeout must be greater than heartbeat');
    this.config = config;
    this.id = config.id;
    this.peers = config.members.filter((m) => m !== config.id);
  }

  /** Restores what a restart found on disk; call before the first tick. */
  load(state: { hardState: HardState; snapshot: Snapshot | null; entries: Entry<P>[] }, now: number): void {
    this.term = state.hardState.term;
    this.votedFor = state.hardState.votedFor;
    if (state.snapshot !== null) {
      this.keepSnapshot(state.snapshot);
      this.log.restore(state.snapshot.index, state.snapshot.term);
      this.commitIndex = state.snapshot.index;
      this.appliedIndex = state.snapshot.index;
    }
    this.log.load(state.entries);
    this.log.stableIndex = this.log.lastIndex;
    this.log.persistingIndex = this.log.lastIndex;
    this.resetElectionTimer(now);
    // Alone, there is nobody to wait for: campaign at the first tick.
    if (this.peers.length === 0) this.electionDeadline = now;
  }

  get isLeader(): boolean {
    return this.role === 'leader';
  }

  get members(): readonly NodeId[] {
    return this.config.members;
  }

  // ---- inputs ----

  tick(now: number): void {
    if (this.role === 'leader') {
      if (now >= this.quorumCheckDue) this.checkQuorum(now);
      if (this.role === 'leader' && now >= this.heartbeatDue) {
        this.heartbeatDue = now + this.config.heartbeatMs;
        this.broadcastAppend(true);
      }
    } else if (now >= this.electionDeadline) {
      this.campaign(true, now);
    }
  }

  /** Appends entries as leader; returns the index of the last one, or null if not leader. */
  propose(data: P[]): number | null {
    if (this.role !== 'leader') return null;
    for (const item of data) this.log.append({ index: this.log.lastIndex + 1, term: this.term, data: item });
    this.broadcastAppend(false);
    return this.log.lastIndex;
  }

  /** Starts a read-index round (thesis §6.4); the read shows up in `ready().reads` once
   *  leadership is confirmed. Returns false if this node is not the leader. */
  readIndex(ctx: string): boolean {
    if (this.role !== 'leader') return false;
    if (this.log.termAt(this.commitIndex) !== this.term) {
      this.deferredReads.push(ctx);
      return true;
    }
    if (this.peers.length === 0) {
      this.reads.push({ ctx, index: this.commitIndex });
      return true;
    }
    const seq = ++this.readSeq;
    this.pendingReads.push({ ctx, index: this.commitIndex, seq, acks: new Set([this.id]) });
    this.broadcastAppend(true);
    return true;
  }

  step(message: RaftMessage<P>, now: number): void {
    if (message.to !== this.id) return;
    if (message.term > this.term) {
      if (message.type === 'vote' && message.pre) {
        // A pre-vote never changes our term (thesis §9.6).
      } else if (message.type === 'vote_resp' && message.pre && message.granted) {
        // The granter answered with the term we would campaign at.
      } else if (message.type === 'vote' && this.inLease(now)) {
        // Check-quorum stickiness: a leader was heard from within the election timeout, so this
        // candidate is probably partitioned away; do not let it disrupt the cluster.
        this.respond({ type: 'vote_resp', term: this.term, from: this.id, to: message.from, granted: false, pre: false });
        return;
      } else {
        const leader = message.type === 'append' || message.type === 'snapshot' ? message.from : null;
        this.becomeFollower(message.term, leader, now);
      }
    } else if (message.term < this.term) {
      if (message.type === 'append' || message.type === 'snapshot') {
        // Tell a stale leader about the newer term so it steps down.
        this.respond({ type: 'append_resp', term: this.term, from: this.id, to: message.from, success: false, match: 0, hint: 0, read: 0 });
      } else if (message.type === 'vote' && message.pre) {
        this.respond({ type: 'vote_resp', term: this.term, from: this.id, to: message.from, granted: false, pre: true });
      }
      return;
    }
    switch (message.type) {
      case 'vote': this.onVote(message, now); return;
      case 'vote_resp': this.onVoteResponse(message, now); return;
      case 'append': this.onAppend(message, now); return;
      case 'append_resp': this.onAppendResponse(message); return;
      case 'snapshot': this.onSnapshot(message, now); return;
      default: {
        const never: never = message;
        assert(false, `unknown message ${JSON.stringify(never)}`);
      }
    }
  }

  /** Forgets the log through `index` (applied and durable). `data` is the state machine's
   *  snapshot there, needed unless config.snapshotNow makes one when a follower needs it. */
  compact(index: number, data: string | null = null): void {
    assert(index <= this.appliedIndex, `compact at ${index} past applied ${this.appliedIndex}`);
    assert(index <= this.log.stableIndex, 'compact only durable entries');
    const term = this.log.termAt(index);
    assert(term !== undefined, `compact at ${index}: no such entry`);
    assert(data !== null || this.config.snapshotNow !== undefined, 'compact without a snapshot needs config.snapshotNow');
    if (data !== null) this.keepSnapshot({ index, term, data });
    this.log.compact(index);
  }

  /**
   * How far the log may be compacted now: entries applied and durable here, except (on a
   * leader) those a follower may still need, of which at most `keep` are kept: a follower
   * further behind gets a snapshot. A follower keeps the last `keep` entries, for when it
   * leads. Entries only leave memory: the disk log keeps them until a snapshot is on disk.
   */
  compactableIndex(keep: number): number {
    const done = Math.min(this.appliedIndex, this.log.stableIndex);
    const floor = Math.max(this.log.snapshotIndex, done - keep);
    if (this.role !== 'leader') return floor;
    let slowest = done;
    for (const progress of this.progress.values()) slowest = Math.min(slowest, progress.match);
    return Math.max(floor, slowest);
  }

  private keepSnapshot(snapshot: Snapshot): void {
    if (this.config.snapshotNow === undefined) this.snapshot = snapshot;
  }

  // ---- output ----

  hasReady(): boolean {
    return this.hardStateDirty || this.snapshotToPersist !== null || this.truncateFrom !== null
      || Math.max(this.log.stableIndex, this.log.persistingIndex) < this.log.lastIndex || this.outNow.length > 0 || this.outAfter.length > 0
      || this.appliedIndex < this.commitIndex || this.reads.length > 0 || this.commitToTell();
  }

  /** A follower could adopt a higher commit index than it was told (see tellCommit). */
  private commitToTell(): boolean {
    if (this.role !== 'leader') return false;
    for (const progress of this.progress.values()) if (this.canTellCommit(progress)) return true;
    return false;
  }

  /** The follower could adopt a higher commit index than it was told, and an empty append
   *  anchored at its match can carry it (not when it needs a snapshot first). */
  private canTellCommit(progress: Progress): boolean {
    return Math.min(this.commitIndex, progress.match) > progress.sentCommit && progress.match >= this.log.snapshotIndex;
  }

  ready(): Ready<P> {
    if (this.role === 'leader') this.tellCommit();
    const ready: Ready<P> = {
      hardState: this.hardStateDirty ? { term: this.term, votedFor: this.votedFor } : null,
      snapshot: this.snapshotToPersist,
      truncateFrom: this.truncateFrom,
      entries: this.log.unstable(),
      sendNow: this.outNow,
      messages: this.outAfter,
      committed: this.appliedIndex < this.commitIndex ? this.log.slice(Math.max(this.appliedIndex, this.log.snapshotIndex) + 1, this.commitIndex) : [],
      reads: this.reads,
    };
    // Readies may overlap: the caller applies `committed` at once and may take the next ready
    // while this one's write is in flight, so neither is handed out twice.
    const last = ready.entries[ready.entries.length - 1];
    if (last !== undefined) this.log.markPersisting(last.index);
    if (this.commitIndex > this.appliedIndex) this.appliedIndex = this.commitIndex;
    this.hardStateDirty = false;
    this.snapshotToPersist = null;
    this.truncateFrom = null;
    this.outNow = [];
    this.outAfter = [];
    this.reads = [];
    return ready;
  }

  /** The caller persisted `ready` (readies are persisted in the order they were taken). */
  advance(ready: Ready<P>): void {
    // Entries truncated away meanwhile are not durable: only the prefix that still matches.
    this.log.markStable(ready.entries);
    if (this.role === 'leader') this.maybeCommit();
  }

  // ---- roles ----

  private becomeFollower(term: number, leader: NodeId | null, now: number): void {
    if (term !== this.term) {
      this.term = term;
      this.votedFor = null;
      this.hardStateDirty = true;
    }
    this.role = 'follower';
    this.leader = leader;
    if (leader !== null) this.leaderContactAt = now;
    this.abortReads();
    this.resetElectionTimer(now);
  }

  private campaign(pre: boolean, now: number): void {
    if (pre) {
      this.role = 'precandidate';
    } else {
      this.role = 'candidate';
      this.term += 1;
      this.votedFor = this.id;
      this.hardStateDirty = true;
    }
    this.leader = null;
    this.abortReads();
    this.votes = new Map([[this.id, true]]);
    this.resetElectionTimer(now);
    if (this.peers.length === 0) {
      if (pre) this.campaign(false, now);
      else this.becomeLeader(now);
      return;
    }
    const term = pre ? this.term + 1 : this.term;
    for (const peer of this.peers) {
      this.outAfter.push({ type: 'vote', term, from: this.id, to: peer, lastIndex: this.log.lastIndex, lastTerm: this.log.lastTerm, pre });
    }
  }

  private becomeLeader(now: number): void {
    assert(this.role === 'candidate', `invalid transition [${this.role} -> leader]`);
    this.role = 'leader';
    this.leader = this.id;
    this.progress = new Map();
    for (const peer of this.peers) {
      // Not active until it answers: a leader cut off right after its election steps down after
      // one check-quorum round, not two.
      this.progress.set(peer, { next: this.log.lastIndex + 1, match: 0, probing: true, paused: false, active: false, sentCommit: 0 });
    }
    this.heartbeatDue = now + this.config.heartbeatMs;
    this.quorumCheckDue = now + this.config.electionTimeoutMs;
    // The no-op that lets this leader commit, and so learn the commit index, in its term (§5.4.2, §8).
    this.log.append({ index: this.log.lastIndex + 1, term: this.term, data: null });
    this.broadcastAppend(false);
  }

  /** A leader is known to be alive (we are it, or heard from it within the election timeout). */
  private inLease(now: number): boolean {
    if (this.role === 'leader') return true;
    return this.leader !== null && now - this.leaderContactAt < this.config.electionTimeoutMs;
  }

  private resetElectionTimer(now: number): void {
    const base = this.config.electionTimeoutMs;
    this.electionDeadline = now + base + this.config.rng.int(0, base - 1);
  }

  private checkQuorum(now: number): void {
    this.quorumCheckDue = now + this.config.electionTimeoutMs;
    let active = 1;
    for (const progress of this.progress.values()) {
      if (progress.active) active++;
      progress.active = false;
    }
    if (active < majority(this.config.members.length)) {
      // Cut off from a majority: stop acting as leader so clients hear `unavailable` instead of
      // waiting on a leader that can commit nothing (thesis §6.2).
      this.becomeFollower(this.term, null, now);
    }
  }

  private abortReads(): void {
    this.pendingReads = [];
    this.deferredReads = [];
  }

  // ---- votes ----

  private onVote(message: VoteRequest, now: number): void {
    const upToDate = message.lastTerm > this.log.lastTerm
      || (message.lastTerm === this.log.lastTerm && message.lastIndex >= this.log.lastIndex);
    let canVote: boolean;
    if (message.pre) {
      canVote = message.term > this.term && !this.inLease(now);
    } else {
      canVote = this.votedFor === message.from || (this.votedFor === null && this.leader === null);
    }
    const granted = canVote && (upToDate || this.config.broken?.voteForStaleLog === true);
    if (granted && !message.pre) {
      this.votedFor = message.from;
      this.hardStateDirty = true;
      this.resetElectionTimer(now);
    }
    this.respond({ type: 'vote_resp', term: granted && message.pre ? message.term : this.term, from: this.id, to: message.from, granted, pre: message.pre });
  }

  private onVoteResponse(message: VoteResponse, now: number): void {
    const campaigning = message.pre ? this.role === 'precandidate' : this.role === 'candidate';
    if (!campaigning) return;
    this.votes.set(message.from, message.granted);
    let granted = 0;
    let rejected = 0;
    for (const vote of this.votes.values()) vote ? granted++ : rejected++;
    const result = voteResult(this.config.members.length, granted, rejected);
    if (result === 'won') {
      if (message.pre) this.campaign(false, now);
      else this.becomeLeader(now);
    } else if (result === 'lost') {
      this.becomeFollower(this.term, null, now);
    }
  }

  // ---- replication: follower side ----

  private onAppend(message: AppendRequest<P>, now: number): void {
    this.role = 'follower';
    this.leader = message.from;
    this.leaderContactAt = now;
    this.resetElectionTimer(now);
    const reply = (success: boolean, match: number, hint: number): void => {
      this.respond({ type: 'append_resp', term: this.term, from: this.id, to: message.from, success, match, hint, read: message.read });
    };
    if (message.prevIndex < this.commitIndex) {
      // Already committed here: the entries up to commitIndex match (Log Matching). Skip ahead.
      const skip = this.commitIndex - message.prevIndex;
      if (skip >= message.entries.length) {
        reply(true, this.commitIndex, 0);
        return;
      }
      this.acceptEntries(this.commitIndex, message.entries.slice(skip), message.commit, reply);
      return;
    }
    const prevTerm = this.log.termAt(message.prevIndex);
    if (prevTerm !== message.prevTerm) {
      let hint: number;
      if (message.prevIndex > this.log.lastIndex) hint = this.log.lastIndex;
      else {
        // Back up past the whole conflicting term at once (§5.3, the optimisation it sketches).
        hint = message.prevIndex - 1;
        while (hint > this.commitIndex && this.log.termAt(hint) === prevTerm) hint--;
      }
      reply(false, 0, hint);
      return;
    }
    this.acceptEntries(message.prevIndex, message.entries, message.commit, reply);
  }

  private acceptEntries(prevIndex: number, entries: Entry<P>[], leaderCommit: number, reply: (s: boolean, m: number, h: number) => void): void {
    for (const entry of entries) {
      const existing = this.log.termAt(entry.index);
      if (existing === entry.term) continue;
      if (existing !== undefined) {
        assert(entry.index > this.commitIndex, `conflict at committed index ${entry.index}`);
        this.log.truncateFrom(entry.index);
        this.truncateFrom = this.truncateFrom === null ? entry.index : Math.min(this.truncateFrom, entry.index);
      }
      this.log.append(entry);
    }
    const lastNew = prevIndex + entries.length;
    if (leaderCommit > this.commitIndex) this.commitIndex = Math.max(this.commitIndex, Math.min(leaderCommit, lastNew));
    reply(true, lastNew, 0);
  }

  private onSnapshot(message: SnapshotRequest, now: number): void {
    this.role = 'follower';
    this.leader = message.from;
    this.leaderContactAt = now;
    this.resetElectionTimer(now);
    const snap = message.snapshot;
    if (snap.index <= this.commitIndex) {
      this.respond({ type: 'append_resp', term: this.term, from: this.id, to: message.from, success: true, match: this.commitIndex, hint: 0, read: message.read });
      return;
    }
    if (this.log.termAt(snap.index) === snap.term) {
      // We already have the entries it covers: keep the tail after it.
      this.commitIndex = snap.index;
    } else {
      // Raft §7: the whole log is discarded. The caller persists the snapshot, then drops every
      // entry on disk after it (truncateFrom), so no stale tail survives a restart.
      this.log.restore(snap.index, snap.term);
      this.truncateFrom = snap.index + 1;
      this.commitIndex = snap.index;
      this.keepSnapshot(snap);
      this.snapshotToPersist = snap;
      // The state machine is replaced by the snapshot when this ready is taken.
      this.appliedIndex = snap.index;
    }
    this.respond({ type: 'append_resp', term: this.term, from: this.id, to: message.from, success: true, match: snap.index, hint: 0, read: message.read });
  }

  // ---- replication: leader side ----

  private onAppendResponse(message: AppendResponse): void {
    if (this.role !== 'leader') return;
    const progress = this.progress.get(message.from);
    if (progress === undefined) return;
    progress.active = true;
    progress.paused = false;
    if (message.read > 0) this.ackReads(message.from, message.read);
    if (message.success) {
      if (message.match > progress.match) progress.match = message.match;
      if (progress.next <= progress.match) progress.next = progress.match + 1;
      progress.probing = false;
      this.maybeCommit();
    } else {
      // Back up: never below what is known to match.
      progress.next = Math.max(progress.match + 1, Math.min(progress.next - 1, message.hint + 1));
      progress.probing = true;
    }
    if (progress.next <= this.log.lastIndex) this.sendAppend(message.from, progress, false);
  }

  private maybeCommit(): void {
    const matches = [this.log.stableIndex];
    for (const progress of this.progress.values()) matches.push(progress.match);
    const index = committedIndex(matches);
    // Only entries of the current term are committed by counting (§5.4.2, Figure 8).
    const countable = this.log.termAt(index) === this.term || this.config.broken?.commitOlderTermByCount === true;
    if (index > this.commitIndex && countable) {
      this.commitIndex = index;
      if (this.deferredReads.length > 0) {
        const deferred = this.deferredReads;
        this.deferredReads = [];
        for (const ctx of deferred) this.readIndex(ctx);
      }
    }
  }

  /** Followers learn a new commit index promptly: once per ready(), each follower that could
   *  adopt a higher commit index than it was last told gets it, on an append already on its way
   *  or on an empty one anchored at what it is known to hold. A follower adopts
   *  min(commit, last entry of the message), so that is what "told" means here. */
  private tellCommit(): void {
    for (const [peer, progress] of this.progress) {
      if (!this.canTellCommit(progress) && !this.hasAppendTo(peer)) continue;
      let told = false;
      for (const m of this.outNow) {
        if (m.to === peer && m.type === 'append') {
          m.commit = this.commitIndex;
          progress.sentCommit = Math.max(progress.sentCommit, Math.min(this.commitIndex, m.prevIndex + m.entries.length));
          told = true;
        }
      }
      if (told || !this.canTellCommit(progress)) continue;
      // Anchored at what the follower is known to hold, so it is never refused, even while
      // pipelined appends are still on their way.
      const prevIndex = progress.match;
      this.outNow.push({
        type: 'append', term: this.term, from: this.id, to: peer, prevIndex, prevTerm: this.log.termAt(prevIndex) as number,
        entries: [], commit: this.commitIndex, read: this.readSeq,
      });
      progress.sentCommit = Math.min(this.commitIndex, prevIndex);
    }
  }

  private hasAppendTo(peer: NodeId): boolean {
    for (const m of this.outNow) if (m.to === peer && m.type === 'append') return true;
    return false;
  }

  private broadcastAppend(heartbeat: boolean): void {
    for (const [peer, progress] of this.progress) {
      if (heartbeat) progress.paused = false;
      this.sendAppend(peer, progress, heartbeat);
    }
  }

  private sendAppend(peer: NodeId, progress: Progress, heartbeat: boolean): void {
    if (progress.paused && !heartbeat) return;
    const read = this.readSeq;
    if (progress.next <= this.log.snapshotIndex) {
      const snapshot = this.config.snapshotNow?.() ?? this.snapshot;
      assert(snapshot !== null && snapshot.index >= this.log.snapshotIndex && snapshot.index <= this.commitIndex, 'a compacted log has a snapshot');
      this.outNow.push({ type: 'snapshot', term: this.term, from: this.id, to: peer, snapshot, read });
      progress.paused = true;
      return;
    }
    const prevIndex = progress.next - 1;
    const prevTerm = this.log.termAt(prevIndex) as number;
    const entries = progress.probing && !heartbeat
      ? this.log.slice(progress.next, this.log.lastIndex, 1)
      : this.log.slice(progress.next, this.log.lastIndex, this.config.entriesPerAppendMax);
    if (entries.length === 0 && !heartbeat) return;
    this.outNow.push({ type: 'append', term: this.term, from: this.id, to: peer, prevIndex, prevTerm, entries, commit: this.commitIndex, read });
    progress.sentCommit = Math.max(progress.sentCommit, Math.min(this.commitIndex, prevIndex + entries.length));
    if (progress.probing) progress.paused = true;
    else if (entries.length > 0) progress.next = (entries[entries.length - 1] as Entry<P>).index + 1;
  }

  /** A response echoing round `seq` confirms every round up to it (thesis §6.4). */
  private ackReads(from: NodeId, seq: number): void {
    for (const read of this.pendingReads) {
      if (read.seq > seq) break;
      read.acks.add(from);
    }
    const need = majority(this.config.members.length);
    while (this.pendingReads.length > 0 && (this.pendingReads[0] as PendingRead).acks.size >= need) {
      const head = this.pendingReads.shift() as PendingRead;
      this.reads.push({ ctx: head.ctx, index: head.index });
    }
  }

  private respond(message: RaftMessage<P>): void {
    this.outAfter.push(message);
  }
}

export type { Entry, NodeId, RaftMessage, Snapshot };
