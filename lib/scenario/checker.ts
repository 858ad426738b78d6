// Checks a recorded history against what the contract promises.
//
// The first three checks only flag what the acknowledged answers prove: a client certainly held
// a lock from the moment its grant was answered until the moment it asked to release it (or until
// a `lost` event told it otherwise); two such intervals of different clients on one lock that
// overlap are a mutual-exclusion violation. Tokens and the final files are checked the same way,
// from acknowledged answers only.
//
// `checkLinearizable` is the strong one: per lock, it searches for an order of the operations
// that respects real time and a sequential model of one lock (Wing & Gong's search with
// Lowe's/Porcupine's memoisation), and says 'ok', 'violation' (with a minimal failing window) or
// 'unknown' (the time budget, or the bound on explored configurations, ran out first).
import type { HistoryOp } from './history';

export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
}

export interface Hold {
  client: string;
  lock: string;
  token: number;
  fromMs: number;
  toMs: number;
}

/** The codes with which the server refuses a release or an append because the caller does not
 *  hold that grant: definite answers, the request had no effect. */
const NOT_HELD = new Set(['not_owner', 'stale_token']);
/** Lost events come from the server for these reasons; the others come from the client's clock. */
const SERVER_LOST = new Set(['session_expired', 'lease_expired']);

const isGrant = (op: HistoryOp): boolean => op.kind === 'acquire' || op.kind === 'preempt';
const fmt = (ms: number): string => (Number.isFinite(ms) ? ms.toFixed(1) : String(ms));

/** The latest moment an acknowledged answer proves the hold was still there: the invocation of an
 *  accepted append with its token, or of a check that returned it with its token. */
function lastProvenUseMs(ops: readonly HistoryOp[], hold: Hold): number {
  let toMs = hold.fromMs;
  for (const op of ops) {
    if (op.lock !== hold.lock || op.client !== hold.client || !op.ok || op.completedMs === null) continue;
    if (op.kind === 'append' && op.token === hold.token) toMs = Math.max(toMs, op.invokedMs);
    if (op.kind === 'check' && op.token === hold.token && (op.owner === undefined || op.owner === hold.client)) toMs = Math.max(toMs, op.invokedMs);
  }
  return toMs;
}

/**
 * Certain hold intervals: grant answered -> release invoked (or the run's end if never released),
 * cut short where the history shows the grant ended earlier:
 * - the grant is `lost` (a lost event, the client's own clock, or a crash: it ended at some
 *   point before `lostMs`), or its release was refused with `not_owner` /
 *   `stale_token` (it was already gone): cut at its last proven use;
 * - the same client got a grant of the lock with another token: the earlier grant was gone by
 *   then, cut at its last proven use (before, such a re-grant was skipped as a "re-take" and its
 *   hold was never looked at).
 * A release with another grant's token does not end this hold (PROTOCOL §4: it releases only
 * that grant).
 */
export function holdIntervals(ops: readonly HistoryOp[], endMs: number): Hold[] {
  const holds: Hold[] = [];
  const open = new Map<string, Hold>();
  const cutAtProvenUse = new Set<Hold>();
  const sorted = [...ops].sort((a, b) => a.invokedMs - b.invokedMs);
  for (const op of sorted) {
    const key = `${op.client}\u0000${op.lock}`;
    if (isGrant(op) && op.ok && op.token !== undefined && op.completedMs !== null) {
      const current = open.get(key);
      if (current !== undefined && current.token === op.token) continue; // a re-take of a lock it holds: same grant
      if (current !== undefined) cutAtProvenUse.add(current);
      const hold: Hold = { client: op.client, lock: op.lock, token: op.token, fromMs: op.completedMs, toMs: endMs };
      // A loss (a `lost` event, the client's own clock, a crash) says the grant ended at some
      // point BEFORE the client learned of it, so what is certain is only its last proven use.
      if (op.lostMs !== undefined) hold.toMs = Math.min(hold.toMs, Math.max(hold.fromMs, op.lostMs));
      if (op.lost === true) cutAtProvenUse.add(hold);
      open.set(key, hold);
      holds.push(hold);
    } else if (op.kind === 'release') {
      const hold = open.get(key);
      if (hold === undefined) continue;
      if (op.token !== undefined && op.token !== hold.token) continue;
      if (!op.ok && op.completedMs !== null && op.code !== undefined && NOT_HELD.has(op.code)) cutAtProvenUse.add(hold);
      else hold.toMs = Math.min(hold.toMs, Math.max(hold.fromMs, op.invokedMs));
      open.delete(key);
    }
  }
  for (const hold of cutAtProvenUse) hold.toMs = Math.min(hold.toMs, lastProvenUseMs(ops, hold));
  return holds;
}

function groupByLock(holds: readonly Hold[]): Map<string, Hold[]> {
  const byLock = new Map<string, Hold[]>();
  for (const hold of holds) {
    const list = byLock.get(hold.lock) ?? [];
    list.push(hold);
    byLock.set(hold.lock, list);
  }
  return byLock;
}

/**
 * No two clients certainly hold one lock at once. `lostTokens` (kept for compatibility; a token
 * names a grant only together with its lock, so prefer `lost`/`lostMs` on the grant op) cuts the
 * holds of those tokens at their last proven use.
 *
 * Each hold is compared with every earlier one of another client (a sweep keeping the two latest
 * ends of distinct clients), not just with its neighbour in start order.
 */
