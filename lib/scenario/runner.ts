// Runs one scenario: a fresh local cluster of real node processes, simulated clients using
// LockClient, a recorded history, and the checker's verdicts.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Prng } from '../core/prng';
import { LockClient } from '../client/client';
import { LatchkeyError } from '../protocol/errors';
import { checkAppends, checkMutualExclusion, checkTokensIncrease, type CheckResult } from './checker';
import { History, type HistoryOp } from './history';
import { startNodeProcess, type NodeProcess } from './node-process';
import type { ClientGroup, ScenarioSpec } from './spec';

export interface ScenarioReport {
  name: string;
  ok: boolean;
  durationMs: number;
  ops: number;
  errors: Record<string, number>;
  handoffs: number;
  checks: CheckResult[];
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function codeOf(err: unknown): string {
  return err instanceof LatchkeyError ? err.code : 'client_error';
}

async function runClient(group: ClientGroup, clientName: string, servers: string[], history: History, rng: Prng): Promise<void> {
  const client = new LockClient({ servers, clientId: clientName });
  try {
    for (let i = 0; i < group.iterations; i++) {
      const take = history.invoke(clientName, group.loop === 'acquire-append-release' ? 'acquire' : 'preempt', group.lock);
      let lock;
      try {
        lock = group.loop === 'acquire-append-release'
          ? await client.acquire(group.lock, group.timeoutMs === undefined ? {} : { timeoutMs: group.timeoutMs })
          : await client.preempt(group.lock);
        history.complete(take, { ok: true, token: lock.token });
      } catch (err) {
        history.complete(take, { ok: false, code: codeOf(err) });
        await sleep(rng.int(group.thinkMs[0], group.thinkMs[1]));
        continue;
      }
      if (group.loop === 'acquire-append-release') {
        const data = `${clientName}#${i}@${lock.token}\n`;
        const op = history.invoke(clientName, 'append', group.lock, { token: lock.token, data, file: group.lock });
        try {
          await client.append(lock, data);
          history.complete(op, { ok: true });
        } catch (err) {
          history.complete(op, { ok: false, code: codeOf(err) });
        }
      } else {
        const op = history.invoke(clientName, 'check', group.lock);
        try {
          const state = await client.check(group.lock);
          history.complete(op, state.owner === clientName ? { ok: true } : { ok: false, code: 'check_mismatch' });
        } catch (err) {
          history.complete(op, { ok: false, code: codeOf(err) });
        }
      }
      await sleep(rng.int(group.holdMs[0], group.holdMs[1]));
      const rel = history.invoke(clientName, 'release', group.lock, { token: lock.token });
      try {
        await lock.release();
        history.complete(rel, { ok: true });
      } catch (err) {
        history.complete(rel, { ok: false, code: codeOf(err) });
      }
      await sleep(rng.int(group.thinkMs[0], group.thinkMs[1]));
    }
  } finally {
    await client.close().catch(() => undefined);
  }
}

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

export async function runScenario(spec: ScenarioSpec, options: { seed: number; onProgress?: (line: string) => void }): Promise<ScenarioReport> {
  const started = performance.now();
  const dataRoot = await fs.mkdtemp(path.join(os.tmpdir(), `latchkey-scenario-${spec.name}-`));
  const nodes: NodeProcess[] = [];
  const checks: CheckResult[] = [];
  const history = new History(() => performance.now());
  const progress = options.onProgress ?? (() => undefined);
  try {
    // Until replication lands a "cluster" is one node (PROTOCOL's 3 nodes come with issue 3).
    const ttlArgs = spec.cluster.sessionTtlMs === undefined ? [] : ['--session-ttl-ms', String(spec.cluster.sessionTtlMs)];
    progress(`${spec.name}: starting 1 node`);
    nodes.push(await startNodeProcess({ id: 'n1', dataDir: path.join(dataRoot, 'n1'), args: ttlArgs }));
    const servers = nodes.map((n) => `127.0.0.1:${n.port}`);
    const rng = new Prng(options.seed);
    const runs: Promise<void>[] = [];
    let n = 0;
    for (const group of spec.clients) {
      for (let i = 0; i < group.count; i++) {
        n++;
        runs.push(runClient(group, `${spec.name}-c${n}`, servers, history, new Prng(rng.int(0, 2 ** 31))));
      }
    }
    progress(`${spec.name}: ${n} clients running`);
    let limitTimer: NodeJS.Timeout | undefined;
    const limit = new Promise<'timeout'>((resolve) => { limitTimer = setTimeout(() => resolve('timeout'), spec.timeLimitS * 1000); });
    const outcome = await Promise.race([Promise.all(runs).then(() => 'done' as const), limit]);
    clearTimeout(limitTimer);
    const endMs = history.elapsedMs();
    if (outcome === 'timeout') {
      checks.push({ name: 'finished in time', ok: false, detail: `still running after ${spec.timeLimitS} s` });
    } else {
      checks.push({ name: 'finished in time', ok: true, detail: `${(endMs / 1000).toFixed(1)} s` });
    }
    // Read the final files through a fresh client.
    const files = new Map<string, string>();
    const reader = new LockClient({ servers });
    try {
      for (const lock of new Set(spec.clients.map((g) => g.lock))) files.set(lock, await reader.read(lock));
    } finally {
      await reader.close().catch(() => undefined);
    }
    checks.push(checkMutualExclusion(history.ops, endMs));
    checks.push(checkTokensIncrease(history.ops, endMs));
    checks.push(checkAppends(history.ops, files));
    const checkMismatches = history.ops.filter((op) => op.code === 'check_mismatch').length;
    checks.push({ name: 'holder sees itself in check', ok: checkMismatches === 0, detail: `${checkMismatches} mismatches` });
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
    await fs.rm(dataRoot, { recursive: true, force: true });
  }
  const errors: Record<string, number> = {};
  for (const op of history.ops) if (!op.ok && op.code !== undefined) errors[op.code] = (errors[op.code] ?? 0) + 1;
  return {
    name: spec.name,
    ok: checks.every((c) => c.ok),
    durationMs: performance.now() - started,
    ops: history.ops.length,
    errors,
    handoffs: countHandoffs(history.ops),
    checks,
  };
}
