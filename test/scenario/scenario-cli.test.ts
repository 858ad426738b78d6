// The scenario runner as a user meets it: `node bin/main scenario ...`.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseScenario, ScenarioError } from '../../lib/scenario/spec';

const root = path.resolve(__dirname, '../../..');

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(root, 'bin/main'), ...args], { cwd: root, timeout: 60000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

describe('scenario runner (CLI)', function () {
  this.timeout(90000);

  it('runs a built-in scenario against a 3-node cluster, passes every check and writes the timeline', async () => {
    const { code, stdout } = await run(['scenario', 'fifo-contention', '--seed', '7']);
    expect(code, stdout).to.equal(0);
    expect(stdout).to.match(/PASS fifo-contention/);
    for (const check of ['mutual exclusion', 'tokens increase', 'acknowledged appends', 'linearizable', 'replicas agree']) {
      expect(stdout).to.match(new RegExp(`ok +${check}`));
    }
    const html = await fs.readFile(path.join(root, 'reports/scenarios.html'), 'utf8');
    expect(html).to.contain('<svg').and.to.contain('fifo-contention');
  });

  it('refuses an unknown scenario with exit 2 and the list of known ones', async () => {
    const { code, stderr } = await run(['scenario', 'no-such-scenario']);
    expect(code).to.equal(2);
    expect(stderr).to.contain("unknown scenario 'no-such-scenario'").and.to.contain('leader-crash');
  });

  it('refuses a wrong scenario file naming the file, the path and the problem', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'latchkey-spec-'));
    const file = path.join(dir, 'bad.json');
    const spec = JSON.parse(await fs.readFile(path.join(root, 'scenarios/fifo-contention.json'), 'utf8')) as Record<string, unknown>;
    (spec['clients'] as Record<string, unknown>[])[0]!['loop'] = 'dance';
    await fs.writeFile(file, JSON.stringify(spec));
    const { code, stderr } = await run(['scenario', file]);
    await fs.rm(dir, { recursive: true, force: true });
    expect(code).to.equal(2);
    expect(stderr).to.contain(file).and.to.contain('/clients/0/loop');
  });

  it('parses every built-in scenario', async () => {
    const names = (await fs.readdir(path.join(root, 'scenarios'))).filter((n) => n.endsWith('.json'));
    expect(names.length).to.be.at.least(10);
    for (const name of names) {
      const text = await fs.readFile(path.join(root, 'scenarios', name), 'utf8');
      expect(() => parseScenario(name, text), name).not.to.throw();
    }
    expect(() => parseScenario('x.json', '{"name":"x"}')).to.throw(ScenarioError, /x\.json: \(top level\): must have required property/);
  });
});