export function checkMutualExclusion(ops: readonly HistoryOp[], endMs: number, lostTokens: ReadonlySet<number> = new Set()): CheckResult {
  const holds = holdIntervals(ops, endMs).map((hold) => (lostTokens.has(hold.token) ? { ...hold, toMs: Math.min(hold.toMs, lastProvenUseMs(ops, hold)) } : hold));
  const byLock = groupByLock(holds);
  for (const [lock, list] of byLock) {
    list.sort((a, b) => a.fromMs - b.fromMs || a.toMs - b.toMs);
    let best: Hold | undefined; // the latest-ending hold so far
    let other: Hold | undefined; // the latest-ending hold so far of a client other than best's
    for (const b of list) {
      const rival = best !== undefined && best.client !== b.client ? best : other;
      if (rival !== undefined && b.fromMs < rival.toMs) {
        return {
          name: 'mutual exclusion',
          ok: false,
          detail: `${lock}: ${rival.client} (token ${rival.token}) held it ${fmt(rival.fromMs)}..${fmt(rival.toMs)} ms but ${b.client} (token ${b.token}) was granted it at ${fmt(b.fromMs)} ms`,
        };
      }
      if (best === undefined || b.toMs > best.toMs) {
        if (best !== undefined && best.client !== b.client) other = best;
        best = b;
      } else if (b.client !== best.client && (other === undefined || b.toMs > other.toMs)) {
        other = b;
      }
    }
  }
  return { name: 'mutual exclusion', ok: true, detail: `${holds.length} holds on ${byLock.size} locks, none overlapping` };
}

/**
 * Fencing tokens, from the acknowledged grants of each lock:
 * - no token is granted to two different clients;
 * - a grant invoked after another grant was answered carries a greater token (or the same one,
 *   when it is the same client re-taking the lock it holds — but not after an acknowledged
 *   release of that grant).
 * Before, only neighbouring certain holds of different clients were compared, so a client
 * whose own second grant went backwards passed.
 */
export function checkTokensIncrease(ops: readonly HistoryOp[], _endMs?: number): CheckResult {
  const byLock = new Map<string, HistoryOp[]>();
  for (const op of ops) {
    if (!isGrant(op) || !op.ok || op.token === undefined || op.completedMs === null) continue;
    const list = byLock.get(op.lock) ?? [];
    list.push(op);
    byLock.set(op.lock, list);
  }
  let grants = 0;
  for (const [lock, list] of byLock) {
    grants += list.length;
    const ownerOf = new Map<number, HistoryOp>();
    for (const op of list) {
      const first = ownerOf.get(op.token as number);
      if (first !== undefined && first.client !== op.client) {
        return { name: 'tokens increase', ok: false, detail: `${lock}: token ${op.token} was granted to both ${first.client} and ${op.client}` };
      }
      if (first === undefined) ownerOf.set(op.token as number, op);
    }
    const byAnswer = [...list].sort((a, b) => (a.completedMs as number) - (b.completedMs as number));
    const byInvoke = [...list].sort((a, b) => a.invokedMs - b.invokedMs);
    let i = 0;
    let max: HistoryOp | undefined;
    for (const b of byInvoke) {
      while (i < byAnswer.length && (byAnswer[i] as HistoryOp).completedMs as number < b.invokedMs) {
        const a = byAnswer[i++] as HistoryOp;
        if (max === undefined || (a.token as number) > (max.token as number)) max = a;
      }
      if (max === undefined) continue;
      const bt = b.token as number;
      const mt = max.token as number;
      if (bt < mt) {
        return { name: 'tokens increase', ok: false, detail: `${lock}: ${b.client} was granted token ${bt} (invoked at ${fmt(b.invokedMs)} ms) after token ${mt} had been granted to ${max.client} (answered at ${fmt(max.completedMs as number)} ms)` };
      }
      if (bt === mt) {
        const prior = max;
        const released = ops.find((r) => r.kind === 'release' && r.ok && r.lock === lock && r.client === b.client && r.completedMs !== null
          && r.completedMs < b.invokedMs && r.invokedMs > (prior.completedMs as number) && (r.token === undefined || r.token === bt));
        if (released !== undefined) {
          return { name: 'tokens increase', ok: false, detail: `${lock}: ${b.client} was granted token ${bt} again at ${fmt(b.invokedMs)} ms after releasing that grant at ${fmt(released.invokedMs)} ms` };
        }
      }
    }
  }
  return { name: 'tokens increase', ok: true, detail: `${grants} grants` };
}

/** Where `data` stands in `content`. Data that ends a line (the runner's appends do) only counts
 *  where a line starts, so "c1#1@5\n" is not found inside "c11#1@5\n". */
function occurrences(content: string, data: string): number[] {
  const found: number[] = [];
  if (data === '') return found;
  const lineWise = data.endsWith('\n');
  for (let at = content.indexOf(data); at >= 0; at = content.indexOf(data, at + 1)) {
    if (lineWise && at > 0 && content[at - 1] !== '\n') continue;
    if (found.length > 0 && at < (found[found.length - 1] as number) + data.length) continue; // overlapping match
    found.push(at);
  }
  return found;
}

/**
 * The final files against the appends (data must be unique per append; the runner makes it so):
 * - every acknowledged append is there, exactly once;
 * - no append the server refused (`not_owner`, `stale_token`) is there, and no append at all is
 *   there twice (retries are applied once);
 * - the appends that are there stand in token order, and an acknowledged append stands before
 *   every append invoked after it was acknowledged.
 * Improvements over the first version: line-aware matching; refused and unacknowledged appends
 * that were applied are checked too; an append without a token no longer resets the order check
 * (it used to count as token 0); real-time order is checked.
 */
