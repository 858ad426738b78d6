// A tiny in-memory cluster driver for the pure Raft core (STYLE §1.9, §6.11, §6.13): every node
// is a Raft<string> plus a fake disk that holds exactly what a careful caller would persist from
// ready(), a shared network queue, and a per-node applied list. Nothing here uses real time or
// Math.random(): time is `h.now`, randomness is a Prng per node derived from the seed.
//
// The harness also checks two of the paper's safety properties on every step (Figure 3):
//   Election Safety: at most one leader per term.
//   State Machine Safety: no two nodes apply different entries at the same index.
// A violation throws, so every story test doubles as a safety check.
import { assert } from '../../lib/core/assert';
import { Prng } from '../../lib/core/prng';
import type { Entry, RaftMessage, Snapshot } from '../../lib/raft/messages';
import { Raft, type HardState, type Ready } from '../../lib/raft/raft';

export type Message = RaftMessage<string>;

/** What a node has on stable storage, written only from ready() (and compact()). */
export interface Disk {
  hardState: HardState;
  snapshot: Snapshot | null;
  entries: Entry<string>[];
}

export interface HarnessOptions {
  seed: number;
  electionTimeoutMs?: number;
  heartbeatMs?: number;
  entriesPerAppendMax?: number;
}

export interface AppliedEntry {
  index: number;
  term: number;
  data: string | null;
}

interface Node {
  raft: Raft<string> | null;
  disk: Disk;
  /** The state machine: every committed entry applied, in order (no-ops included). */
  applied: AppliedEntry[];
  /** Read-index rounds confirmed (ready().reads), in order. */
  reads: { ctx: string; index: number }[];
  /** Every ready() this node produced, for tests that look at one field. */
  readies: Ready<string>[];
  incarnation: number;
}

/** One line per message, like etcd's `1->2 MsgApp Term:1 Log:1/2 Commit:2`. */
export function describe(m: Message): string {
  const head = `${m.from}->${m.to}`;
  switch (m.type) {
    case 'vote':
      return `${head} ${m.pre ? 'MsgPreVote' : 'MsgVote'} Term:${m.term} Log:${m.lastTerm}/${m.lastIndex}`;
    case 'vote_resp':
      return `${head} ${m.pre ? 'MsgPreVoteResp' : 'MsgVoteResp'} Term:${m.term}${m.granted ? '' : ' Rejected'}`;
    case 'append': {
      const entries = m.entries.length === 0 ? ''
        : ` Entries:[${m.entries.map((e) => `${e.term}/${e.index} ${e.data === null ? 'noop' : JSON.stringify(e.data)}`).join(', ')}]`;
      return `${head} MsgApp Term:${m.term} Log:${m.prevTerm}/${m.prevIndex} Commit:${m.commit}${entries}${m.read > 0 ? ` Read:${m.read}` : ''}`;
    }
    case 'append_resp':
      return `${head} MsgAppResp Term:${m.term} ${m.success ? `Match:${m.match}` : `Rejected Hint:${m.hint}`}${m.read > 0 ? ` Read:${m.read}` : ''}`;
    case 'snapshot':
      return `${head} MsgSnap Term:${m.term} Snapshot:${m.snapshot.term}/${m.snapshot.index}${m.read > 0 ? ` Read:${m.read}` : ''}`;
    default: {
      const never: never = m;
      throw new Error(`unknown message ${JSON.stringify(never)}`);
    }
  }
}

/** The same printer under a name that does not shadow mocha's `describe` in test files. */
export const describeMessage = describe;

export class Harness {
  readonly ids: string[];
  now = 0;
  /** In-flight messages, in send order. */
  queue: Message[] = [];
  /** Every message sent (and every one the network dropped, prefixed `DROP`), in order. */
  readonly transcript: string[] = [];
  /** term -> the one node that led it. */
  readonly leaders = new Map<number, string>();

  readonly electionTimeoutMs: number;
  readonly heartbeatMs: number;
  private readonly entriesPerAppendMax: number;
  private readonly seed: number;
  private readonly nodes = new Map<string, Node>();
  private readonly cut = new Set<string>();
  /** index -> the entry some node applied there, for State Machine Safety. */
  private readonly appliedAt = new Map<number, AppliedEntry>();

