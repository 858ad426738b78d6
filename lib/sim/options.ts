// Everything a simulated run varies, drawn from its one seed (TigerBeetle's `options_swarm`):
// cluster size and timing, network and disk faults, crash and partition rates, the workload.
// Each seed thus tests a different mix, and the fault rates are printed with `SEED=` so a
// failing run can be read as well as replayed.
import { Prng } from '../core/prng';
import type { NetworkOptions } from './sim-network';
import { deriveSeed } from './failure';

export interface BrokenRules {
  voteForStaleLog?: boolean;
  commitOlderTermByCount?: boolean;
}

export interface SimOptions {
  seed: number;
  nodeCount: number;
  heartbeatMs: number;
  electionTimeoutMs: number;
  snapshotEveryEntries: number;
  entriesPerAppendMax: number;
  sessionTtlMs: number;
  clientCount: number;
  lockCount: number;
  network: NetworkOptions;
  persistMsMin: number;
  persistMsMax: number;
  slowPersistProbability: number;
  slowPersistMsMax: number;
  /** Crashes per node per simulated second during the safety phase. */
  crashRate: number;
  /** Of those crashes, the share that hit a node while it persists (torn writes). */
  crashInPersistProbability: number;
  restartMsMin: number;
  restartMsMax: number;
  /** Crashes of whoever is leader, per simulated second. */
  leaderCrashRate: number;
  /** Chance that a node that just became leader crashes within its first round trips: the
   *  window in which a new leader replicates (and may wrongly commit) entries of older terms
   *  (the Figure 8 scenario of the Raft paper). */
  newLeaderCrashProbability: number;
  /** Chance that a node that just became leader is cut off (isolated, messages in flight lost)
   *  within its first round trips: the same window, with nothing it sent arriving later; or
   *  its outbound network dies after its first few messages, for a while. */
  newLeaderIsolateProbability: number;
  /** A crash loses each message the node had sent that is still in flight with this chance (a
   *  machine crash loses the kernel's send buffers). */
  crashLosesInFlightProbability: number;
  /** Nodes cut off (both ways) on their own, per node per second; these overlap freely. */
  nodeIsolateRate: number;
  /** Chance that a leader is cut off the moment its commit index first moves in its term. */
  firstCommitIsolateProbability: number;
  /** Directed links going down on their own, per link per simulated second. */
  linkFlapRate: number;
  linkDownMsMax: number;
  /** Chance that a node crashes while it writes a snapshot it was sent (InstallSnapshot): the
   *  snapshot file, then the log reset, then the entries after it. */
  installCrashProbability: number;
  /** Clean stops (SIGTERM, then a restart), per node per simulated second. */
  stopRate: number;
  /** Chance per second that every node crashes at once (PROTOCOL: a restart of the whole cluster). */
  clusterCrashRate: number;
  /** Partitions started per simulated second while none is active. */
  partitionRate: number;
  partitionMsMin: number;
  partitionMsMax: number;
  /** Each boot's clock runs at 1 ± up to this. */
  clockDriftMax: number;
  /** How linearizable reads are confirmed (ReplicaConfig.readPath). */
  readPath: 'index' | 'log';
  safetyMs: number;
  livenessMs: number;
  /** A run with more events than this has a runaway loop (a message storm): it fails. */
  maxEvents: number;
  /** Model DiskLog.reset as it is (a crash part-way leaves a prefix of the old log). */
  tornReset: boolean;
  broken?: BrokenRules;
  // Sampling of the expensive checks (the cheap ones run on every event).
  encodeProbability: number;
  compareProbability: number;
  nodeInvariantsProbability: number;
}

export interface SwarmOverrides {
  nodeCount?: number;
  safetyMs?: number;
  livenessMs?: number;
  broken?: BrokenRules;
  /** Scale every fault rate (0 = no faults). */
  faultScale?: number;
  tornReset?: boolean;
  thorough?: boolean;
}