export function checkAppends(ops: readonly HistoryOp[], finalFiles: ReadonlyMap<string, string>): CheckResult {
  const name = 'acknowledged appends';
  let checked = 0;
  const placedByFile = new Map<string, { op: HistoryOp; at: number }[]>();
  for (const op of ops) {
    if (op.kind !== 'append' || (op.data ?? '') === '') continue;
    const file = op.file ?? op.lock;
    const data = op.data as string;
    const found = occurrences(finalFiles.get(file) ?? '', data);
    const refused = !op.ok && op.completedMs !== null && op.code !== undefined && NOT_HELD.has(op.code);
    if (op.ok && found.length === 0) return { name, ok: false, detail: `${file}: acknowledged append ${JSON.stringify(data)} is missing` };
    if (found.length > 1) return { name, ok: false, detail: `${file}: ${JSON.stringify(data)} was written ${found.length === 2 ? 'twice' : `${found.length} times`}` };
    if (refused && found.length > 0) return { name, ok: false, detail: `${file}: append ${JSON.stringify(data)} was refused (${op.code}) but written` };
    if (found.length === 0) continue;
    const list = placedByFile.get(file) ?? [];
    list.push({ op, at: found[0] as number });
    placedByFile.set(file, list);
    if (op.ok) checked++;
  }
  for (const [file, list] of placedByFile) {
    list.sort((a, b) => a.at - b.at);
    let max: HistoryOp | undefined;
    for (const { op } of list) {
      if (op.token === undefined) continue;
      if (max !== undefined && op.token < (max.token as number)) {
        return { name, ok: false, detail: `${file}: data of token ${op.token} (${JSON.stringify(op.data)}) stands after data of token ${max.token} (${JSON.stringify(max.data)})` };
      }
      if (max === undefined || op.token > (max.token as number)) max = op;
    }
    // Walking from the end: the earliest-acknowledged append standing after this one.
    let earliest: HistoryOp | undefined;
    for (let i = list.length - 1; i >= 0; i--) {
      const { op } = list[i] as { op: HistoryOp };
      if (earliest !== undefined && (earliest.completedMs as number) < op.invokedMs) {
        return { name, ok: false, detail: `${file}: ${JSON.stringify(earliest.data)} (acknowledged at ${fmt(earliest.completedMs as number)} ms) stands after ${JSON.stringify(op.data)} (invoked at ${fmt(op.invokedMs)} ms)` };
      }
      if (op.ok && op.completedMs !== null && (earliest === undefined || op.completedMs < (earliest.completedMs as number))) earliest = op;
    }
  }
  return { name, ok: true, detail: `${checked} acknowledged appends, each exactly once and in token order` };
}

// ------------------------------------------------------------------------------------------
// Linearizability
//
// Model (one lock, plus the files appended under it): state = { owner: client | null, token,
// lastToken (the greatest token granted so far), contents of each file }. Operations:
// - preempt/acquire ok(t): owner === caller and t === token (a re-take: same grant), or the lock
//   is free and t > lastToken (then owner = caller, token = lastToken = t). An acquire's
//   linearization point is the grant (the FIFO wait is before it; the queue order is not checked).
// - preempt lock_held: owner is someone else.
// - release ok(t?): owner === caller (and t === token) -> free. not_owner/stale_token: the
//   opposite held.
// - append ok(t, data): owner === caller and t === token -> data is appended. not_owner/
//   stale_token: the opposite held.
// - check ok: the owner (and token, if recorded) it returned is the state's. check_mismatch: the
//   owner was not the caller.
// - read ok: the data equals the file's contents.
// Operations without an answer (completedMs null), or failed with any other code (unavailable,
// internal, client-side errors, and even an acquire's `timeout`, which LockClient also reports
// when it gives up on its own: the request may have been applied), are optional: they may take
// effect at any point after their invocation, or never. Such a grant's token is unknown: it is one
// of the tokens the history shows for that client on that lock, or an unnamed fresh one.
// Expiry frees a lock without a client operation; it is modelled as an extra "expire" step:
// - for a grant marked lost by the server (lostReason session_expired/lease_expired with lostMs):
//   it must happen between the grant's invocation and lostMs;
// - for another grant marked lost, for every grant whose answer was lost (the client never knew
//   it held it, so only the session's end could free it), and for every grant when the option
//   anyGrantMayExpire is set: it may happen at any point after the grant's invocation, or never.
// A release answered ok on a grant that may have expired is taken as "released if still held"
// (LockClient swallows not_owner on a handle it knows is lost).
//
// Algorithm: locks are independent (P-compositionality), so the history is split into
// components (a lock with the files appended under it; locks sharing a file are merged) and each
// is checked alone. For one component, Wing & Gong's depth-first search: repeatedly linearize one
// of the pending operations that no other pending required operation precedes in real time
// (invoked no later than the earliest answer among them), backtracking on failure; a
// configuration (the set of linearized operations — as "the first p required ones by invocation
// plus the few beyond p, all invoked before req[p]'s answer, plus the optional ones taken" — and
// the model state) that was already explored is not explored again (Lowe; Porcupine). The search
// is iterative, with an explicit stack, and checks the clock every 256 steps.
// On a violation, a minimal failing window is found (each step is a search on a smaller history,
// and each such history allows at least what the full one does, so a failure there is a proof):
// - its end: the earliest cut T at which the ops invoked up to T already fail; ops answered after
//   T are optional there (with the answer they got). Galloping from where the full search got
//   stuck, then bisection (failing is monotone in T);
// - its start: the latest quiescent cut S (every required op invoked before S was answered before
//   S) from which the ops invoked in [S, T] fail when started in ANY state the earlier ops could
//   leave (free, or held with any token by a client that asked for a grant before S; any file
//   prefix). Optional ops from before S stay in. Galloping back from T, then bisection;
// - its core: the window's ops made optional one at a time, latest first, as long as it still
//   fails; what stays required cannot all be explained together.
// ------------------------------------------------------------------------------------------

export type Verdict = 'ok' | 'violation' | 'unknown';

export interface LinearizabilityOptions {
  /** Wall-clock budget for the whole check (all locks, and shrinking a failing window). */
  budgetMs: number;
  /** The files' contents at the end of the run: checked as a read after every operation. */
  finalFiles?: ReadonlyMap<string, string>;
  /** Grants may have been taken away by expiry that the history does not mark (`lost`). */
  anyGrantMayExpire?: boolean;
  /** Explored configurations per search before giving up with 'unknown' (memory bound). */
  maxConfigurations?: number;
}

