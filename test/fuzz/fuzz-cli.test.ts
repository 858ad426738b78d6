// The fuzzer's command line (npm run fuzz): flags, the split of cases over the targets, and a
// short real run that prints its seed, its summary and exits 0.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { parseFuzzFlags } from '../../lib/fuzz/main';
import { splitCases, targetNames } from '../../lib/fuzz/targets';

const main = path.resolve(__dirname, '../../lib/fuzz/main.js');

describe('fuzz: npm run fuzz', function () {
  this.timeout(30000);

  it('reads --cases, --seed, --target, --known-bug and --path', () => {
    const options = parseFuzzFlags(['--cases', '50', '--seed', '7', '--target', 'lines,model']);
    expect(options).to.deep.include({ cases: 50, seed: 7, targets: ['lines', 'model'] });
    expect(parseFuzzFlags([]).targets).to.deep.equal([...targetNames]);
    expect(parseFuzzFlags(['--target', 'model', '--seed', '3', '--path', '1:2', '--replay-path', 'AB:C'])).to.deep.include({ path: '1:2', replayPath: 'AB:C' });
  });

  it('splits the cases over the targets, every case counted once', () => {
    const split = splitCases(100_000, targetNames);
    expect(Object.fromEntries(split)).to.deep.equal({ 'state-machine': 50_000, lines: 30_000, model: 20_000 });
    expect([...splitCases(7, targetNames).values()].reduce((a, b) => a + b, 0)).to.equal(7);
    expect(Object.fromEntries(splitCases(10, ['model']))).to.deep.equal({ model: 10 });
  });

  it('runs N cases and prints the seed and a summary of cases, failures and seconds', () => {
    const run = spawnSync(process.execPath, [main, '--cases', '40', '--seed', '1'], { encoding: 'utf8' });
    expect(run.status, run.stderr + run.stdout).to.equal(0);
    expect(run.stdout).to.match(/^SEED=1 cases=40 targets=state-machine,lines,model$/m);
    expect(run.stdout).to.match(/^cases 40, failures 0, seconds \d+\.\d$/m);
  });

  it('refuses an unknown flag or target with exit 2', () => {
    // keepalive-stranger was a known bug; it is fixed, so naming it is now a bad flag.
    for (const argv of [['--target', 'nope'], ['--path', '1:2'], ['--known-bug', 'keepalive-stranger']]) {
      const run = spawnSync(process.execPath, [main, ...argv], { encoding: 'utf8' });
      expect(run.status, argv.join(' ')).to.equal(2);
      expect(run.stderr).to.match(/^fuzz: /);
    }
  });
});
