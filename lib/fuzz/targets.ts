// The fuzz targets and the run that splits a number of cases over them. Every target is a
// fast-check property; a run draws each target's cases in chunks (a progress line each) from
// seeds derived from the run's seed, and a failure names the chunk's seed and the path of the
// shrunk case, which replay it exactly with `--target T --seed S --path P`.
import * as fc from 'fast-check';
import { FuzzNode } from './fuzz-node';
import { noKnownBugs, type KnownBugs } from './known-bugs';
import { linesCase, runLinesCase, type LinesCase } from './live-lines';
import { modelSteps, modelWorld, runModelCase, type ModelOptions, type ModelWorld } from './live-model';
import { runAsyncTarget, runTarget, type TargetResult } from './report';
import { stateMachineProperty } from './state-machine-fuzz';

export const targetNames = ['state-machine', 'lines', 'model'] as const;
export type TargetName = (typeof targetNames)[number];

/** How a run's cases are split: the pure target is cheap, the live ones cost a node round trip. */
const shares: Record<TargetName, number> = { 'state-machine': 0.5, lines: 0.3, model: 0.2 };
const chunkCases = 1000;

export function liveLinesProperty(node: FuzzNode, bugs: KnownBugs = noKnownBugs): fc.IAsyncProperty<[LinesCase]> {
  const options = { interrupted: () => node.broken() };
  return fc.asyncProperty(linesCase(bugs), (c) => node.runCase(c, () => runLinesCase(node.port, c, { ...options, ledger: node.ledger })));
}

export function liveModelProperty(node: FuzzNode, options: ModelOptions = {}): fc.IAsyncProperty<[ModelWorld, Iterable<unknown>]> {
  return fc.asyncProperty(modelWorld(options), modelSteps(options), (world, steps) => node.runCase([world, steps], () => runModelCase(node.port, world, steps)));
}

export interface FuzzOptions {
  cases: number;
  seed: number;
  targets: readonly TargetName[];
  /** Replay one case: needs exactly one target and the seed of its chunk. */
  path?: string;
  replayPath?: string;
  knownBugs?: KnownBugs;
  log?: (line: string) => void;
}

export interface FuzzSummary {
  cases: number;
  failures: TargetResult[];
  seconds: number;
  results: TargetResult[];
}

/** Splits `cases` over the targets by their shares (every chosen target gets at least one). */
export function splitCases(cases: number, targets: readonly TargetName[]): Map<TargetName, number> {
  const total = targets.reduce((sum, t) => sum + shares[t], 0);
  const split = new Map<TargetName, number>();
  let left = cases;
  targets.forEach((t, i) => {
    const n = i === targets.length - 1 ? left : Math.max(1, Math.round((cases * shares[t]) / total));
    split.set(t, Math.max(0, Math.min(n, left)));
    left -= split.get(t) as number;
  });
  return split;
}

function chunkSeed(seed: number, target: TargetName, chunk: number): number {
  return (seed + chunk * 7919 + targetNames.indexOf(target) * 104_729) >>> 0;
}

async function runChunk(target: TargetName, node: FuzzNode, options: FuzzOptions, cases: number, seed: number): Promise<TargetResult> {
  const run = { cases, seed, ...(options.path === undefined ? {} : { path: options.path }) };
  const bugs = options.knownBugs ?? noKnownBugs;
  const modelOptions = { knownBugs: bugs, ...(options.replayPath === undefined ? {} : { replayPath: options.replayPath }) };
  const result = target === 'state-machine' ? runTarget(target, stateMachineProperty(), run)
    : target === 'lines' ? await runAsyncTarget(target, liveLinesProperty(node, bugs), run)
      : await runAsyncTarget(target, liveModelProperty(node, modelOptions), run);
  // The replay must draw its case the same way.
  if (result.failure !== null) result.failure.replay += [...bugs].map((bug) => ` --known-bug ${bug}`).join('');
  return result;
}

async function runOneTarget(target: TargetName, node: FuzzNode, options: FuzzOptions, cases: number): Promise<TargetResult> {
  const log = options.log ?? (() => undefined);
  const total: TargetResult = { target, cases: 0, failure: null, seconds: 0 };
  if (options.path !== undefined) return runChunk(target, node, options, 1, options.seed);
  for (let chunk = 0; total.cases < cases && total.failure === null; chunk++) {
    const result = await runChunk(target, node, options, Math.min(chunkCases, cases - total.cases), chunkSeed(options.seed, target, chunk));
    total.cases += result.cases;
    total.seconds += result.seconds;
    total.failure = result.failure;
    log(`${target}: ${total.cases}/${cases} cases, ${total.seconds.toFixed(1)} s${result.failure === null ? '' : ', FAILED'}`);
  }
  return total;
}

export async function runFuzz(options: FuzzOptions): Promise<FuzzSummary> {
  const started = Date.now();
  const split = splitCases(options.cases, options.targets);
  const live = options.targets.some((t) => t !== 'state-machine');
  const node = new FuzzNode();
  if (live) await node.start();
  const results: TargetResult[] = [];
  try {
    for (const target of options.targets) {
      const cases = split.get(target) ?? 0;
      if (cases > 0) results.push(await runOneTarget(target, node, options, cases));
    }
  } finally {
    if (live) await node.stop();
  }
  return {
    cases: results.reduce((sum, r) => sum + r.cases, 0),
    failures: results.filter((r) => r.failure !== null),
    seconds: (Date.now() - started) / 1000,
    results,
  };
}
