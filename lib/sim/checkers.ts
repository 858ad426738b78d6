// The simulator's safety checks (TigerBeetle's state_checker.zig, for Raft and the lock table).
// They run after every simulated event and after every batch a node applies, and throw a
// SimFailure('correctness') naming the first rule that does not hold:
//
// - Election Safety (Raft Figure 3): at most one leader per term, over the whole run.
// - Log Matching / State Machine Safety: every node's log up to its commit index agrees with
//   every entry any node ever saw committed (same term and same bytes at the same index), and a
//   committed entry is never changed or lost: the global map `index -> entry` only grows.
// - Leader Completeness (§5.4): a new leader of term T holds every entry known to be committed
//   in an earlier term.
// - Identical state: a reference LockState applies the committed log itself, entry by entry
//   (`apply` is pure), and every node's state must encode to the same snapshot as the
//   reference's at the same applied index (compared on samples, at every snapshot, and at the
//   end); `checkInvariants` holds on the reference after every entry and on every node.
// - Tokens strictly increase per lock in grant order, an append is applied at most once.
// - What clients see: every final answer to a request_id is one that applying that request
//   produced; a linearizable check/read returns the state of some index between the last write
//   acknowledged before it was sent and what was applied when it was answered; a stale read
//   returns some committed state. At the end, every acknowledged append is in its file exactly
//   once, in token order, and every acknowledged grant is a grant of the log.
import { AssertionError } from '../core/assert';
import { Prng } from '../core/prng';
import type { Answer } from '../protocol/answers';
import type { Command } from '../locks/commands';
import { checkInvariants } from '../locks/invariants';
import { encodeSnapshot } from '../locks/snapshot';
import { apply, type Effect } from '../locks/state-machine';
import { checkLock, createLockState, type LockState } from '../locks/state';
import type { Replica } from '../replica/replica';
import type { Entry, Snapshot } from '../raft/messages';
import { correctness } from './failure';

/** What the checker needs to see of a node. */
export interface NodeView {
  readonly id: string;
  readonly incarnation: number;
  readonly replica: Replica;
}

export interface CheckerOptions {
  seed: number;
  /** Chance that the reference records its encoding at an applied index, for nodes to compare. */
  encodeProbability: number;
  /** Chance that a node compares its state after a batch it applied (when a reference encoding
   *  for its index exists, or the reference is at the same index). */
  compareProbability: number;
  /** Chance that checkInvariants runs on a node's state after a batch it applied. */
  nodeInvariantsProbability: number;
  /** Simulated (real) time, and how much faster than it any node's clock may run. */
  clock: () => number;
  clockDriftMax: number;
}

interface Grant {
  token: number;
  owner: string;
  index: number;
}

interface Version {
  index: number;
  value: string;
}

interface NodeProgress {
  incarnation: number;
  checkedThrough: number;
  commitIndex: number;
}