export interface FailingWindow {
  /** The lock (or locks, comma-separated, when they share a file). */
  lock: string;
  fromMs: number;
  /** Infinity when only the final file contents expose the violation. */
  toMs: number;
  /** Indices (into the checked ops array) of the operations in the window. */
  ops: number[];
  /** The window's core: these ops (indices) cannot all be explained even if every other op of
   *  the window may or may not have taken effect (with the answer it got). */
  core: number[];
}

export interface LockVerdict {
  lock: string;
  verdict: Verdict;
  ops: number;
  /** Configurations (linearized set, model state) the search explored. */
  configurations: number;
  detail: string;
}

export type LinearizabilityResult = CheckResult & {
  verdict: Verdict;
  locks: LockVerdict[];
  window?: FailingWindow;
};

interface MState {
  /** Per lock: owner (client index; -1 free; -2 someone outside the window). */
  o: number[];
  /** Per lock: the current grant's token (NaN when free or unknown). */
  t: number[];
  /** Per lock: greatest token granted so far (a lower bound; -Infinity when unknown). */
  l: number[];
  /** Per file: node in the file trie. */
  f: number[];
  key: string;
}

function mkState(o: number[], t: number[], l: number[], f: number[]): MState {
  return { o, t, l, f, key: `${o.join(',')}|${t.join(',')}|${l.join(',')}|${f.join(',')}` };
}

function setLock(s: MState, li: number, owner: number, token: number, last: number): MState {
  const o = s.o.slice();
  const t = s.t.slice();
  const l = s.l.slice();
  o[li] = owner;
  t[li] = token;
  l[li] = last;
  return mkState(o, t, l, s.f);
}

/** File contents as paths in a trie of appends: node 0 is the empty file, node 1 an unknown
 *  prefix (a window's start); each other node is its parent plus one append's data. */
class FileTrie {
  private readonly parent: number[] = [-1, -1];
  private readonly data: string[] = ['', ''];
  private readonly children = new Map<string, number>();
  private readonly memo = new Map<string, boolean>();

  child(node: number, appendId: number, data: string): number {
    const key = `${node}:${appendId}`;
    let id = this.children.get(key);
    if (id === undefined) {
      id = this.parent.length;
      this.parent.push(node);
      this.data.push(data);
      this.children.set(key, id);
    }
    return id;
  }

  /** Does the file at `node` read as `content` (readId names `content` for the memo)? */
  reads(node: number, content: string, readId: number): boolean {
    const key = `${node}:${readId}`;
    let result = this.memo.get(key);
    if (result === undefined) {
      let pos = content.length;
      let n = node;
      result = true;
      while (n > 1) {
        const d = this.data[n] as string;
        if (pos < d.length || !content.startsWith(d, pos - d.length)) {
          result = false;
          break;
        }
        pos -= d.length;
        n = this.parent[n] as number;
      }
      if (result && n === 0) result = pos === 0;
      this.memo.set(key, result);
    }
    return result;
  }
}

/** One operation of the search. */
interface COp {
  /** Index into the checked ops, or -1 for a synthetic step (expiry, final read). */
  src: number;
  call: number;
  /** Infinity for optional ops. */
  ret: number;
  step: (s: MState) => MState[];
}

interface Component {
  name: string;
  locks: string[];
  files: string[];
  ops: number[];
  finalFiles: [string, string][];
}

interface Compiled {
  req: COp[];
  opt: COp[];
  init: MState[];
}

type Outcome = 'ok' | 'violation' | 'unknown';

class UnionFind {
  private readonly up = new Map<string, string>();
  find(x: string): string {
    if (!this.up.has(x)) this.up.set(x, x);
    let root = x;
    while (this.up.get(root) !== root) root = this.up.get(root) as string;
    for (let y = x; y !== root;) {
      const next = this.up.get(y) as string;
      this.up.set(y, root);
      y = next;
    }
    return root;
  }
  union(a: string, b: string): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra !== rb) this.up.set(ra, rb);
  }
}

function components(ops: readonly HistoryOp[], finalFiles: ReadonlyMap<string, string> | undefined): Component[] {
  const uf = new UnionFind();
  const keyOf = (op: HistoryOp): string => (op.kind === 'read' ? `F:${op.file ?? op.lock}` : `L:${op.lock}`);
  ops.forEach((op) => {
    if (op.kind === 'append') uf.union(`L:${op.lock}`, `F:${op.file ?? op.lock}`);
    else uf.find(keyOf(op));
  });
  const byRoot = new Map<string, Component>();
  const get = (root: string): Component => {
    let c = byRoot.get(root);
    if (c === undefined) {
      c = { name: '', locks: [], files: [], ops: [], finalFiles: [] };
      byRoot.set(root, c);
    }
    return c;
  };
  const seenKeys = new Set<string>();
  const note = (c: Component, key: string): void => {
    if (seenKeys.has(key)) return;
    seenKeys.add(key);
    if (key.startsWith('L:')) c.locks.push(key.slice(2));
    else c.files.push(key.slice(2));
  };
  ops.forEach((op, i) => {
    const c = get(uf.find(keyOf(op)));
    c.ops.push(i);
    note(c, keyOf(op));
    if (op.kind === 'append') note(c, `F:${op.file ?? op.lock}`);
  });
  for (const [file, content] of finalFiles ?? []) {
    if (!seenKeys.has(`F:${file}`)) continue; // no operation touched it: nothing to compare with
    get(uf.find(`F:${file}`)).finalFiles.push([file, content]);
  }
  for (const c of byRoot.values()) c.name = c.locks.length > 0 ? c.locks.join(',') : `file ${c.files.join(',')}`;
  return [...byRoot.values()];
}

type Cls = 'ok' | 'refused' | 'unknown';

/**
 * What an answer tells: 'ok'; 'refused' (a definite refusal that changed nothing, and says why);
 * 'unknown' (no answer, or an error that does not say whether the request was applied:
 * `unavailable`, `internal`, `shutting_down`, client-side errors — and `timeout`, which LockClient
 * also reports when its own watchdog or an abort gives up on an acquire that may have been granted
 * (it then releases such a grant quietly, which the history does not show)).
 */
