// Checks a recorded history against what the contract promises. It only flags what the
// acknowledged answers prove: a client certainly held a lock from the moment its grant was
// answered until the moment it asked to release it (or until its last acknowledged guarded
// append, whichever is later); two such intervals of different clients on one lock that overlap
// are a mutual-exclusion violation.
import type { HistoryOp } from './history';

export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
}

interface Hold {
  client: string;
  lock: string;
  token: number;
  fromMs: number;
  toMs: number;
}

/** Certain hold intervals: grant answered -> release invoked (or the run's end if never released). */
export function holdIntervals(ops: readonly HistoryOp[], endMs: number): Hold[] {
  const holds: Hold[] = [];
  const open = new Map<string, Hold>();
  const sorted = [...ops].sort((a, b) => a.invokedMs - b.invokedMs);
  for (const op of sorted) {
    const key = `${op.client}\u0000${op.lock}`;
    if ((op.kind === 'acquire' || op.kind === 'preempt') && op.ok && op.token !== undefined && op.completedMs !== null) {
      if (open.has(key)) continue; // a re-take of a lock it holds: same grant
      const hold = { client: op.client, lock: op.lock, token: op.token, fromMs: op.completedMs, toMs: endMs };
      open.set(key, hold);
      holds.push(hold);
    } else if (op.kind === 'release') {
      const hold = open.get(key);
      if (hold !== undefined) {
        hold.toMs = Math.max(hold.fromMs, op.invokedMs);
        open.delete(key);
      }
    }
  }
  return holds;
}

export function checkMutualExclusion(ops: readonly HistoryOp[], endMs: number, lostTokens: ReadonlySet<number> = new Set()): CheckResult {
  // A grant the client was told it lost (expiry) is not held after that point; the runner
  // passes those tokens so their intervals are cut at the acknowledged appends instead.
  const holds = holdIntervals(ops, endMs).map((hold) => (lostTokens.has(hold.token) ? lastProvenUse(ops, hold) : hold));
  const byLock = new Map<string, Hold[]>();
  for (const hold of holds) {
    const list = byLock.get(hold.lock) ?? [];
    list.push(hold);
    byLock.set(hold.lock, list);
  }
  for (const [lock, list] of byLock) {
    list.sort((a, b) => a.fromMs - b.fromMs);
    for (let i = 1; i < list.length; i++) {
      const a = list[i - 1] as Hold;
      const b = list[i] as Hold;
      if (a.client !== b.client && b.fromMs < a.toMs) {
        return { name: 'mutual exclusion', ok: false, detail: `${lock}: ${a.client} (token ${a.token}) held until ${a.toMs.toFixed(1)} ms but ${b.client} (token ${b.token}) was granted at ${b.fromMs.toFixed(1)} ms` };
      }
    }
  }
  return { name: 'mutual exclusion', ok: true, detail: `${holds.length} holds on ${byLock.size} locks, none overlapping` };
}

function lastProvenUse(ops: readonly HistoryOp[], hold: Hold): Hold {
  let toMs = hold.fromMs;
  for (const op of ops) {
    if (op.kind === 'append' && op.ok && op.token === hold.token && op.lock === hold.lock && op.completedMs !== null) {
      toMs = Math.max(toMs, op.invokedMs);
    }
  }
  return { ...hold, toMs };
}

/** Fencing tokens: grants of one lock, in the order their certain holds begin, carry strictly
 *  increasing tokens. */
export function checkTokensIncrease(ops: readonly HistoryOp[], endMs: number): CheckResult {
  const byLock = new Map<string, Hold[]>();
  for (const hold of holdIntervals(ops, endMs)) {
    const list = byLock.get(hold.lock) ?? [];
    list.push(hold);
    byLock.set(hold.lock, list);
  }
  let grants = 0;
  for (const [lock, list] of byLock) {
    list.sort((a, b) => a.fromMs - b.fromMs);
    grants += list.length;
    for (let i = 1; i < list.length; i++) {
      const a = list[i - 1] as Hold;
      const b = list[i] as Hold;
      // Only holds that are ordered in real time (a ended before b began) must be ordered by token.
      if (a.toMs <= b.fromMs && a.token >= b.token && a.client !== b.client) {
        return { name: 'tokens increase', ok: false, detail: `${lock}: token ${b.token} granted after token ${a.token}` };
      }
    }
  }
  return { name: 'tokens increase', ok: true, detail: `${grants} grants` };
}

/** Every acknowledged append is in the final file exactly once, in an order consistent with
 *  the tokens that wrote them. Appended data must be unique per append (the runner makes it so). */
export function checkAppends(ops: readonly HistoryOp[], finalFiles: ReadonlyMap<string, string>): CheckResult {
  const acked = ops.filter((op) => op.kind === 'append' && op.ok);
  let checked = 0;
  const lastByFile = new Map<string, { at: number; token: number }>();
  const positioned = acked
    .map((op) => {
      const content = finalFiles.get(op.file ?? op.lock) ?? '';
      const data = op.data ?? '';
      const at = content.indexOf(data);
      const again = at < 0 ? -1 : content.indexOf(data, at + data.length);
      return { op, at, again };
    })
    .sort((a, b) => a.at - b.at);
  for (const { op, at, again } of positioned) {
    const file = op.file ?? op.lock;
    if (at < 0) return { name: 'acknowledged appends', ok: false, detail: `${file}: acknowledged append ${JSON.stringify(op.data)} is missing` };
    if (again >= 0) return { name: 'acknowledged appends', ok: false, detail: `${file}: ${JSON.stringify(op.data)} was written twice` };
    const last = lastByFile.get(file);
    if (last !== undefined && op.token !== undefined && op.token < last.token) {
      return { name: 'acknowledged appends', ok: false, detail: `${file}: data of token ${op.token} stands after data of token ${last.token}` };
    }
    lastByFile.set(file, { at, token: op.token ?? 0 });
    checked++;
  }
  return { name: 'acknowledged appends', ok: true, detail: `${checked} acknowledged appends, each exactly once and in token order` };
}