  constructor(ids: string[], options: HarnessOptions) {
    this.ids = [...ids];
    this.seed = options.seed;
    this.electionTimeoutMs = options.electionTimeoutMs ?? 1000;
    this.heartbeatMs = options.heartbeatMs ?? 100;
    this.entriesPerAppendMax = options.entriesPerAppendMax ?? 64;
    for (const id of ids) {
      const node: Node = {
        raft: null, disk: { hardState: { term: 0, votedFor: null }, snapshot: null, entries: [] },
        applied: [], reads: [], readies: [], incarnation: 0,
      };
      this.nodes.set(id, node);
      this.boot(id, node);
    }
  }

  // ---- inspection ----

  raft(id: string): Raft<string> {
    const raft = this.node(id).raft;
    assert(raft !== null, `node ${id} is crashed`);
    return raft;
  }

  isUp(id: string): boolean {
    return this.node(id).raft !== null;
  }

  disk(id: string): Disk {
    return this.node(id).disk;
  }

  applied(id: string): AppliedEntry[] {
    return this.node(id).applied;
  }

  /** The proposals (non-no-op payloads) a node applied, in order. */
  appliedData(id: string): string[] {
    return this.node(id).applied.filter((e) => e.data !== null).map((e) => e.data as string);
  }

  reads(id: string): { ctx: string; index: number }[] {
    return this.node(id).reads;
  }

  readies(id: string): Ready<string>[] {
    return this.node(id).readies;
  }

  /** The terms of a node's in-memory log, from firstIndex to lastIndex. */
  logTerms(id: string): number[] {
    const log = this.raft(id).log;
    const terms: number[] = [];
    for (let i = log.firstIndex; i <= log.lastIndex; i++) terms.push(log.termAt(i) as number);
    return terms;
  }

  /** The live leaders (normally zero or one). */
  currentLeaders(): string[] {
    return this.ids.filter((id) => this.isUp(id) && this.raft(id).isLeader);
  }

  // ---- inputs ----

  /** Moves the clock without ticking anyone (messages stepped later see this `now`). */
  setNow(now: number): void {
    assert(now >= this.now, `time goes forward: ${now} < ${this.now}`);
    this.now = now;
  }

  tick(id: string, now: number): void {
    this.setNow(now);
    this.raft(id).tick(this.now);
    this.checkLeaders();
  }

  /** Ticks every live node at `now`. */
  tickAll(now: number): void {
    this.setNow(now);
    for (const id of this.liveIds()) this.raft(id).tick(this.now);
    this.checkLeaders();
  }

  /** Ticks `id` exactly at its election deadline so it starts a (pre-)campaign. The deadline is
   *  private to the core; a test harness may look. */
  campaign(id: string): void {
    const deadline = (this.raft(id) as unknown as { electionDeadline: number }).electionDeadline;
    assert(typeof deadline === 'number', 'Raft keeps its election deadline in electionDeadline');
    this.tick(id, Math.max(this.now, deadline));
  }

  /** Campaigns and stabilizes until `id` leads, at most `attempts` times (a pre-vote that meets
   *  a higher term adopts it and has to try again). */
  elect(id: string, options: { attempts?: number; drop?: (m: Message) => boolean } = {}): void {
    const attempts = options.attempts ?? 4;
    for (let i = 0; i < attempts && !this.raft(id).isLeader; i++) {
      this.campaign(id);
      this.stabilize({ drop: options.drop });
    }
    assert(this.raft(id).isLeader, `node ${id} did not become leader`);
  }

  propose(id: string, data: string): number | null {
    return this.raft(id).propose([data]);
  }

  readIndex(id: string, ctx: string): boolean {
    return this.raft(id).readIndex(ctx);
  }

  /** Steps a message straight into its recipient, bypassing the network. */
  inject(message: Message): void {
    this.raft(message.to).step(message, this.now);
    this.checkLeaders();
  }

  /** The state machine of `id` saved a snapshot through `index`: write it to disk, then let the
   *  core forget the log before it. */
  compact(id: string, index: number): void {
    const node = this.node(id);
    const raft = this.raft(id);
    const data = JSON.stringify(node.applied.filter((e) => e.index <= index));
    const term = raft.log.termAt(index);
    assert(term !== undefined, `compact ${id} at ${index}: no such entry`);
    node.disk.snapshot = { index, term, data };
    raft.compact(index, data);
  }

  // ---- faults ----