function classify(op: HistoryOp): Cls {
  if (op.completedMs === null) return 'unknown';
  if (op.ok) return 'ok';
  if (op.kind === 'preempt' && op.code === 'lock_held') return 'refused';
  if ((op.kind === 'release' || op.kind === 'append') && op.code !== undefined && NOT_HELD.has(op.code)) return 'refused';
  if (op.kind === 'check' && op.code === 'check_mismatch') return 'refused';
  return 'unknown';
}

/**
 * The search's view of one component: the operations invoked up to `cutMs` (those answered after
 * it, and the `relaxed` ones, become optional but keep their answer). With `startMs`, the required
 * ops invoked before it are left out if answered before it (their effect is in the start state)
 * and optional otherwise, and the start state is any state such ops could leave.
 */
function compile(all: readonly HistoryOp[], comp: Component, options: LinearizabilityOptions, cutMs: number, startMs: number | null, relaxed?: ReadonlySet<number>): Compiled {
  const clients = new Map<string, number>();
  const cid = (name: string): number => {
    let id = clients.get(name);
    if (id === undefined) {
      id = clients.size;
      clients.set(name, id);
    }
    return id;
  };
  const lockIdx = new Map(comp.locks.map((l, i) => [l, i] as const));
  const fileIdx = new Map(comp.files.map((f, i) => [f, i] as const));
  const trie = new FileTrie();
  const req: COp[] = [];
  const opt: COp[] = [];

  const classified: { i: number; op: HistoryOp; cls: Cls; late: boolean }[] = [];
  const tokens = new Map<string, Set<number>>(); // `${client}:${lock}` -> tokens the history shows
  const windowTokens = new Map<string, Set<number>>(); // the same, for the ops in a window
  let inWindow = true;
  const addToken = (client: number, li: number, token: number): void => {
    for (const map of inWindow ? [tokens, windowTokens] : [tokens]) {
      const key = `${client}:${li}`;
      const set = map.get(key) ?? new Set<number>();
      set.add(token);
      map.set(key, set);
    }
  };
  for (const i of comp.ops) {
    const op = all[i] as HistoryOp;
    if (op.invokedMs > cutMs) continue;
    cid(op.client);
    // Answered after the cut: optional, but with the answer it got (see failingWindow).
    // (Or relaxed: while shrinking a failing window, an op that may or may not have happened.)
    const late = op.completedMs !== null && (op.completedMs > cutMs || relaxed?.has(i) === true);
    const cls = classify(op);
    // Ops that change nothing need not be placed when their answer is unknown or optional.
    if ((cls === 'unknown' || late) && (op.kind === 'check' || op.kind === 'read' || cls === 'refused')) continue;
    classified.push({ i, op, cls, late });
    inWindow = startMs === null || (op.completedMs ?? Infinity) >= startMs || cls === 'unknown' || late;
    const li = lockIdx.get(op.lock);
    if (li !== undefined && op.token !== undefined && op.kind !== 'check') addToken(cid(op.client), li, op.token);
    if (li !== undefined && op.kind === 'check' && cls === 'ok' && op.token !== undefined) {
      if (op.owner === undefined) addToken(cid(op.client), li, op.token);
      else if (op.owner !== null) addToken(cid(op.owner), li, op.token);
    }
  }

  // Grants whose release may come after an expiry: (client, lock, token).
  const mayHaveExpired = new Set<string>();
  for (const { op, cls } of classified) {
    if (isGrant(op) && cls === 'ok' && op.token !== undefined && (op.lost === true || op.lostMs !== undefined || options.anyGrantMayExpire === true)) {
      mayHaveExpired.add(`${op.client}\u0000${op.lock}\u0000${op.token}`);
    }
  }

  const free = (s: MState, li: number): MState[] => [setLock(s, li, -1, NaN, s.l[li] as number)];
  const holds = (s: MState, li: number, c: number, token: number | undefined): boolean => s.o[li] === c && (token === undefined || s.t[li] === token);
  // Placing an optional op where it changes nothing only uses it up: never worth trying.
  const optional = (cop: COp): COp => ({ ...cop, ret: Infinity, step: (s) => cop.step(s).filter((next) => next.key !== s.key) });
  const push = (cop: COp, required: boolean): void => {
    if (required) req.push(cop);
    else opt.push(optional(cop));
  };
  const expiries = new Set<string>();

  for (const { i, op, cls, late } of classified) {
    const li = lockIdx.get(op.lock) as number;
    const c = cid(op.client);
    const call = op.invokedMs;
    const ret = op.completedMs ?? Infinity;
    const required = cls !== 'unknown' && !late;
    switch (op.kind) {
      case 'acquire':
      case 'preempt': {
        if (cls === 'refused') {
          push({ src: i, call, ret, step: (s) => (s.o[li] !== -1 && s.o[li] !== c ? [s] : []) }, true);
          break;
        }
        if (cls === 'ok' && op.token !== undefined) {
          const t = op.token;
          push({
            src: i, call, ret,
            step: (s) => {
              if (s.o[li] === c) return s.t[li] === t ? [s] : [];
              return s.o[li] === -1 && t > (s.l[li] as number) ? [setLock(s, li, c, t, t)] : [];
            },
          }, required);
          const grantKey = `${op.client}\u0000${op.lock}\u0000${t}`;
          if (mayHaveExpired.has(grantKey) && !expiries.has(grantKey)) {
            expiries.add(grantKey);
            const certain = op.lost === true && op.lostMs !== undefined && op.lostMs <= cutMs && op.lostReason !== undefined && SERVER_LOST.has(op.lostReason);
            push({ src: -1, call, ret: certain ? (op.lostMs as number) : Infinity, step: (s) => (holds(s, li, c, t) ? free(s, li) : []) }, certain);
          }
          break;
        }
        // Unknown outcome (or an ok without a token): a grant with one of the tokens this client
        // is seen using on this lock, or a fresh unnamed one (NaN, matching no recorded token).
        const candidates = [...(tokens.get(`${c}:${li}`) ?? [])].sort((a, b) => a - b);
        push({
          src: i, call, ret,
          step: (s) => {
            if (s.o[li] !== -1) return [];
            const last = s.l[li] as number;
            const next = candidates.filter((t) => t > last).map((t) => setLock(s, li, c, t, t));
            next.push(setLock(s, li, c, NaN, last));
            return next;
          },
        }, required);
        // The client never learned it holds this grant, so only its session's end frees it.
        push({ src: -1, call, ret: Infinity, step: (s) => (s.o[li] === c ? free(s, li) : []) }, false);
        break;
      }
      case 'release': {
        const t = op.token;
        if (cls === 'refused') {
          push({ src: i, call, ret, step: (s) => (holds(s, li, c, t) ? [] : [s]) }, true);
        } else if (cls === 'ok' && (options.anyGrantMayExpire === true || (t !== undefined && mayHaveExpired.has(`${op.client}\u0000${op.lock}\u0000${t}`)))) {
          push({ src: i, call, ret, step: (s) => (holds(s, li, c, t) ? free(s, li) : [s]) }, required);
        } else {
          push({ src: i, call, ret, step: (s) => (holds(s, li, c, t) ? free(s, li) : []) }, required);
        }
        break;
      }
      case 'append': {
        const t = op.token;
        const fi = fileIdx.get(op.file ?? op.lock) as number;
        const data = op.data ?? '';
        if (cls === 'refused') {
          push({ src: i, call, ret, step: (s) => (holds(s, li, c, t) ? [] : [s]) }, true);
        } else {
          push({
            src: i, call, ret,
            step: (s) => {
              if (!holds(s, li, c, t)) return [];
              const f = s.f.slice();
              f[fi] = trie.child(s.f[fi] as number, i, data);
              return [mkState(s.o, s.t, s.l, f)];
            },
          }, required);
        }
        break;
      }
      case 'check': {
        const t = op.token;
        if (cls === 'refused') {
          push({ src: i, call, ret, step: (s) => (s.o[li] !== c ? [s] : []) }, true);
        } else if (op.owner === null) {
          push({ src: i, call, ret, step: (s) => (s.o[li] === -1 ? [s] : []) }, true);
        } else {
          const owner = op.owner === undefined ? c : cid(op.owner);
          push({ src: i, call, ret, step: (s) => (holds(s, li, owner, t) ? [s] : []) }, true);
        }
        break;
      }
      case 'read': {
        const fi = fileIdx.get(op.file ?? op.lock) as number;
        const data = op.data ?? '';
        push({ src: i, call, ret, step: (s) => (trie.reads(s.f[fi] as number, data, i) ? [s] : []) }, true);
        break;
      }
    }
  }
  if (cutMs === Infinity) {
    comp.finalFiles.forEach(([file, content], k) => {
      const fi = fileIdx.get(file) as number;
      push({ src: -1, call: Number.MAX_VALUE, ret: Infinity, step: (s) => (trie.reads(s.f[fi] as number, content, -1 - k) ? [s] : []) }, true);
    });
  }

  let init: MState[];
  const byCall = (a: COp, b: COp): number => a.call - b.call;
  if (startMs === null) {
    init = [mkState(comp.locks.map(() => -1), comp.locks.map(() => NaN), comp.locks.map(() => -Infinity), comp.files.map(() => 0))];
  } else {
    // Required ops invoked before the window: those answered before it took effect before all of
    // its ops (their effect is in the start state); those still in flight may take effect in it.
    const kept = req.filter((cop) => cop.call >= startMs);
    for (const cop of req) if (cop.call < startMs && cop.ret >= startMs) opt.push(optional(cop));
    req.length = 0;
    req.push(...kept);
    // Any state the ops before the window can leave: free, or held by a client that asked for a
    // grant before it (one of the window's clients, or an outsider), with any token.
    const askedBefore = new Set<number>();
    for (const { op, cls } of classified) if (isGrant(op) && cls !== 'refused' && op.invokedMs < startMs) askedBefore.add(cid(op.client));
    // A token is only ever compared with the tokens the window shows for the same client, so
    // those and "some other token" (NaN, with the most permissive lastToken) cover every case.
    let states = [mkState([], [], [], comp.files.map(() => 1))];
    comp.locks.forEach((_, li) => {
      const next: MState[] = [];
      for (const s of states) {
        const grow = (o: number, t: number, l: number): void => {
          next.push(mkState([...s.o, o], [...s.t, t], [...s.l, l], s.f));
        };
        grow(-1, NaN, -Infinity);
        for (let owner = -2; owner < clients.size; owner++) {
          if (owner === -1 || (owner >= 0 && !askedBefore.has(owner))) continue;
          grow(owner, NaN, -Infinity);
          for (const t of windowTokens.get(`${owner}:${li}`) ?? []) grow(owner, t, t);
        }
      }
      states = next;
    });
    init = states;
  }
  req.sort(byCall);
  opt.sort(byCall);
  return { req, opt, init };
}

