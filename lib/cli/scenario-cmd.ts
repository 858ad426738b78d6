// `node bin/main` (every scenario) and `node bin/main scenario NAME|FILE [--seed N]`.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { formatSummary, formatTable, renderHtml } from '../scenario/report';
import { runScenario, type ScenarioReport } from '../scenario/runner';
import { listScenarios, loadScenario, ScenarioError, type ScenarioSpec } from '../scenario/spec';

const reportsDir = path.resolve(__dirname, '../../../reports');

async function runAll(specs: ScenarioSpec[], seed: number): Promise<number> {
  const reports: ScenarioReport[] = [];
  const started = Date.now();
  for (const spec of specs) {
    let report: ScenarioReport;
    try {
      report = await runScenario(spec, { seed, onProgress: (line) => process.stderr.write(`  ${line}\n`) });
    } catch (err) {
      process.stdout.write(`\nFAIL ${spec.name}: the run itself failed: ${(err as Error).message}\n`);
      reports.push({
        name: spec.name, description: spec.description, seed, ok: false, durationMs: 0, ops: 0, errors: {}, grants: 0, handoffs: 0,
        leaderChanges: 0, lost: 0, checks: [{ name: 'run', ok: false, detail: (err as Error).message }], history: [], events: [], endMs: 0,
      });
      continue;
    }
    reports.push(report);
    process.stdout.write(`\n${formatTable(report)}\n`);
    if (!report.ok) process.stdout.write(`  replay: node bin/main scenario ${spec.name} --seed ${seed}\n`);
  }
  await fs.mkdir(reportsDir, { recursive: true });
  const html = path.join(reportsDir, 'scenarios.html');
  await fs.writeFile(html, renderHtml(reports));
  const failed = reports.filter((r) => !r.ok).length;
  process.stdout.write(`\n${formatSummary(reports)}\n\ntimeline: ${html}\n`);
  process.stdout.write(`${reports.length - failed} passed, ${failed} failed (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
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
  process.stdout.write(`running ${specs.length} scenarios against fresh 3-node clusters, seed ${seed}\n`);
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
