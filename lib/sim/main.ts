// The simulator's command line (TigerBeetle's `zig build vopr`):
//
//   npm run sim -- --seed 1234            one run, with its options and, on failure, its story
//   npm run sim -- --seeds 1000 [--from S] [--nodes 3|5] [--jobs 2] [--verbose]
//
// Every run prints `SEED=`; a failing one prints the one-line command that replays it exactly.
// The exit code says how the first failure failed: crash 127, liveness 128, correctness 129
// (0 when every seed passed, 2 for bad flags).
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { exitCodes } from './failure';
import { describeOptions, type BrokenRules } from './options';
import { runSeed, type RunOptions, type RunResult } from './run';

export { runSeed };
export type { RunOptions, RunResult };

interface Flags {
  seed: number | null;
  seeds: number;
  from: number | null;
  jobs: number;
  verbose: boolean;
  run: RunOptions;
  /** Flags to repeat in a replay command. */
  replay: string[];
}

function usage(message: string): never {
  process.stderr.write(`sim: ${message}\nusage: npm run sim -- [--seed S | --seeds N [--from S]] [--nodes 3|5] [--jobs N] [--safety-ms MS] [--liveness-ms MS] [--broken vote|commit] [--faults SCALE] [--no-torn-reset] [--thorough] [--verbose]\n`);
  process.exit(2);
}

function integer(name: string, value: string | undefined, min: number): number {
  const n = Number(value);
  if (value === undefined || !Number.isSafeInteger(n) || n < min) usage(`${name} must be an integer >= ${min}, got ${String(value)}`);
  return n;
}

export function parseFlags(argv: readonly string[]): Flags {
  const flags: Flags = { seed: null, seeds: 1, from: null, jobs: 1, verbose: false, run: {}, replay: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const value = (): string | undefined => argv[++i];
    switch (arg) {
      case '--seed': flags.seed = integer('--seed', value(), 0); break;
      case '--seeds': flags.seeds = integer('--seeds', value(), 1); break;
      case '--from': flags.from = integer('--from', value(), 0); break;
      case '--jobs': flags.jobs = integer('--jobs', value(), 1); break;
      case '--verbose': flags.verbose = true; break;
      case '--nodes': {
        const n = integer('--nodes', value(), 1);
        if (n !== 3 && n !== 5) usage('--nodes must be 3 or 5');
        flags.run.nodeCount = n;
        flags.replay.push('--nodes', String(n));
        break;
      }
      case '--safety-ms': flags.run.safetyMs = integer('--safety-ms', value(), 0); flags.replay.push(arg, String(flags.run.safetyMs)); break;
      case '--liveness-ms': flags.run.livenessMs = integer('--liveness-ms', value(), 1); flags.replay.push(arg, String(flags.run.livenessMs)); break;
      case '--faults': {
        const scale = Number(value());
        if (!Number.isFinite(scale) || scale < 0) usage('--faults must be a number >= 0');
        flags.run.faultScale = scale;
        flags.replay.push(arg, String(scale));
        break;
      }
      case '--broken': {
        const which = value();
        const broken: BrokenRules = which === 'vote' ? { voteForStaleLog: true } : which === 'commit' ? { commitOlderTermByCount: true } : usage('--broken must be vote or commit');
        flags.run.broken = broken;
        flags.replay.push(arg, which as string);
        break;
      }
      case '--no-torn-reset': flags.run.tornReset = false; flags.replay.push(arg); break;
      case '--thorough': flags.run.thorough = true; flags.replay.push(arg); break;
      default: usage(`unknown flag ${arg}`);
    }
  }
  return flags;
}

export function replayCommand(seed: number, replay: readonly string[]): string {
  return ['npm run sim -- --seed', String(seed), ...replay].join(' ');
}

function printFailure(result: RunResult, replay: readonly string[], withOptions = true): void {
  const f = result.failure;
  if (f === undefined) return;
  process.stdout.write(`SEED=${result.seed} FAILED ${f.kind} (exit ${exitCodes[f.kind]}) at step ${f.step}, ${Math.round(f.atMs)}ms simulated\n`);
  process.stdout.write(`  ${f.message.split('\n').join('\n  ')}\n`);
  if (withOptions) process.stdout.write(`  ${describeOptions(result.options).split('\n').join('\n  ')}\n`);
  process.stdout.write(`  replay: ${replayCommand(result.seed, replay)}\n`);
}

