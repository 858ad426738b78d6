// One simulated run from one seed (TigerBeetle's src/vopr.zig): draw the options, boot the
// cluster and the clients, run the safety phase with faults, then the liveness phase without
// them, and demand convergence; finally check that everything acknowledged is in the state.
import { AssertionError } from '../core/assert';
import { encodeSnapshot } from '../locks/snapshot';
import { deriveSeed, SimFailure, type FailureKind } from './failure';
import { describeOptions, swarmOptions, type SimOptions, type SwarmOverrides } from './options';
import { SimClient } from './sim-clients';
import { SimCluster } from './sim-cluster';

export interface RunOptions extends SwarmOverrides {
  /** Receives one line per notable event (faults, boots, client answers). */
  log?: (line: string) => void;
}

export interface RunStats {
  events: number;
  simulatedMs: number;
  crashes: number;
  stops: number;
  restarts: number;
  tornPersists: number;
  persists: number;
  snapshotsTaken: number;
  snapshotsInstalled: number;
  messages: number;
  dropped: number;
  partitions: number;
  leaders: number;
  committed: number;
  clientOps: number;
  unavailable: number;
  sessionsLost: number;
  stateCompares: number;
  readsChecked: number;
}

export interface RunResult {
  seed: number;
  ok: boolean;
  failure?: { kind: FailureKind; message: string; step: number; atMs: number };
  stats: RunStats;
  /** Hash of the whole event trace: the same seed and options give the same hash. */
  traceHash: string;
  options: SimOptions;
}

export function runSeed(seed: number, runOptions: RunOptions = {}): RunResult {
  const options = swarmOptions(seed, runOptions);
  const cluster = new SimCluster(options, runOptions.log ?? null);
  cluster.note(`SEED=${seed}\n${describeOptions(options)}`);
  const clients: SimClient[] = [];
  let failure: RunResult['failure'];
  try {
    cluster.bootAll();
    for (let i = 0; i < options.clientCount; i++) {
      const client = new SimClient(cluster, `c${i + 1}`, deriveSeed(seed, 100 + i), i % options.nodeCount);
      clients.push(client);
      cluster.participants.push(client);
      client.start();
    }
    cluster.startFaults();
    cluster.runUntil(options.safetyMs);
    cluster.startLiveness();
    cluster.awaitConvergence(options.safetyMs + options.livenessMs);
    cluster.phase = 'done';
    cluster.checker.finalCheck(cluster.nodes, clients.flatMap((c) => c.ackedAppends));
    cluster.trace.add(encodeSnapshot(cluster.checker.ref));
  } catch (err) {
    failure = { kind: classify(err), message: describeError(err), step: cluster.stats.events, atMs: cluster.now };
    cluster.note(`FAILED (${failure.kind}) at step ${failure.step}: ${failure.message}`);
  }
  const n = cluster.network.stats;
  const c = cluster.checker.stats;
  const sum = (f: (client: SimClient) => number): number => clients.reduce((acc, client) => acc + f(client), 0);
  const stats: RunStats = {
    events: cluster.stats.events,
    simulatedMs: Math.round(cluster.now),
    crashes: cluster.stats.crashes,
    stops: cluster.stats.stops,
    restarts: cluster.stats.restarts,
    tornPersists: cluster.stats.tornPersists,
    persists: cluster.stats.persists,
    snapshotsTaken: cluster.stats.snapshotsTaken,
    snapshotsInstalled: cluster.stats.snapshotsInstalled,
    messages: n.sent,
    dropped: n.dropped + n.cutOff,
    partitions: n.partitions,
    leaders: c.leaders,
    committed: c.committed,
    clientOps: sum((x) => x.stats.completed),
    unavailable: sum((x) => x.stats.unavailable),
    sessionsLost: sum((x) => x.stats.sessionsLost),
    stateCompares: c.stateCompares + c.snapshotCompares,
    readsChecked: c.readsChecked,
  };
  const result: RunResult = { seed, ok: failure === undefined, stats, traceHash: cluster.trace.hex(), options };
  if (failure !== undefined) result.failure = failure;
  return result;
}

function classify(err: unknown): FailureKind {
  if (err instanceof SimFailure) return err.kind;
  return 'crash';
}

function describeError(err: unknown): string {
  if (err instanceof SimFailure) return err.message;
  if (err instanceof AssertionError) return `assertion failed: ${err.message}\n${stackHead(err)}`;
  if (err instanceof Error) return `${err.name}: ${err.message}\n${stackHead(err)}`;
  return String(err);
}

function stackHead(err: Error): string {
  return (err.stack ?? '').split('\n').slice(1, 7).join('\n');
}