  /** Cuts the link between a and b in both directions. */
  partition(a: string, b: string): void {
    this.cut.add(linkKey(a, b));
  }

  /** Cuts `id` off from every other node. */
  isolate(id: string): void {
    for (const other of this.ids) if (other !== id) this.partition(id, other);
  }

  heal(a?: string, b?: string): void {
    if (a === undefined) this.cut.clear();
    else if (b === undefined) for (const other of this.ids) this.cut.delete(linkKey(a, other));
    else this.cut.delete(linkKey(a, b));
  }

  isCut(a: string, b: string): boolean {
    return this.cut.has(linkKey(a, b));
  }

  /** Loses the node's memory; only its disk survives. Messages already in flight stay in flight. */
  crash(id: string): void {
    const node = this.node(id);
    assert(node.raft !== null, `node ${id} is already crashed`);
    node.raft = null;
  }

  /** A new Raft loaded from the node's disk via load(); the state machine restarts from the
   *  disk's snapshot and re-applies committed entries as the core hands them out again. */
  restart(id: string): void {
    const node = this.node(id);
    assert(node.raft === null, `node ${id} is running`);
    node.incarnation++;
    this.boot(id, node);
  }

  // ---- the network and the Ready loop ----

  /** One Ready cycle for `id`, as the node loop does it: persist, send, apply, advance. */
  processReady(id: string): Ready<string> | null {
    const ready = this.takeReady(id);
    if (ready !== null) this.completeReady(id, ready);
    return ready;
  }

  /** The first half of a Ready cycle: ready(), and `sendNow` onto the network, which the
   *  contract allows before anything is durable. */
  takeReady(id: string): Ready<string> | null {
    const node = this.node(id);
    const raft = this.raft(id);
    if (!raft.hasReady()) return null;
    const ready = raft.ready();
    node.readies.push(ready);
    const appliedLast = node.applied[node.applied.length - 1]?.index ?? 0;
    assert(ready.truncateFrom === null || ready.truncateFrom > appliedLast,
      `node ${id} truncates from ${String(ready.truncateFrom)} but applied ${appliedLast}`);
    for (const m of ready.sendNow) this.send(m);
    return ready;
  }

  /** The second half: persist, then send `messages`, apply `committed`, collect `reads`, and
   *  advance(). */
  completeReady(id: string, ready: Ready<string>): void {
    const node = this.node(id);
    const raft = this.raft(id);
    this.persist(node, ready);
    for (const m of ready.messages) this.send(m);
    if (ready.snapshot !== null) {
      node.applied = (JSON.parse(ready.snapshot.data) as AppliedEntry[]);
    }
    for (const entry of ready.committed) {
      const last = node.applied[node.applied.length - 1];
      const expected = last === undefined ? (ready.snapshot?.index ?? 0) + 1 : last.index + 1;
      assert(entry.index === expected, `node ${id} applies ${entry.index}, expected ${expected}`);
      this.checkApplied(id, entry);
      node.applied.push({ index: entry.index, term: entry.term, data: entry.data });
    }
    node.reads.push(...ready.reads);
    raft.advance(ready);
    this.checkLeaders();
  }

  /** Processes every live node's Ready once; true if any had one. */
  processReadies(): boolean {
    let any = false;
    for (const id of this.liveIds()) if (this.processReady(id) !== null) any = true;
    return any;
  }

  /** Delivers the queued messages that match `filter` (all by default), in order, at `now`.
   *  Others stay queued. Messages across a cut link or to a crashed node are dropped. Returns
   *  the messages actually stepped. */
  deliver(filter: (m: Message) => boolean = () => true): Message[] {
    const batch = this.queue.filter(filter);
    this.queue = this.queue.filter((m) => !filter(m));
    const delivered: Message[] = [];
    for (const m of batch) {
      if (this.isCut(m.from, m.to) || !this.isUp(m.to)) {
        this.transcript.push(`DROP ${describe(m)}`);
        continue;
      }
      this.raft(m.to).step(m, this.now);
      this.checkLeaders();
      delivered.push(m);
    }
    return delivered;
  }

  /** Removes queued messages that match `filter` (all by default) without delivering them. */
  drop(filter: (m: Message) => boolean = () => true): Message[] {
    const dropped = this.queue.filter(filter);
    this.queue = this.queue.filter((m) => !filter(m));
    for (const m of dropped) this.transcript.push(`DROP ${describe(m)}`);
    return dropped;
  }

