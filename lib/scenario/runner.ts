// Runs one scenario: a fresh local cluster of real node processes (peer links through proxies
// so faults can cut them), simulated clients, a timeline of faults, then a liveness phase (heal,
// restart, converge) and the checker's verdicts on the recorded history.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { LockClient } from '../client/client';
import { Prng } from '../core/prng';
import { checkAppends, checkLinearizable, checkMutualExclusion, checkTokensIncrease, type CheckResult } from './checker';
import { runClient } from './clients';
import { startCluster, type Cluster, type ClusterEvent } from './cluster';
import { History, type HistoryOp } from './history';
import type { Fault, ScenarioSpec } from './spec';

export interface ScenarioReport {
  name: string;
  description: string;
  seed: number;
  ok: boolean;
  durationMs: number;
  ops: number;
  errors: Record<string, number>;
  grants: number;
  handoffs: number;
  leaderChanges: number;
  lost: number;
  checks: CheckResult[];
  /** For the timeline. */
  history: HistoryOp[];
  events: ClusterEvent[];
  endMs: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function countHandoffs(ops: readonly HistoryOp[]): number {
  const lastOwner = new Map<string, string>();
  let handoffs = 0;
  const grants = ops.filter((op) => (op.kind === 'acquire' || op.kind === 'preempt') && op.ok && op.token !== undefined)
    .sort((a, b) => (a.token ?? 0) - (b.token ?? 0));
  for (const op of grants) {
    const before = lastOwner.get(op.lock);
    if (before !== undefined && before !== op.client) handoffs++;
    lastOwner.set(op.lock, op.client);
  }
  return handoffs;
}

/** Leaders seen across the run, from the nodes' own role_changed logs (kept across restarts). */
function countLeaderChanges(cluster: Cluster): number {
  const leaders: { at: string; node: string; term: number }[] = [];
  for (const node of cluster.nodes) {
    for (const line of cluster.logs(node.id, 'role_changed')) {
      if (line['role'] === 'leader') leaders.push({ at: String(line['ts']), node: node.id, term: Number(line['term']) });
    }
  }
  const terms = new Set(leaders.map((l) => l.term));
  return Math.max(0, terms.size - 1);
}

async function runFaults(cluster: Cluster, faults: readonly Fault[], startedMs: number, stopped: () => boolean, progress: (s: string) => void): Promise<void> {
  let last: string | null = null;
  for (const fault of [...faults].sort((a, b) => a.atMs - b.atMs)) {
    const wait = fault.atMs - (performance.now() - startedMs);
    if (wait > 0) await sleep(wait);
    if (stopped()) return;
    const target = await resolveTarget(cluster, fault.target, last);
    progress(`fault at ${fault.atMs} ms: ${fault.action}${target === null ? '' : ` ${target}`}`);
    switch (fault.action) {
      case 'kill': await cluster.kill(target as string); break;
      case 'restart': await cluster.restart(target as string); break;
      case 'pause': cluster.pause(target as string); break;
      case 'resume': cluster.resume(target as string); break;
      case 'isolate': cluster.isolate(target as string); break;
      case 'heal': cluster.heal(); break;
      case 'kill-all': await Promise.all(cluster.ids.map((id) => cluster.kill(id))); break;
      case 'restart-all': await Promise.all(cluster.ids.map((id) => cluster.restart(id))); break;
      default: {
        const never: never = fault.action;
        throw new Error(`unknown fault ${String(never)}`);
      }
    }
    if (target !== null) last = target;
  }
}

async function resolveTarget(cluster: Cluster, target: string | undefined, last: string | null): Promise<string | null> {
  if (target === undefined) return null;
  if (target === 'last') return last;
  if (target === 'leader') return (await cluster.leader(15000)).id;
  if (target === 'follower') {
    const leader = (await cluster.leader(15000)).id;
    return cluster.ids.find((id) => id !== leader) ?? null;
  }
  return target;
}

/** Liveness phase: every node up, every link healed, one leader, all commit indexes equal. */
async function converge(cluster: Cluster): Promise<CheckResult> {
  cluster.heal();
  for (const node of cluster.nodes) {
    if (node.state === 'paused') cluster.resume(node.id);
    if (node.state === 'stopped') await cluster.restart(node.id);
  }
  const started = performance.now();
  const leader = await cluster.leader(20000);
  for (;;) {
    const statuses = await cluster.statuses(1000);
    const commits = new Set(statuses.map((s) => s.commit_index));
    if (statuses.length === cluster.nodes.length && commits.size === 1) break;
    if (performance.now() - started > 20000) {
      return { name: 'cluster converges', ok: false, detail: `commit indexes still differ: ${statuses.map((s) => `${s.node}=${s.commit_index}`).join(' ')}` };
    }
    await sleep(50);
  }
  return { name: 'cluster converges', ok: true, detail: `leader ${leader.id} (term ${leader.term}); every node at the same commit index after ${(performance.now() - started).toFixed(0)} ms` };
}

/** The cluster's fault events, plus every leader election from the nodes' own logs. */
function timelineEvents(cluster: Cluster, skip: number, baseWallMs: number): ClusterEvent[] {
  const events = cluster.events.slice(skip).filter((e) => e.kind !== 'leader');
  const seen = new Set<number>();
  for (const node of cluster.nodes) {
    for (const line of cluster.logs(node.id, 'role_changed')) {
      const term = Number(line['term']);
      const atMs = Date.parse(String(line['ts'])) - baseWallMs;
      if (line['role'] !== 'leader' || seen.has(term) || atMs < 0) continue;
      seen.add(term);
      events.push({ atMs, kind: 'leader', detail: `${node.id} term ${term}` });
    }
  }
  return events.sort((a, b) => a.atMs - b.atMs);
}

/** Every node's own copy (stale_ok) of each lock and file equals the leader's. */
async function checkReplicasAgree(cluster: Cluster, locks: string[]): Promise<{ check: CheckResult; files: Map<string, string> }> {
  const files = new Map<string, string>();
  const views: string[] = [];
  for (const node of cluster.nodes) {
    const client = new LockClient({ servers: [`127.0.0.1:${node.port}`], requestTimeoutMs: 5000 });
    try {
      const view: string[] = [];
      for (const lock of locks) {
        const state = await client.check(lock, { staleOk: true });
        const data = await client.read(lock, { staleOk: true });
        view.push(`${lock}:${state.owner}:${state.token}:${data}`);
        if (!files.has(lock)) files.set(lock, await client.read(lock));
      }
      views.push(view.join('|'));
    } finally {
      await client.close().catch(() => undefined);
    }
  }
  const agree = new Set(views).size === 1;
  return { check: { name: 'replicas agree', ok: agree, detail: agree ? `${cluster.nodes.length} nodes hold the same locks and files` : 'nodes differ in their locks or files' }, files };
}

function checkExpectations(spec: ScenarioSpec, report: { errors: Record<string, number>; leaderChanges: number; lost: number; grants: number }): CheckResult[] {
  const checks: CheckResult[] = [];
  const e = spec.expect;
  if (e.leaderChangesMin !== undefined) {
    checks.push({ name: 'leader changes', ok: report.leaderChanges >= e.leaderChangesMin, detail: `${report.leaderChanges} (at least ${e.leaderChangesMin})` });
  }
  for (const [code, min] of Object.entries(e.codesMin ?? {})) {
    const seen = report.errors[code] ?? 0;
    checks.push({ name: `${code} answers`, ok: seen >= min, detail: `${seen} (at least ${min})` });
  }
  if (e.lostMin !== undefined) checks.push({ name: 'lost events', ok: report.lost >= e.lostMin, detail: `${report.lost} (at least ${e.lostMin})` });
  if (e.grantsMin !== undefined) checks.push({ name: 'grants (liveness)', ok: report.grants >= e.grantsMin, detail: `${report.grants} (at least ${e.grantsMin})` });
  return checks;
}

/** A write with a token the guarded file should refuse (lease overrun) must never succeed. */
function checkStaleWritesRefused(ops: readonly HistoryOp[]): CheckResult | null {
  const late = ops.filter((op) => op.kind === 'append' && (op.data ?? '').endsWith('-late\n'));
  if (late.length === 0) return null;
  const accepted = late.filter((op) => op.ok);
  return {
    name: 'stale tokens refused',
    ok: accepted.length === 0,
    detail: accepted.length === 0 ? `${late.length} writes after the lease ran out, all refused (${[...new Set(late.map((op) => op.code))].join(', ')})` : `${accepted.length} writes with an expired grant were accepted`,
  };
}

export async function runScenario(spec: ScenarioSpec, options: { seed: number; onProgress?: (line: string) => void }): Promise<ScenarioReport> {
  const started = performance.now();
  const progress = options.onProgress ?? (() => undefined);
  const dataRoot = await fs.mkdtemp(path.join(os.tmpdir(), `latchkey-scenario-${spec.name}-`));
  const checks: CheckResult[] = [];
  // Time 0 of the timeline is when the cluster has a leader and the clients start.
  let baseMs = performance.now();
  const args: string[] = [];
  if (spec.cluster.sessionTtlMs !== undefined) args.push('--session-ttl-ms', String(spec.cluster.sessionTtlMs));
  if (spec.cluster.heartbeatMs !== undefined) args.push('--heartbeat-ms', String(spec.cluster.heartbeatMs));
  if (spec.cluster.electionTimeoutMs !== undefined) args.push('--election-timeout-ms', String(spec.cluster.electionTimeoutMs));
  if (spec.cluster.snapshotEvery !== undefined) args.push('--snapshot-every', String(spec.cluster.snapshotEvery));
  progress(`${spec.name}: starting ${spec.cluster.nodes} nodes`);
  const cluster = await startCluster({ nodes: spec.cluster.nodes, dataRoot, args, proxied: true, clock: () => performance.now() - baseMs });
  let history = new History(() => performance.now());
  let stopped = false;
  let opsDone = 0;
  try {
    const leader = await cluster.leader(15000);
    baseMs = performance.now();
    const baseWallMs = Date.now();
    const startupEvents = cluster.events.length;
    history = new History(() => performance.now());
    const rng = new Prng(options.seed);
    const runs: Promise<void>[] = [];
    let n = 0;
    for (const group of spec.clients) {
      for (let i = 0; i < group.count; i++) {
        n++;
        const name = `${spec.name}-c${n}`;
        const preferred = group.node === undefined || group.node === 'any' ? cluster.ids[(n - 1) % cluster.ids.length] as string
          : group.node === 'leader' ? leader.id
            : group.node === 'follower' ? cluster.ids.filter((id) => id !== leader.id)[(n - 1) % (cluster.ids.length - 1)] as string
              : group.node;
        const order = [preferred, ...(group.failover === false ? [] : cluster.ids.filter((id) => id !== preferred))];
        const servers = order.map((id) => `127.0.0.1:${cluster.node(id).port}`);
        const clientRng = new Prng(rng.int(0, 2 ** 31 - 1));
        runs.push(sleep(group.startMs ?? 0).then(() => runClient({
          name, group, servers, history, rng: clientRng, stopped: () => stopped, onOp: () => { opsDone++; },
        })));
      }
    }
    progress(`${spec.name}: ${n} clients running, ${spec.faults.length} faults scheduled`);
    const ticker = setInterval(() => progress(`${spec.name}: ${opsDone} ops, ${(history.elapsedMs() / 1000).toFixed(1)} s`), 2000);
    let limitTimer: NodeJS.Timeout | undefined;
    const limit = new Promise<'timeout'>((resolve) => { limitTimer = setTimeout(() => resolve('timeout'), spec.timeLimitS * 1000); });
    const faults = runFaults(cluster, spec.faults, baseMs, () => stopped, progress);
    const outcome = await Promise.race([Promise.all([Promise.all(runs), faults]).then(() => 'done' as const), limit]);
    clearTimeout(limitTimer);
    clearInterval(ticker);
    stopped = true;
    const endMs = history.elapsedMs();
    checks.push(outcome === 'done'
      ? { name: 'finished in time', ok: true, detail: `${(endMs / 1000).toFixed(1)} s (limit ${spec.timeLimitS} s)` }
      : { name: 'finished in time', ok: false, detail: `still running after ${spec.timeLimitS} s` });
    progress(`${spec.name}: converging`);
    checks.push(await converge(cluster));
    const locks = [...new Set(spec.clients.map((g) => g.lock))];
    const agree = await checkReplicasAgree(cluster, locks);
    checks.push(agree.check);
    progress(`${spec.name}: checking ${history.ops.length} ops`);
    checks.push(checkMutualExclusion(history.ops, endMs));
    checks.push(checkTokensIncrease(history.ops, endMs));
    checks.push(checkAppends(history.ops, agree.files));
    const stale = checkStaleWritesRefused(history.ops);
    if (stale !== null) checks.push(stale);
    const lin = checkLinearizable(history.ops, { budgetMs: 2000, finalFiles: agree.files });
    checks.push({ name: lin.name, ok: lin.verdict !== 'violation', detail: `${lin.verdict}: ${lin.detail}` });
    const errors: Record<string, number> = {};
    for (const op of history.ops) if (!op.ok && op.code !== undefined) errors[op.code] = (errors[op.code] ?? 0) + 1;
    const grants = history.ops.filter((op) => (op.kind === 'acquire' || op.kind === 'preempt') && op.ok).length;
    // Grants taken away by expiry, as the server said (lost event) or the client's own clock saw.
    const lost = history.ops.filter((op) => op.lost === true && op.lostReason !== 'crashed').length;
    const leaderChanges = countLeaderChanges(cluster);
    checks.push(...checkExpectations(spec, { errors, leaderChanges, lost, grants }));
    return {
      name: spec.name, description: spec.description, seed: options.seed, ok: checks.every((c) => c.ok),
      durationMs: performance.now() - started, ops: history.ops.length, errors, grants,
      handoffs: countHandoffs(history.ops), leaderChanges, lost, checks,
      history: history.ops, events: timelineEvents(cluster, startupEvents, baseWallMs), endMs,
    };
  } finally {
    stopped = true;
    await cluster.stop();
    await fs.rm(dataRoot, { recursive: true, force: true });
  }
}