interface SearchResult {
  outcome: Outcome;
  /** Configurations explored. */
  configurations: number;
  /** The most required ops (by invocation order) ever linearized as a prefix. */
  deepest: number;
}

/** Wing & Gong search with memoisation over one compiled component. */
function search(compiled: Compiled, deadline: number, maxConfigurations: number): SearchResult {
  const { req, opt, init } = compiled;
  const linReq = new Uint8Array(req.length);
  const linOpt = new Uint8Array(opt.length);
  const optTaken: number[] = [];
  let p = 0;
  const seen = new Set<string>();
  let steps = 0;
  let deepest = 0;
  const count = (outcome: Outcome): SearchResult => ({ outcome, configurations: seen.size, deepest });

  interface Move { required: boolean; idx: number; state: MState }
  interface Frame { moves: Move[]; next: number; via: Move | null; oldP: number }

  const expand = (s: MState): Move[] | 'done' | null => {
    if (p === req.length) return 'done';
    const head = req[p] as COp;
    let key = `${p}`;
    for (let i = p + 1; i < req.length && (req[i] as COp).call <= head.ret; i++) if (linReq[i] === 1) key += `,${i}`;
    if (optTaken.length > 0) key += `|${optTaken.join(',')}`;
    key += `|${s.key}`;
    if (seen.has(key)) return null;
    seen.add(key);
    // Candidates: pending ops invoked no later than the earliest answer among pending required ops.
    let minRet = Infinity;
    const scanned: number[] = [];
    for (let i = p; i < req.length && (req[i] as COp).call <= minRet; i++) {
      if (linReq[i] === 1) continue;
      scanned.push(i);
      minRet = Math.min(minRet, (req[i] as COp).ret);
    }
    const moves: Move[] = [];
    for (const i of scanned) {
      const cop = req[i] as COp;
      if (cop.call > minRet) break;
      for (const state of cop.step(s)) moves.push({ required: true, idx: i, state });
    }
    for (let j = 0; j < opt.length && (opt[j] as COp).call <= minRet; j++) {
      if (linOpt[j] === 1) continue;
      for (const state of (opt[j] as COp).step(s)) moves.push({ required: false, idx: j, state });
    }
    return moves;
  };
  const apply = (m: Move): number => {
    const oldP = p;
    if (m.required) {
      linReq[m.idx] = 1;
      while (p < req.length && linReq[p] === 1) p++;
      if (p > deepest) deepest = p;
    } else {
      linOpt[m.idx] = 1;
      let at = optTaken.length;
      while (at > 0 && (optTaken[at - 1] as number) > m.idx) at--;
      optTaken.splice(at, 0, m.idx); // kept sorted: it is part of the memo key
    }
    return oldP;
  };
  const undo = (m: Move, oldP: number): void => {
    if (m.required) linReq[m.idx] = 0;
    else {
      linOpt[m.idx] = 0;
      optTaken.splice(optTaken.indexOf(m.idx), 1);
    }
    p = oldP;
  };

  for (const s0 of init) {
    const first = expand(s0);
    if (first === 'done') return count('ok');
    if (first === null) continue;
    const frames: Frame[] = [{ moves: first, next: 0, via: null, oldP: p }];
    while (frames.length > 0) {
      if ((++steps & 255) === 0 && (performance.now() > deadline || seen.size > maxConfigurations)) return count('unknown');
      const frame = frames[frames.length - 1] as Frame;
      if (frame.next >= frame.moves.length) {
        frames.pop();
        if (frame.via !== null) undo(frame.via, frame.oldP);
        continue;
      }
      const move = frame.moves[frame.next++] as Move;
      const oldP = apply(move);
      const moves = expand(move.state);
      if (moves === 'done') return count('ok');
      if (moves === null) {
        undo(move, oldP);
        continue;
      }
      frames.push({ moves, next: 0, via: move, oldP });
    }
  }
  return count('violation');
}

