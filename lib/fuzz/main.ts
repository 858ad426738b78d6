// The fuzzer's command line:
//
//   npm run fuzz -- --cases N [--seed S] [--target state-machine|lines|model ...] [--known-bug NAME ...]
//   npm run fuzz -- --target T --seed S --path P [--replay-path R]     replays one failing case
//
// N cases are split over the targets (half to the pure state machine, the rest to a live node
// started in this process). It prints SEED= first, a progress line per chunk, every failure with
// the command that replays it, and a summary (cases, failures, seconds). Exit 0 when nothing
// failed, 1 when something did, 2 for bad flags. `--known-bug NAME` (or `--known-bugs` for all)
// also draws the cases that reproduce a bug reported and not fixed yet (lib/fuzz/known-bugs.ts).
import { randomInt } from 'node:crypto';
import { knownBugNames, knownBugs, type KnownBug } from './known-bugs';
import { formatFailure } from './report';
import { runFuzz, targetNames, type FuzzOptions, type TargetName } from './targets';

function usage(message: string): never {
  process.stderr.write(`fuzz: ${message}\nusage: npm run fuzz -- [--cases N] [--seed S] [--target ${targetNames.join('|')}]... [--known-bug ${knownBugNames.join('|')}]... [--known-bugs] [--path P [--replay-path R]]\n`);
  process.exit(2);
}

function integer(name: string, value: string | undefined, min: number): number {
  const n = Number(value);
  if (value === undefined || !Number.isSafeInteger(n) || n < min) usage(`${name} must be an integer >= ${min}, got ${String(value)}`);
  return n;
}

function text(name: string, value: string | undefined): string {
  if (value === undefined || value === '') usage(`${name} needs a value`);
  return value;
}

export function parseFuzzFlags(argv: readonly string[]): FuzzOptions {
  const options: FuzzOptions = { cases: 1000, seed: randomInt(0, 2 ** 31), targets: [] };
  const targets: TargetName[] = [];
  const bugs = new Set<KnownBug>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const value = (): string | undefined => argv[++i];
    switch (arg) {
      case '--cases': options.cases = integer(arg, value(), 1); break;
      case '--seed': options.seed = integer(arg, value(), 0); break;
      case '--path': options.path = text(arg, value()); break;
      case '--replay-path': options.replayPath = text(arg, value()); break;
      case '--known-bugs': for (const bug of knownBugNames) bugs.add(bug); break;
      case '--known-bug': {
        const bug = text(arg, value());
        if (!(knownBugNames as readonly string[]).includes(bug)) usage(`--known-bug must be one of ${knownBugNames.join(', ')}, got ${bug}`);
        bugs.add(bug as KnownBug);
        break;
      }
      case '--target': {
        const target = value();
        for (const t of text(arg, target).split(',')) {
          if (!(targetNames as readonly string[]).includes(t)) usage(`--target must be one of ${targetNames.join(', ')}, got ${t}`);
          targets.push(t as TargetName);
        }
        break;
      }
      default: usage(`unknown flag ${arg}`);
    }
  }
  options.targets = targets.length > 0 ? [...new Set(targets)] : [...targetNames];
  options.knownBugs = bugs;
  if (options.path !== undefined && options.targets.length !== 1) usage('--path replays one case: name its --target');
  return options;
}

export async function main(argv: readonly string[]): Promise<number> {
  const options = parseFuzzFlags(argv);
  const out = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  out(`SEED=${options.seed} cases=${options.cases} targets=${options.targets.join(',')}`);
  for (const bug of options.knownBugs ?? []) out(`known bug ${bug}: ${knownBugs[bug]}`);
  const summary = await runFuzz({ ...options, log: out });
  for (const failed of summary.failures) out(formatFailure(failed));
  for (const r of summary.results) out(`  ${r.target}: ${r.cases} cases, ${r.failure === null ? 0 : 1} failures, ${r.seconds.toFixed(1)} s (${(r.cases / Math.max(r.seconds, 0.001)).toFixed(0)} cases/s)`);
  out(`cases ${summary.cases}, failures ${summary.failures.length}, seconds ${summary.seconds.toFixed(1)}`);
  return summary.failures.length === 0 ? 0 : 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
