// `node bin/main` (every scenario) and `node bin/main scenario NAME|FILE [--seed N]`.
import { parseArgs } from 'node:util';
import { runScenario, type ScenarioReport } from '../scenario/runner';
import { listScenarios, loadScenario, ScenarioError, type ScenarioSpec } from '../scenario/spec';

function printReport(report: ScenarioReport): void {
  const errors = Object.entries(report.errors).map(([code, n]) => `${code}=${n}`).join(' ') || 'none';
  process.stdout.write(`\n${report.ok ? 'PASS' : 'FAIL'} ${report.name}  ops=${report.ops} handoffs=${report.handoffs} errors: ${errors}  (${(report.durationMs / 1000).toFixed(1)} s)\n`);
  for (const check of report.checks) process.stdout.write(`  ${check.ok ? 'ok  ' : 'FAIL'} ${check.name}: ${check.detail}\n`);
}

async function runAll(specs: ScenarioSpec[], seed: number): Promise<number> {
  let failed = 0;
  for (const spec of specs) {
    const report = await runScenario(spec, { seed, onProgress: (line) => process.stderr.write(`${line}\n`) });
    printReport(report);
    if (!report.ok) {
      failed++;
      process.stdout.write(`  replay: node bin/main scenario ${spec.name} --seed ${seed}\n`);
    }
  }
  process.stdout.write(`\n${specs.length - failed} passed, ${failed} failed\n`);
  return failed === 0 ? 0 : 1;
}

function parseSeed(value: string | undefined): number {
  if (value === undefined) return Date.now() % 2 ** 31;
  const seed = Number(value);
  if (!Number.isInteger(seed) || seed < 0) throw new ScenarioError(`--seed must be a non-negative integer (got '${value}')`);
  return seed;
}

export async function runAllScenarios(): Promise<number> {
  const seed = parseSeed(undefined);
  const specs = await Promise.all((await listScenarios()).map((name) => loadScenario(name)));
  process.stdout.write(`running ${specs.length} scenarios, seed ${seed}\n`);
  return runAll(specs, seed);
}

export async function runScenarioCommand(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: { seed: { type: 'string' } }, allowPositionals: true, strict: true });
    if (positionals.length !== 1) throw new ScenarioError('usage: node bin/main scenario NAME|FILE [--seed N]');
    const spec = await loadScenario(positionals[0] as string);
    return await runAll([spec], parseSeed(values.seed));
  } catch (err) {
    if (err instanceof ScenarioError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`error: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  }
}