/** Draws one run's options from the seed. */
export function swarmOptions(seed: number, overrides: SwarmOverrides = {}): SimOptions {
  const prng = new Prng(deriveSeed(seed, 0));
  const scale = overrides.faultScale ?? 1;
  const nodeCount = overrides.nodeCount ?? (prng.chance(0.5) ? 3 : 5);
  const heartbeatMs = prng.pick([30, 50, 50, 50, 80]);
  const electionTimeoutMs = prng.pick([200, 300, 300, 300, 500]);
  const latencyMsMin = prng.pick([0.2, 1, 2, 5]);
  const broken = overrides.broken;
  const thorough = overrides.thorough ?? false;
  const options: SimOptions = {
    seed,
    nodeCount,
    heartbeatMs,
    electionTimeoutMs: Math.max(electionTimeoutMs, heartbeatMs * 4),
    snapshotEveryEntries: prng.pick([20, 50, 100, 200]),
    entriesPerAppendMax: prng.pick([1, 4, 16, 64, 4096]),
    sessionTtlMs: 3000,
    clientCount: prng.int(2, 6),
    lockCount: prng.int(1, 4),
    network: {
      latencyMsMin,
      latencyMsMax: latencyMsMin + prng.pick([1, 5, 10, 30]),
      dropProbability: scale * prng.pick([0, 0.01, 0.05, 0.1]),
      duplicateProbability: scale * prng.pick([0, 0.01, 0.05]),
      delayProbability: scale * prng.pick([0, 0.01, 0.05]),
      delayMsMax: prng.pick([50, 200, 1000]),
    },
    persistMsMin: prng.pick([0.1, 0.5, 1]),
    persistMsMax: prng.pick([1, 3, 10]),
    slowPersistProbability: prng.pick([0, 0.01, 0.05]),
    slowPersistMsMax: prng.pick([50, 200]),
    crashRate: scale * prng.pick([0, 0.05, 0.1, 0.3, 0.6]),
    crashInPersistProbability: prng.pick([0.2, 0.5, 0.9]),
    restartMsMin: 50,
    restartMsMax: prng.pick([300, 1000, 3000]),
    leaderCrashRate: scale * prng.pick([0, 0.1, 0.3, 0.6]),
    newLeaderCrashProbability: Math.min(1, scale * prng.pick([0, 0.1, 0.3, 0.6])),
    newLeaderIsolateProbability: Math.min(1, scale * prng.pick([0, 0.1, 0.3])),
    crashLosesInFlightProbability: prng.pick([0, 0.5, 1]),
    nodeIsolateRate: scale * prng.pick([0, 0.05, 0.2, 0.5]),
    firstCommitIsolateProbability: Math.min(1, scale * prng.pick([0, 0.1, 0.3])),
    linkFlapRate: scale * prng.pick([0, 0, 0.1, 0.3, 1]),
    linkDownMsMax: prng.pick([100, 500, 2000]),
    clusterCrashRate: scale * prng.pick([0, 0, 0.02, 0.05]),
    partitionRate: scale * prng.pick([0, 0.1, 0.3, 0.8]),
    partitionMsMin: 100,
    partitionMsMax: prng.pick([500, 1500, 4000]),
    clockDriftMax: prng.pick([0, 0.001, 0.01]),
    safetyMs: overrides.safetyMs ?? 20000,
    livenessMs: overrides.livenessMs ?? 30000,
    maxEvents: 50 * ((overrides.safetyMs ?? 20000) + (overrides.livenessMs ?? 30000)),
    tornReset: overrides.tornReset ?? true,
    stopRate: 0,
    readPath: 'index',
    installCrashProbability: 0,
    encodeProbability: thorough ? 0.2 : 0.03,
    compareProbability: thorough ? 1 : 0.25,
    nodeInvariantsProbability: thorough ? 1 : 0.1,
  };
  // Drawn last, so that adding them did not change what earlier seeds drew above.
  options.stopRate = scale * prng.pick([0, 0, 0.05, 0.2]);
  options.readPath = prng.chance(0.25) ? 'log' : 'index';
  options.installCrashProbability = Math.min(1, scale * prng.pick([0, 0.1, 0.3]));
  if (broken !== undefined) options.broken = broken;
  return options;
}

export function describeOptions(o: SimOptions): string {
  const n = o.network;
  const pct = (p: number): string => `${Math.round(p * 1000) / 10}%`;
  return [
    `nodes=${o.nodeCount} heartbeat_ms=${o.heartbeatMs} election_ms=${o.electionTimeoutMs} snapshot_every=${o.snapshotEveryEntries} append_max=${o.entriesPerAppendMax}`,
    `clients=${o.clientCount} locks=${o.lockCount} safety_ms=${o.safetyMs} liveness_ms=${o.livenessMs}`,
    `latency_ms=${n.latencyMsMin}..${n.latencyMsMax} drop=${pct(n.dropProbability)} duplicate=${pct(n.duplicateProbability)} delay=${pct(n.delayProbability)}(<=${n.delayMsMax}ms)`,
    `persist_ms=${o.persistMsMin}..${o.persistMsMax} slow=${pct(o.slowPersistProbability)}(<=${o.slowPersistMsMax}ms) crash/s=${o.crashRate} in_persist=${pct(o.crashInPersistProbability)} restart_ms<=${o.restartMsMax} leader_crash/s=${o.leaderCrashRate} new_leader_crash=${pct(o.newLeaderCrashProbability)} new_leader_isolate=${pct(o.newLeaderIsolateProbability)} crash_loses_in_flight=${pct(o.crashLosesInFlightProbability)} cluster_crash/s=${o.clusterCrashRate} stop/s=${o.stopRate} install_crash=${pct(o.installCrashProbability)}`,
    `partition/s=${o.partitionRate} partition_ms<=${o.partitionMsMax} node_isolate/s=${o.nodeIsolateRate} first_commit_isolate=${pct(o.firstCommitIsolateProbability)} link_flap/s=${o.linkFlapRate} link_down_ms<=${o.linkDownMsMax} drift=${o.clockDriftMax} torn_reset=${o.tornReset} read_path=${o.readPath}${o.broken === undefined ? '' : ` broken=${JSON.stringify(o.broken)}`}`,
  ].join('\n');
}
