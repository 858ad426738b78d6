// `node bin/main client ...` (PROTOCOL §1) driven in-process against a fake node: the one-shot
// form's exact lines, the shell fed from a pipe, and the command-line errors.
import { expect } from 'chai';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { runClient, type ClientIo } from '../../lib/cli/client-cmd';
import { FakeServer } from '../helpers/fake-server';

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString('utf8');
    done();
  }
}

interface Run { code: number; stdout: string; stderr: string }

async function run(argv: string[], input = '', env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const stdin = new PassThrough();
  const stdout = new Capture();
  const stderr = new Capture();
  stdin.end(input);
  const io: ClientIo = { stdin, stdout, stderr, env, terminal: false };
  const code = await runClient(argv, io);
  return { code, stdout: stdout.text, stderr: stderr.text };
}

describe('client command', () => {
  let server: FakeServer;

  beforeEach(async () => {
    server = await FakeServer.start();
  });

  afterEach(async () => {
    await server.close();
  });

  it('one-shot WRITE prints the exact lines, appends VALUE and a newline, and says bye', async () => {
    const result = await run(['--server', server.address, 'notes', 'WRITE', 'hello world']);
    expect(result.stderr).to.equal('');
    expect(result.code).to.equal(0);
    expect(result.stdout).to.equal([
      'REQUESTING lock for resource: notes',
      'LOCKED notes',
      "WROTE 'hello world' to notes",
      'UNLOCKED notes',
      '',
    ].join('\n'));
    expect(server.state.files.get('notes')).to.equal('hello world\n');
    expect(server.state.lock('notes').owner).to.equal(null);
    expect(server.requests('bye')).to.have.length(1);
  });

  it('one-shot READ prints the contents and holds for HOLD_SECONDS', async () => {
    server.state.files.set('notes', 'a\nb\n');
    const startedMs = performance.now();
    const result = await run(['--server', server.address, 'notes', 'READ', '0.3']);
    expect(result.code).to.equal(0);
    expect(result.stdout).to.equal('REQUESTING lock for resource: notes\nLOCKED notes\nREAD from notes: a\nb\nUNLOCKED notes\n');
    expect(performance.now() - startedMs).to.be.above(290);
  });

  it('one-shot errors print error: CODE: MESSAGE and exit 1', async () => {
    server.intercept = (m) => (m['action'] === 'append' ? { ok: false, error: { code: 'stale_token', message: 'an earlier grant' } } : undefined);
    const result = await run(['--server', server.address, 'notes', 'WRITE', 'x']);
    expect(result.code).to.equal(1);
    expect(result.stderr).to.equal('error: stale_token: an earlier grant\n');
    expect(server.state.lock('notes').owner).to.equal(null); // released anyway
  });

  it('the shell answers each piped line with one line, and says bye at EOF', async () => {
    server.holdFor('busy', 'someone');
    const input = [
      'preempt L', 'preempt busy', 'check L', 'check M', 'write L hello there', 'write M nope',
      'read L', 'release L', 'release L', 'status', 'bogus', 'acquire',
    ].join('\n');
    const result = await run(['--server', server.address], `${input}\n`);
    expect(result.code).to.equal(0);
    expect(result.stdout.split('\n')).to.deep.equal([
      'LOCKED L token=2',
      'lock_held: busy is held by someone',
      `L: owner=${String(server.requests('hello')[0]?.['client_id'])} token=2 waiters=0`,
      'M: free',
      "WROTE 'hello there' to L",
      "not_owner: you do not hold the lock M; run 'acquire M' first",
      'L: "hello there\\n"',
      'RELEASED L',
      'not_owner: L is not held by this client',
      'node=fake role=leader term=1 leader=fake commit_index=7 members=fake',
      "unknown command 'bogus' (try help)",
      'usage: acquire L [timeout_ms]',
      '',
    ]);
    expect(server.requests('bye')).to.have.length(1);
  });

  it('the shell acquire with timeout_ms reports the timeout, and exit stops reading', async () => {
    server.holdFor('L', 'someone');
    const result = await run(['--server', server.address], 'acquire L 50\nexit\npreempt M\n');
    expect(result.stdout).to.match(/^timeout: /);
    expect(result.stdout.split('\n')).to.have.length(2);
    expect(server.requests('preempt')).to.have.length(0);
    expect(server.requests('acquire')[0]).to.include({ timeout_ms: 50 });
  });

  it('takes the auth token from --auth-token-file or LATCHKEY_AUTH_TOKEN', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'latchkey-client-cmd-'));
    const file = path.join(dir, 'token');
    await fs.writeFile(file, 'from-file\n');
    await run(['--server', server.address, '--auth-token-file', file], 'check L\n', { LATCHKEY_AUTH_TOKEN: 'from-env' });
    await run(['--server', server.address], 'check L\n', { LATCHKEY_AUTH_TOKEN: 'from-env' });
    await fs.rm(dir, { recursive: true, force: true });
    expect(server.requests('hello').map((m) => m['auth'])).to.deep.equal(['from-file', 'from-env']);
  });

  it('command-line errors exit 2 with a precise message', async () => {
    const cases: Array<[string[], RegExp]> = [
      [[], /^error: --server is required\n/],
      [['--server'], /^error: --server needs a value\n/],
      [['--server', 'nohost'], /^error: --server must be HOST:PORT/],
      [['--server', server.address, '--foo'], /^error: unknown flag --foo\n/],
      [['--server', server.address, '--auth-token', 't'], /never taken on the command line/],
      [['--server', server.address, 'L', 'DELETE'], /expected LOCK READ\|WRITE/],
      [['--server', server.address, 'L', 'WRITE'], /WRITE needs a VALUE/],
      [['--server', server.address, 'L', 'WRITE', 'v', 'soon'], /HOLD_SECONDS must be a number/],
    ];
    for (const [argv, pattern] of cases) {
      const result = await run(argv);
      expect(result.code, argv.join(' ')).to.equal(2);
      expect(result.stderr, argv.join(' ')).to.match(pattern);
    }
    expect(server.received).to.have.length(0);
  });
});