function single(flags: Flags, seed: number): number {
  const log = flags.verbose ? (line: string): void => { process.stdout.write(`${line}\n`); } : undefined;
  const started = performance.now();
  const result = runSeed(seed, { ...flags.run, ...(log === undefined ? {} : { log }) });
  process.stdout.write(`SEED=${seed}\n${describeOptions(result.options)}\n`);
  const s = result.stats;
  process.stdout.write(`events=${s.events} simulated_ms=${s.simulatedMs} crashes=${s.crashes} torn=${s.tornPersists} partitions=${s.partitions} leaders=${s.leaders} committed=${s.committed} snapshots=${s.snapshotsTaken}/${s.snapshotsInstalled} client_ops=${s.clientOps} unavailable=${s.unavailable} sessions_lost=${s.sessionsLost} compares=${s.stateCompares} reads=${s.readsChecked} trace=${result.traceHash} (${Math.round(performance.now() - started)}ms)\n`);
  if (result.ok) {
    process.stdout.write(`SEED=${seed} passed\n`);
    return 0;
  }
  printFailure(result, flags.replay, false);
  return exitCodes[(result.failure as NonNullable<RunResult['failure']>).kind];
}

interface Summary {
  failures: RunResult[];
  runs: number;
}

async function many(flags: Flags, from: number): Promise<number> {
  const started = performance.now();
  process.stdout.write(`sim: seeds ${from}..${from + flags.seeds - 1} (${flags.seeds} runs, ${flags.jobs} job${flags.jobs === 1 ? '' : 's'})\n`);
  const summary: Summary = { failures: [], runs: 0 };
  const step = Math.max(1, Math.floor(flags.seeds / 20));
  const onResult = (result: RunResult): void => {
    summary.runs++;
    if (!result.ok) {
      summary.failures.push(result);
      printFailure(result, flags.replay);
    }
    if (summary.runs % step === 0 || summary.runs === flags.seeds) {
      const seconds = (performance.now() - started) / 1000;
      process.stdout.write(`progress: ${summary.runs}/${flags.seeds} seeds, ${summary.failures.length} failed, ${seconds.toFixed(1)}s\n`);
    }
  };
  if (flags.jobs <= 1) {
    for (let seed = from; seed < from + flags.seeds; seed++) onResult(runSeed(seed, flags.run));
  } else {
    await runInWorkers(from, flags.seeds, flags.jobs, flags.run, onResult);
  }
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(`sim: ${summary.runs} seeds in ${seconds.toFixed(1)}s, ${summary.failures.length} failed${summary.failures.length > 0 ? `: ${summary.failures.map((f) => `${f.seed}(${f.failure?.kind})`).join(' ')}` : ''}\n`);
  const first = summary.failures.sort((a, b) => a.seed - b.seed)[0];
  return first === undefined ? 0 : exitCodes[(first.failure as NonNullable<RunResult['failure']>).kind];
}

/** Spreads seeds over worker threads; each result comes back as it is done. */
export function runInWorkers(from: number, count: number, jobs: number, run: RunOptions, onResult: (r: RunResult) => void): Promise<void> {
  let next = from;
  const end = from + count;
  const { log: _log, ...plain } = run;
  return new Promise((resolve, reject) => {
    let active = 0;
    const startWorker = (): void => {
      active++;
      const worker = new Worker(__filename, { workerData: { run: plain } });
      const feed = (): void => {
        if (next >= end) {
          void worker.terminate();
          return;
        }
        worker.postMessage(next++);
      };
      worker.on('message', (result: RunResult) => {
        onResult(result);
        feed();
      });
      worker.on('error', reject);
      worker.on('exit', () => {
        active--;
        if (active === 0) resolve();
      });
      feed();
    };
    for (let i = 0; i < Math.min(jobs, count); i++) startWorker();
  });
}

async function main(argv: readonly string[]): Promise<number> {
  const flags = parseFlags(argv);
  if (flags.seed !== null) return single(flags, flags.seed);
  // Like the VOPR, a run without a starting seed picks one at random (and prints it).
  const from = flags.from ?? randomInt(0, 2 ** 31);
  if (flags.seeds === 1) return single(flags, from);
  return many(flags, from);
}

if (!isMainThread && parentPort !== null) {
  const port = parentPort;
  const { run } = workerData as { run: RunOptions };
  port.on('message', (seed: number) => port.postMessage(runSeed(seed, run)));
} else if (require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err: unknown) => {
    process.stderr.write(`sim: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exitCode = 127;
  });
}