function describe(op: HistoryOp, i: number): string {
  const token = op.token === undefined ? '' : ` t=${op.token}`;
  const extra = op.kind === 'check' && op.owner !== undefined ? ` owner=${op.owner}` : op.data !== undefined ? ` ${JSON.stringify(op.data)}` : '';
  const result = op.completedMs === null ? 'pending' : op.ok ? 'ok' : op.code ?? 'failed';
  return `#${i} ${op.client} ${op.kind}${token}${extra} -> ${result} [${fmt(op.invokedMs)}, ${op.completedMs === null ? '...' : fmt(op.completedMs)}]`;
}

/**
 * The largest index in [lo, hi] at which `fails` holds, given that it holds at `lo` and is
 * monotone (true up to some index, false after). Gallops from `from` first: violations are
 * local, so the answer is usually near where the search got stuck, and probes near it are cheap.
 */
function lastTrue(lo: number, hi: number, from: number, fails: (k: number) => boolean): number {
  let good = lo; // known true
  let bad = hi + 1; // known false (or out of range)
  const k = Math.max(lo, Math.min(hi, from));
  if (k > lo && fails(k)) {
    good = k;
    for (let step = 1; good + step < bad; step *= 2) {
      if (fails(good + step)) good += step;
      else bad = good + step;
    }
  } else if (k > lo) {
    bad = k;
    for (let step = 1; bad - step > good; step *= 2) {
      if (fails(bad - step)) good = bad - step;
      else bad -= step;
    }
  }
  while (bad - good > 1) {
    const mid = good + ((bad - good) >> 1);
    if (fails(mid)) good = mid;
    else bad = mid;
  }
  return good;
}