/** Records appended to guarded files by the sim clients: `<client#n@token>`. */
const recordPattern = /<([^#<>]+)#(\d+)@(\d+)>/g;

export class Checker {
  readonly stats = { leaders: 0, committed: 0, stateCompares: 0, snapshotCompares: 0, readsChecked: 0, answersChecked: 0, invariantRuns: 0 };
  private readonly prng: Prng;
  private readonly leaders = new Map<number, string>();
  // The global committed log, by index (arrays: index 0 unused).
  private readonly committedTerm: number[] = [];
  private readonly committedJson: string[] = [];
  /** The lowest term of a node that reported the entry committed: an upper bound of the term in
   *  which it was committed (Leader Completeness is checked against it). */
  private readonly commitTerm: number[] = [];
  private maxCommitted = 0;
  private readonly progress = new Map<string, NodeProgress>();
  // The reference state machine.
  readonly ref: LockState = createLockState();
  private readonly refEncodings = new Map<number, string>();
  private readonly answersByReq = new Map<string, { json: string; index: number }[]>();
  private readonly grants = new Map<string, Grant[]>();
  private lastGrantToken = 0;
  private readonly lockVersions = new Map<string, Version[]>();
  private readonly fileVersions = new Map<string, { index: number; size: number }[]>();
  private readonly appendedData = new Set<string>();
  /** The highest log index of a write acknowledged to any client so far. */
  ackedIndex = 0;
  /** Grants taken away by expiry, as client, lock, token and reason. */
  private readonly lostGrants = new Set<string>();
  /** Per client: when it sent the latest keepalive that was answered ok. */
  private readonly keepaliveSentAt = new Map<string, number>();

  constructor(private readonly options: CheckerOptions, lockNames: readonly string[]) {
    this.prng = new Prng(options.seed);
    for (const name of lockNames) {
      this.lockVersions.set(name, [{ index: 0, value: JSON.stringify(checkLock(this.ref, name)) }]);
      this.fileVersions.set(name, [{ index: 0, size: 0 }]);
    }
  }

  get referenceIndex(): number {
    return this.ref.appliedIndex;
  }

  // ---- after every event ----

  afterEvent(nodes: readonly NodeView[]): void {
    for (const node of nodes) {
      const raft = node.replica.raft;
      if (raft.role === 'leader') this.noteLeader(node, raft.term);
      this.checkLog(node, false);
    }
  }

  private noteLeader(node: NodeView, term: number): void {
    const known = this.leaders.get(term);
    if (known === node.id) return;
    if (known !== undefined) correctness(`Election Safety: ${known} and ${node.id} are both leaders of term ${term}`);
    this.leaders.set(term, node.id);
    this.stats.leaders++;
    this.checkLeaderCompleteness(node, term);
  }

  /** §5.4 Leader Completeness: a leader of term T holds every entry committed before T. */
  private checkLeaderCompleteness(node: NodeView, term: number): void {
    const log = node.replica.raft.log;
    for (let index = log.snapshotIndex; index <= this.maxCommitted; index++) {
      const committedTerm = this.committedTerm[index];
      if (committedTerm === undefined || index === 0) continue;
      if ((this.commitTerm[index] as number) >= term) continue;
      const have = log.termAt(index);
      if (have !== committedTerm) {
        correctness(`Leader Completeness: ${node.id} became leader of term ${term} without the entry committed at ${index} (term ${committedTerm}); its log has ${have === undefined ? 'nothing' : `term ${have}`} there (log ${log.snapshotIndex}..${log.lastIndex})`);
      }
    }
  }

  /** Every entry up to the node's commit index agrees with the global committed log. */
  checkLog(node: NodeView, full: boolean): void {
    const raft = node.replica.raft;
    const log = raft.log;
    let p = this.progress.get(node.id);
    if (p === undefined || p.incarnation !== node.incarnation) {
      p = { incarnation: node.incarnation, checkedThrough: 0, commitIndex: 0 };
      this.progress.set(node.id, p);
    }
    if (raft.commitIndex < p.commitIndex) correctness(`${node.id}'s commit index went back from ${p.commitIndex} to ${raft.commitIndex}`);
    p.commitIndex = raft.commitIndex;
    if (raft.commitIndex > log.lastIndex) correctness(`${node.id} has commit index ${raft.commitIndex} past its last index ${log.lastIndex}`);
    const from = full ? log.snapshotIndex : Math.max(p.checkedThrough + 1, log.snapshotIndex);
    for (let index = from; index <= raft.commitIndex; index++) {
      if (index === 0) continue;
      if (index === log.snapshotIndex) {
        this.agreeTerm(node.id, index, log.snapshotTerm, 'snapshot');
        continue;
      }
      const entry = log.entry(index) as Entry<Command>;
      this.recordCommitted(node.id, index, entry.term, JSON.stringify(entry.data), raft.term, 'log');
    }
    if (raft.commitIndex > p.checkedThrough) p.checkedThrough = raft.commitIndex;
  }

  private agreeTerm(nodeId: string, index: number, term: number, what: string): void {
    const known = this.committedTerm[index];
    if (known !== undefined && known !== term) {
      correctness(`committed entry changed: ${nodeId}'s ${what} has term ${term} at index ${index}, where term ${known} was committed`);
    }
  }

  private recordCommitted(nodeId: string, index: number, term: number, json: string, reporterTerm: number, what: string): void {
    const knownTerm = this.committedTerm[index];
    if (knownTerm === undefined) {
      this.committedTerm[index] = term;
      this.committedJson[index] = json;
      this.commitTerm[index] = reporterTerm;
      if (index > this.maxCommitted) this.maxCommitted = index;
      this.stats.committed++;
      return;
    }
    if (knownTerm !== term || this.committedJson[index] !== json) {
      correctness(`committed entry changed: ${nodeId}'s ${what} has ${term}/${abbreviate(json)} at index ${index}, where ${knownTerm}/${abbreviate(this.committedJson[index] as string)} was committed`);
    }
    if (reporterTerm < (this.commitTerm[index] as number)) this.commitTerm[index] = reporterTerm;
  }

  // ---- around a node's apply ----

  /** The node is about to apply these entries (and maybe install a snapshot): they are committed. */
  beforeApply(node: NodeView, committed: readonly Entry<Command>[], snapshot: Snapshot | null): void {
    const raft = node.replica.raft;
    if (snapshot !== null) {
      this.agreeTerm(node.id, snapshot.index, snapshot.term, 'installed snapshot');
      this.compareSnapshot(node.id, snapshot, 'installed');
    }
    for (const entry of committed) {
      this.recordCommitted(node.id, entry.index, entry.term, JSON.stringify(entry.data), raft.term, 'applied entry');
    }
    this.advanceReference();
  }

  /** The node applied a batch: its state must be valid and equal the reference's at that index. */
  afterApply(node: NodeView, appliedBefore: number): void {
    const state = node.replica.state;
    if (state.appliedIndex < appliedBefore) correctness(`${node.id}'s applied index went back from ${appliedBefore} to ${state.appliedIndex}`);
    if (state.appliedIndex > this.ref.appliedIndex) {
      correctness(`${node.id} applied through ${state.appliedIndex}, past everything known committed (${this.ref.appliedIndex})`);
    }
    if (state.appliedIndex === appliedBefore) return;
    if (this.prng.chance(this.options.nodeInvariantsProbability)) this.invariants(state, `${node.id} at ${state.appliedIndex}`);
    if (!this.prng.chance(this.options.compareProbability)) return;
    let expected = this.refEncodings.get(state.appliedIndex);
    if (expected === undefined && state.appliedIndex === this.ref.appliedIndex) expected = this.encodeReference();
    if (expected === undefined) return;
    this.stats.stateCompares++;
    const actual = encodeSnapshot(state);
    if (actual !== expected) correctness(`state divergence: ${node.id} at applied index ${state.appliedIndex}: ${firstDifference(actual, expected)}`);
  }

  /** A snapshot a node took or installed must encode the reference state at its index. */
  compareSnapshot(nodeId: string, snapshot: Snapshot, what: string): void {
    let expected = this.refEncodings.get(snapshot.index);
    if (expected === undefined && snapshot.index === this.ref.appliedIndex) expected = this.encodeReference();
    if (expected === undefined) return;
    this.stats.snapshotCompares++;
    if (snapshot.data !== expected) correctness(`state divergence: ${nodeId}'s ${what} snapshot at ${snapshot.index}: ${firstDifference(snapshot.data, expected)}`);
  }

  private encodeReference(): string {
    const encoding = encodeSnapshot(this.ref);
    this.refEncodings.set(this.ref.appliedIndex, encoding);
    return encoding;
  }

  private invariants(state: LockState, where: string): void {
    this.stats.invariantRuns++;
    try {
      checkInvariants(state);
    } catch (err) {
      if (err instanceof AssertionError) correctness(`${where}: ${err.message}`);
      throw err;
    }
  }

  // ---- the reference state machine ----

  private advanceReference(): void {
    const ref = this.ref;
    while (this.committedTerm[ref.appliedIndex + 1] !== undefined) {
      const index = ref.appliedIndex + 1;
      const command = JSON.parse(this.committedJson[index] as string) as Command | null;
      if (command === null) {
        ref.appliedIndex = index;
      } else {
        this.applyReference(index, command);
      }
      if (this.prng.chance(this.options.encodeProbability)) {
        this.encodeReference();
        if (this.refEncodings.size > 256) this.refEncodings.delete(this.refEncodings.keys().next().value as number);
      }
    }
  }

  private applyReference(index: number, command: Command): void {
    const ref = this.ref;
    const fileBefore = command.type === 'append' ? ref.files.get(command.file)?.sizeBytes ?? 0 : 0;
    // DESIGN §3: cluster time resumes from the last committed time and advances by the
    // leader's own clock, so it never runs ahead of real time (beyond clock drift); if it did,
    // deadlines would fire early and healthy clients would lose their locks.
    const now = this.options.clock();
    const rate = 1 + this.options.clockDriftMax;
    if (command.at > now * rate + 1) {
      correctness(`cluster time ran ahead of real time: entry ${index} (${command.type}) is stamped ${command.at.toFixed(1)}ms, ${now.toFixed(1)}ms have passed`);
    }
    const ttlBefore = new Map<string, number>();
    for (const [client, session] of ref.sessions) ttlBefore.set(client, session.ttlMs);
    let result: { answer: Answer | null; effects: Effect[] };
    try {
      result = apply(ref, index, command);
    } catch (err) {
      if (err instanceof AssertionError) correctness(`reference apply of ${index} (${abbreviate(JSON.stringify(command))}): ${err.message}`);
      throw err;
    }
    const { answer, effects } = result;
    this.invariants(ref, `reference at ${index}`);
    for (const effect of effects) {
      if (effect.kind === 'session_ended' && effect.reason === 'expired') this.checkExpiry(effect.client, ttlBefore.get(effect.client), now, rate);
      if (effect.kind === 'lost') this.lostGrants.add(`${effect.client}\u0000${effect.lock}\u0000${effect.token}\u0000${effect.reason}`);
      if (effect.kind === 'granted') {
        const granted: Answer = { ok: true, lock_name: effect.lock, owner: effect.client, token: effect.token };
        this.noteGrant(effect.lock, effect.token, effect.client, index, false);
        for (const req of effect.reqs) this.noteAnswer(effect.client, req, granted, index);
      } else if (effect.kind === 'wait_ended') {
        for (const req of effect.reqs) this.noteAnswer(effect.client, req, effect.answer, index);
      }
    }
    if ('req' in command && command.req !== undefined && answer !== null) {
      this.noteAnswer(command.client, command.req, answer, index);
      if ((command.type === 'preempt' || command.type === 'acquire') && answer.ok) {
        this.noteGrant(command.lock, answer['token'] as number, command.client, index, true);
      }
    }
    if (command.type === 'append' && answer?.ok === true) {
      const file = ref.files.get(command.file);
      if (file !== undefined && file.sizeBytes > fileBefore) {
        if (this.appendedData.has(command.data)) correctness(`append applied twice: ${command.data} at ${index} (request ${command.req ?? '-'})`);
        this.appendedData.add(command.data);
      }
    }
    for (const [name, versions] of this.lockVersions) {
      const value = JSON.stringify(checkLock(ref, name));
      if ((versions[versions.length - 1] as Version).value !== value) versions.push({ index, value });
    }
    for (const [name, versions] of this.fileVersions) {
      const size = ref.files.get(name)?.sizeBytes ?? 0;
      if ((versions[versions.length - 1] as { size: number }).size !== size) versions.push({ index, size });
    }
  }

  /** PROTOCOL §4 keepalive: an answered keepalive means the cluster saw the session alive after
   *  it was sent, so the session cannot expire until ttl has passed since (DESIGN §3: "a
   *  healthy client is never expired by a failover"). LockClient relies on exactly this. */
  private checkExpiry(client: string, ttlMs: number | undefined, now: number, rate: number): void {
    const sentAt = this.keepaliveSentAt.get(client);
    if (sentAt === undefined || ttlMs === undefined) return;
    const earliest = sentAt + ttlMs / rate;
    if (now < earliest - 1) {
      correctness(`session of ${client} expired at ${now.toFixed(1)}ms, ${(now - sentAt).toFixed(1)}ms after it sent a keepalive that was answered (ttl ${ttlMs}ms)`);
    }
  }

  noteKeepaliveAnswered(client: string, sentAt: number): void {
    const known = this.keepaliveSentAt.get(client);
    if (known === undefined || sentAt > known) this.keepaliveSentAt.set(client, sentAt);
  }

  private noteGrant(lock: string, token: number, owner: string, index: number, mayRepeat: boolean): void {
    let list = this.grants.get(lock);
    if (list === undefined) {
      list = [];
      this.grants.set(lock, list);
    }
    const last = list[list.length - 1];
    if (last !== undefined && token <= last.token) {
      // A retried or repeated preempt/acquire answers the grant it already has.
      if (mayRepeat && list.some((g) => g.token === token && g.owner === owner)) return;
      correctness(`tokens of ${lock} do not increase: ${owner} granted ${token} at ${index} after ${last.owner} got ${last.token} at ${last.index}`);
    }
    if (token <= this.lastGrantToken) correctness(`token ${token} for ${lock} at ${index} is not above the last token handed out (${this.lastGrantToken})`);
    this.lastGrantToken = token;
    list.push({ token, owner, index });
  }

  private noteAnswer(client: string, req: string, answer: Answer, index: number): void {
    const key = `${client}\u0000${req}`;
    const json = JSON.stringify(answer);
    let list = this.answersByReq.get(key);
    if (list === undefined) {
      list = [];
      this.answersByReq.set(key, list);
    }
    if (!list.some((a) => a.json === json)) list.push({ json, index });
  }

  // ---- what clients see ----

  /** A final answer to a state-changing request must be one the log produced for it. Returns the
   *  log index it came from. */
  checkWriteAnswer(client: string, req: string, action: string, answer: Answer): number {
    this.stats.answersChecked++;
    const json = JSON.stringify(answer);
    const list = this.answersByReq.get(`${client}\u0000${req}`) ?? [];
    const match = list.find((a) => a.json === json);
    if (match === undefined) {
      correctness(`${client} got an answer to ${action} ${req} that applying it never produced: ${json}; the log answered ${list.length === 0 ? 'nothing (not applied)' : list.map((a) => `${a.json} at ${a.index}`).join(' or ')}`);
    }
    // The request took effect (or was judged) at that index: a read sent after this answer
    // arrived must see at least that state.
    if (match.index > this.ackedIndex) this.ackedIndex = match.index;
    return match.index;
  }

  /** A check answered with the lock's state at some index in [lowIndex, highIndex]. */
  checkCheckAnswer(client: string, lock: string, answer: Answer, lowIndex: number, highIndex: number, stale: boolean): void {
    this.stats.readsChecked++;
    const versions = this.lockVersions.get(lock);
    if (versions === undefined) return;
    const json = JSON.stringify(answer);
    const low = stale ? 0 : lowIndex;
    for (let i = 0; i < versions.length; i++) {
      const v = versions[i] as Version;
      const until = i + 1 < versions.length ? (versions[i + 1] as Version).index - 1 : Infinity;
      if (v.value === json && v.index <= highIndex && until >= low) return;
    }
    correctness(`${client}'s ${stale ? 'stale ' : ''}check of ${lock} answered ${json}, which is not its state anywhere in [${low}, ${highIndex}]; versions: ${versions.filter((v, i) => i + 1 >= versions.length || (versions[i + 1] as Version).index > low).map((v) => `${v.index}:${v.value}`).join(' ')}`);
  }

  checkReadAnswer(client: string, file: string, answer: Answer, lowIndex: number, highIndex: number, stale: boolean): void {
    this.stats.readsChecked++;
    const versions = this.fileVersions.get(file);
    if (versions === undefined || !answer.ok) return;
    const data = answer['data'] as string;
    const full = this.ref.files.get(file)?.chunks.join('') ?? '';
    if (!full.startsWith(data)) correctness(`${client}'s read of ${file} returned data that is not a prefix of the file: ${abbreviate(data)}`);
    const low = stale ? 0 : lowIndex;
    for (let i = 0; i < versions.length; i++) {
      const v = versions[i] as { index: number; size: number };
      const until = i + 1 < versions.length ? (versions[i + 1] as { index: number }).index - 1 : Infinity;
      if (v.size === data.length && v.index <= highIndex && until >= low) return;
    }
    correctness(`${client}'s ${stale ? 'stale ' : ''}read of ${file} returned ${data.length} bytes, not the file's size anywhere in [${low}, ${highIndex}]`);
  }

  /** PROTOCOL §3: a `lost` event names a grant of this client that expiry took away. */
  checkLostEvent(client: string, lock: string, token: unknown, reason: unknown): void {
    if (!this.lostGrants.has(`${client}\u0000${lock}\u0000${String(token)}\u0000${String(reason)}`)) {
      correctness(`${client} got a lost event for ${lock} token ${String(token)} (${String(reason)}) that no applied entry produced`);
    }
  }

  /** An acknowledged grant must be a grant of the log to that client. */
  checkGrantAck(client: string, lock: string, token: number): void {
    const list = this.grants.get(lock) ?? [];
    if (!list.some((g) => g.token === token && g.owner === client)) {
      correctness(`${client} was told it holds ${lock} with token ${token}, which the log never granted to it`);
    }
  }

  // ---- at the end ----

  /** Every node's state equals the reference (same applied index), and acknowledged work is there. */
  finalCheck(nodes: readonly NodeView[], ackedAppends: readonly { client: string; file: string; data: string }[]): void {
    for (const node of nodes) this.checkLog(node, true);
    const expected = encodeSnapshot(this.ref);
    this.invariants(this.ref, 'reference at the end');
    for (const node of nodes) {
      const state = node.replica.state;
      if (state.appliedIndex !== this.ref.appliedIndex) {
        correctness(`${node.id} ended at applied index ${state.appliedIndex}, the committed log at ${this.ref.appliedIndex}`);
      }
      this.invariants(state, `${node.id} at the end`);
      const actual = encodeSnapshot(state);
      if (actual !== expected) correctness(`state divergence at the end: ${node.id} at ${state.appliedIndex}: ${firstDifference(actual, expected)}`);
    }
    for (const { client, file, data } of ackedAppends) {
      const content = this.ref.files.get(file)?.chunks.join('') ?? '';
      const count = content.split(data).length - 1;
      if (count !== 1) correctness(`${client}'s acknowledged append ${data} is in ${file} ${count} times`);
    }
    this.checkFileRecords();
  }

  /** Appends in each file carry non-decreasing tokens, each one a grant of that lock to that
   *  client (fencing: a stale holder's write never lands after a newer holder's). */
  private checkFileRecords(): void {
    for (const [name, file] of this.ref.files) {
      const content = file.chunks.join('');
      const grants = this.grants.get(name) ?? [];
      let lastToken = 0;
      for (const match of content.matchAll(recordPattern)) {
        const client = match[1] as string;
        const token = Number(match[3]);
        if (token < lastToken) correctness(`${name}: append ${match[0]} with token ${token} landed after one with token ${lastToken}`);
        lastToken = token;
        if (!grants.some((g) => g.token === token && g.owner === client)) correctness(`${name}: append ${match[0]} carries a token never granted to ${client}`);
      }
    }
  }

  describe(): string {
    return `committed=${this.maxCommitted} applied(ref)=${this.ref.appliedIndex} leaders=${this.leaders.size} lastToken=${this.lastGrantToken}`;
  }
}

function abbreviate(text: string): string {
  return text.length <= 160 ? text : `${text.slice(0, 157)}...`;
}

function firstDifference(actual: string, expected: string): string {
  let i = 0;
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) i++;
  const from = Math.max(0, i - 60);
  return `differs at char ${i}: got ...${actual.slice(from, i + 60)}... expected ...${expected.slice(from, i + 60)}...`;
}