  /** Ready cycles and deliveries until nothing is left to do. `drop` picks messages the network
   *  loses on the way. */
  stabilize(options: { drop?: (m: Message) => boolean; roundsMax?: number } = {}): void {
    const roundsMax = options.roundsMax ?? 1000;
    for (let round = 0; round < roundsMax; round++) {
      const busy = this.processReadies();
      if (options.drop !== undefined) this.drop(options.drop);
      if (this.queue.length === 0 && !busy) return;
      this.deliver();
    }
    throw new Error(`no quiet state after ${roundsMax} rounds`);
  }

  /** Lets time pass: every `stepMs` (default the heartbeat) tick all live nodes, then stabilize. */
  elapse(durationMs: number, options: { stepMs?: number; drop?: (m: Message) => boolean } = {}): void {
    const stepMs = options.stepMs ?? this.heartbeatMs;
    const end = this.now + durationMs;
    while (this.now < end) {
      this.tickAll(Math.min(end, this.now + stepMs));
      this.stabilize({ drop: options.drop });
    }
  }

  // ---- internals ----

  private node(id: string): Node {
    const node = this.nodes.get(id);
    assert(node !== undefined, `no node ${id}`);
    return node;
  }

  private liveIds(): string[] {
    return this.ids.filter((id) => this.isUp(id));
  }


  private boot(id: string, node: Node): void {
    // One Prng per incarnation, derived from the seed, so runs replay exactly.
    const rng = new Prng(this.seed * 1000003 + this.ids.indexOf(id) * 7919 + node.incarnation * 104729);
    const raft = new Raft<string>({
      id, members: this.ids, electionTimeoutMs: this.electionTimeoutMs, heartbeatMs: this.heartbeatMs,
      entriesPerAppendMax: this.entriesPerAppendMax, rng,
    });
    const disk = node.disk;
    raft.load({
      hardState: { ...disk.hardState }, snapshot: disk.snapshot === null ? null : { ...disk.snapshot },
      entries: disk.entries.map((e) => ({ ...e })),
    }, this.now);
    node.raft = raft;
    node.applied = disk.snapshot === null ? [] : (JSON.parse(disk.snapshot.data) as AppliedEntry[]);
    node.reads = [];
  }

  private send(m: Message): void {
    this.transcript.push(describe(m));
    this.queue.push(m);
  }

  /** The caller's side of the Ready contract, done literally: hard state, snapshot, drop the
   *  entries from truncateFrom on, then append `entries`, which must continue the disk's log. */
  private persist(node: Node, ready: Ready<string>): void {
    const disk = node.disk;
    if (ready.hardState !== null) disk.hardState = { ...ready.hardState };
    if (ready.snapshot !== null) disk.snapshot = { ...ready.snapshot };
    if (ready.truncateFrom !== null) {
      const from = ready.truncateFrom;
      disk.entries = disk.entries.filter((e) => e.index < from);
    }
    for (const entry of ready.entries) {
      const lastEntry = disk.entries[disk.entries.length - 1];
      const diskLast = Math.max(lastEntry?.index ?? 0, disk.snapshot?.index ?? 0);
      assert(entry.index === diskLast + 1, `disk append of ${entry.index} after ${diskLast} (truncateFrom ${String(ready.truncateFrom)})`);
      disk.entries.push({ ...entry });
    }
  }

  private checkApplied(id: string, entry: Entry<string>): void {
    const seen = this.appliedAt.get(entry.index);
    if (seen === undefined) {
      this.appliedAt.set(entry.index, { index: entry.index, term: entry.term, data: entry.data });
      return;
    }
    assert(seen.term === entry.term && seen.data === entry.data,
      `State Machine Safety: node ${id} applies ${entry.term}/${entry.index} ${JSON.stringify(entry.data)}, `
      + `another node applied ${seen.term}/${seen.index} ${JSON.stringify(seen.data)}`);
  }

  private checkLeaders(): void {
    for (const id of this.liveIds()) {
      const raft = this.raft(id);
      if (!raft.isLeader) continue;
      const known = this.leaders.get(raft.term);
      assert(known === undefined || known === id, `Election Safety: ${known} and ${id} both lead term ${raft.term}`);
      this.leaders.set(raft.term, id);
    }
  }
}

function linkKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}