/** Shrinks a known violation of one component to a minimal window, as far as the deadline allows. */
function failingWindow(all: readonly HistoryOp[], comp: Component, options: LinearizabilityOptions, deadline: number, maxConf: number, deepest: COp | undefined): FailingWindow {
  const times = new Set<number>();
  for (const i of comp.ops) {
    const op = all[i] as HistoryOp;
    times.add(op.invokedMs);
    if (op.completedMs !== null) times.add(op.completedMs);
  }
  // Cuts in descending order, Infinity (the whole history, known to fail) first.
  const cuts = [Infinity, ...[...times].sort((a, b) => b - a)];
  const proven = (r: SearchResult): boolean => r.outcome === 'violation';
  const inTime = (): boolean => performance.now() < deadline;
  // End: the earliest cut that already fails = the last failing one in descending order. Start
  // looking where the full search got stuck.
  const hint = deepest === undefined ? 0 : Math.max(0, cuts.findIndex((t) => t <= deepest.ret));
  const endAt = lastTrue(0, cuts.length - 1, hint, (k) => inTime() && proven(search(compile(all, comp, options, cuts[k] as number, null), deadline, maxConf)));
  const cutMs = cuts[endAt] as number;
  // Start: the latest cut from which, started in any state, it still fails.
  const starts = [-Infinity, ...new Set(comp.ops.map((i) => (all[i] as HistoryOp).invokedMs).filter((t) => t <= cutMs).sort((x, y) => x - y))];
  let startMs = -Infinity;
  if (comp.locks.length === 1) {
    const at = lastTrue(0, starts.length - 1, starts.length - 1, (k) => inTime() && proven(search(compile(all, comp, options, cutMs, starts[k] as number), deadline, maxConf)));
    startMs = starts[at] as number;
  }
  const ops = comp.ops.filter((i) => {
    const op = all[i] as HistoryOp;
    return op.invokedMs >= startMs && op.invokedMs <= cutMs;
  });
  // Core: relax the window's ops (latest first; in halves, then quarters, ... then one by one),
  // keeping each relaxation that still fails. Relaxing only widens what is allowed, so what is
  // left is still a proven violation.
  const relaxed = new Set<number>();
  const start = Number.isFinite(startMs) ? startMs : null;
  const order = [...ops].reverse();
  for (let size = Math.max(1, order.length >> 1); inTime(); size >>= 1) {
    for (let from = 0; from < order.length && inTime(); from += size) {
      const group = order.slice(from, from + size).filter((i) => !relaxed.has(i));
      if (group.length === 0) continue;
      for (const i of group) relaxed.add(i);
      if (!proven(search(compile(all, comp, options, cutMs, start, relaxed), deadline, maxConf))) for (const i of group) relaxed.delete(i);
    }
    if (size === 1) break;
  }
  const core = ops.filter((i) => {
    const op = all[i] as HistoryOp;
    return !relaxed.has(i) && op.completedMs !== null && op.completedMs <= cutMs && classify(op) !== 'unknown';
  });
  const first = ops.length > 0 ? (all[ops[0] as number] as HistoryOp).invokedMs : 0;
  return { lock: comp.name, fromMs: Number.isFinite(startMs) ? startMs : first, toMs: cutMs, ops, core };
}

/**
 * Is the history linearizable against the one-lock model above, lock by lock? 'unknown' when the
 * budget runs out before an answer (never 'ok' then). `ok` in the result is false only for a
 * proven violation; read `verdict` to tell 'ok' from 'unknown'.
 */
export function checkLinearizable(ops: readonly HistoryOp[], options: LinearizabilityOptions): LinearizabilityResult {
  const name = 'linearizable';
  const started = performance.now();
  const deadline = started + Math.max(0, options.budgetMs);
  const maxConf = options.maxConfigurations ?? 2_000_000;
  const comps = components(ops, options.finalFiles).sort((a, b) => a.ops.length - b.ops.length);
  const results = new Map<Component, { outcome: Outcome; configurations: number; stuckAt?: COp }>();
  // Small components first; each gets a share of what is left in proportion to its size, and the
  // ones that ran out get a second try with whatever the others left.
  for (let round = 0; round < 2; round++) {
    const todo = comps.filter((c) => results.get(c) === undefined || (round === 1 && results.get(c)?.outcome === 'unknown'));
    let sizeLeft = todo.reduce((n, c) => n + c.ops.length + 1, 0);
    for (const comp of todo) {
      const now = performance.now();
      const share = round === 0 ? ((deadline - now) * (comp.ops.length + 1)) / sizeLeft : deadline - now;
      sizeLeft -= comp.ops.length + 1;
      if (now >= deadline) {
        results.set(comp, { outcome: 'unknown', configurations: 0 });
        continue;
      }
      const compiled = compile(ops, comp, options, Infinity, null);
      const r = search(compiled, now + share, maxConf);
      results.set(comp, { outcome: r.outcome, configurations: r.configurations, stuckAt: compiled.req[r.deepest] });
    }
    if (performance.now() >= deadline) break;
  }
  const locks: LockVerdict[] = comps.map((comp) => {
    const r = results.get(comp) ?? { outcome: 'unknown' as const, configurations: 0 };
    return {
      lock: comp.name,
      verdict: r.outcome,
      ops: comp.ops.length,
      configurations: r.configurations,
      detail: r.outcome !== 'unknown' ? '' : r.configurations > maxConf ? `gave up after ${r.configurations} configurations` : 'the time budget ran out',
    };
  });
  const failed = comps.find((c) => results.get(c)?.outcome === 'violation');
  if (failed !== undefined) {
    const window = failingWindow(ops, failed, options, deadline, maxConf, results.get(failed)?.stuckAt);
    const listed = window.core.slice(0, 12).map((i) => describe(ops[i] as HistoryOp, i));
    if (window.core.length > listed.length) listed.push(`... ${window.core.length - listed.length} more`);
    const until = Number.isFinite(window.toMs) ? `${fmt(window.toMs)} ms` : 'the end (final file contents)';
    const detail = `${failed.name}: not linearizable; failing window ${fmt(window.fromMs)} ms .. ${until} (${window.ops.length} ops), `
      + `where these cannot all be explained: ${listed.join('; ')}${Number.isFinite(window.toMs) ? '' : '; and the final file contents'}`;
    const lockVerdict = locks.find((l) => l.lock === failed.name);
    if (lockVerdict !== undefined) lockVerdict.detail = detail;
    return { name, ok: false, verdict: 'violation', detail, locks, window };
  }
  const unknown = locks.filter((l) => l.verdict === 'unknown');
  const elapsed = performance.now() - started;
  if (unknown.length > 0) {
    return {
      name, ok: true, verdict: 'unknown', locks,
      detail: `unknown: within the ${fmt(options.budgetMs)} ms budget, no verdict on ${unknown.map((l) => `${l.lock} (${l.ops} ops: ${l.detail})`).join(', ')}; ${locks.length - unknown.length} other locks linearizable`,
    };
  }
  return { name, ok: true, verdict: 'ok', locks, detail: `${locks.length} locks, ${ops.length} ops, linearizable (${fmt(elapsed)} ms)` };
}
