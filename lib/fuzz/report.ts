// Runs a fast-check property as one fuzz target and turns fast-check's run details into a small
// report: how many cases ran, and for a failure the shrunk counterexample and how to replay it
// (`--seed S --path P` replays exactly the failing case, without searching again).
import * as fc from 'fast-check';

export interface FuzzFailure {
  /** The error the property threw on the shrunk counterexample. */
  message: string;
  seed: number;
  path: string;
  /** The shrunk counterexample, as fast-check prints it, and as the value itself. */
  counterexample: string;
  value: unknown;
  /** The command that replays it. */
  replay: string;
}

export interface TargetResult {
  target: string;
  cases: number;
  failure: FuzzFailure | null;
  seconds: number;
}

export interface RunOptions {
  cases: number;
  seed: number;
  /** Replay only the case at this fast-check path (from a failure's report). */
  path?: string;
}

function describeFailure(target: string, details: fc.RunDetails<unknown>): FuzzFailure {
  const error = details.errorInstance;
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  const path = details.counterexamplePath ?? '';
  const counterexample = fc.stringify(details.counterexample);
  // A command sequence also needs its own replayPath, which fast-check prints inside it.
  const replayPath = /replayPath="([^"]*)"/.exec(counterexample)?.[1];
  return {
    message,
    seed: details.seed,
    path,
    counterexample: counterexample.slice(0, 4000),
    value: details.counterexample,
    replay: `npm run fuzz -- --target ${target} --seed ${details.seed} --path ${path}${replayPath === undefined ? '' : ` --replay-path '${replayPath}'`}`,
  };
}

function parameters(options: RunOptions): fc.Parameters<unknown> {
  return {
    numRuns: options.cases,
    seed: options.seed,
    ...(options.path === undefined ? {} : { path: options.path, endOnFailure: true }),
  };
}

export function runTarget<T>(target: string, property: fc.IProperty<T>, options: RunOptions): TargetResult {
  const started = Date.now();
  const details = fc.check(property, parameters(options) as fc.Parameters<T>);
  return summarise(target, details as fc.RunDetails<unknown>, started);
}

export async function runAsyncTarget<T>(target: string, property: fc.IAsyncProperty<T>, options: RunOptions): Promise<TargetResult> {
  const started = Date.now();
  const details = await fc.check(property, parameters(options) as fc.Parameters<T>);
  return summarise(target, details as fc.RunDetails<unknown>, started);
}

function summarise(target: string, details: fc.RunDetails<unknown>, started: number): TargetResult {
  return {
    target,
    cases: details.numRuns,
    failure: details.failed ? describeFailure(target, details) : null,
    seconds: (Date.now() - started) / 1000,
  };
}

export function formatFailure(result: TargetResult): string {
  const failure = result.failure;
  if (failure === null) return `${result.target}: ${result.cases} cases passed`;
  return [
    `${result.target}: FAILED after ${result.cases} cases (seed ${failure.seed}, path ${failure.path})`,
    `  error: ${failure.message}`,
    `  counterexample: ${failure.counterexample}`,
    `  replay: ${failure.replay}`,
  ].join('\n');
}
