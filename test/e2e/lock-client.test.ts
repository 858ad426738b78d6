// End to end: LockClient and `node bin/main client` against a real node process. What the fake
// server in test/client cannot show: the real queue, real fencing tokens, and a session that
// survives the node being killed (-9) and restarted while a request is pending.
import { execFile } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import { expect } from 'chai';
import { LockClient, type LatchkeyError, type Lock } from '../../lib/index';
import { killAllNodeProcesses, makeTempDir, repoRoot, startNodeProcess, type NodeProcess } from '../helpers/node-process';

let lockSeq = 0;
const lockName = (): string => `e2e-client-${process.pid}-${++lockSeq}`;

async function rejectionOf(promise: Promise<unknown>): Promise<LatchkeyError> {
  try {
    await promise;
  } catch (err) {
    return err as LatchkeyError;
  }
  throw new Error('expected a rejection');
}

/** A port nobody listens on right now (the node takes it right after). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function runCli(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [path.join(repoRoot, 'bin', 'main'), 'client', ...args], { cwd: repoRoot, timeout: 15000 },
      (err, stdout, stderr) => resolve({ code: err === null ? 0 : Number(err.code ?? 1), stdout, stderr }));
    child.stdin?.end(input ?? '');
  });
}

describe('e2e: LockClient against a real node', function () {
  this.timeout(30000);
  let node: NodeProcess;
  let clients: LockClient[] = [];

  function client(options: { graceMs?: number; servers?: string[] } = {}): LockClient {
    const c = new LockClient({ servers: options.servers ?? [`127.0.0.1:${node.port}`], ...options });
    clients.push(c);
    return c;
  }

  before(async () => {
    node = await startNodeProcess();
  });

  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
  });

  after(async () => {
    await node?.stop();
    await killAllNodeProcesses();
  });

  it('queues FIFO, fences with increasing tokens, and types its errors', async () => {
    const [a, b, c] = [client(), client(), client()];
    const name = lockName();
    const first = await a.preempt(name);

    const held = await rejectionOf(b.preempt(name));
    expect(held.code).to.equal('lock_held');
    expect(held.owner).to.equal(a.clientId);

    const bWaits = b.acquire(name);
    await waitUntil(async () => (await a.check(name)).waiters === 1);
    const cWaits = c.acquire(name);
    await waitUntil(async () => (await a.check(name)).waiters === 2);

    expect((await a.append(first, 'from a\n')).size).to.equal(7);
    await first.release();
    const second = await bWaits;
    expect(second.token).to.be.above(first.token);
    // a's old handle no longer guards anything. (An older token AND no hold: PROTOCOL §4 names
    // both stale_token and not_owner for this; either refusal is right.)
    expect((await rejectionOf(a.append(first, 'late\n'))).code).to.be.oneOf(['stale_token', 'not_owner']);

    await second.release();
    const third = await cWaits;
    expect(third.token).to.be.above(second.token);
    await c.append(third, 'from c\n');
    expect(await c.read(name)).to.equal('from a\nfrom c\n');
  });

  it('close() says bye: the lock goes to the next waiter at once', async () => {
    const [a, b] = [client(), client()];
    const name = lockName();
    const lock = await a.preempt(name);
    const waiting = b.acquire(name, { timeoutMs: 5000 });
    await waitUntil(async () => (await b.check(name)).waiters === 1);
    await a.close();
    expect(lock.lostReason).to.equal('session_ended');
    expect((await waiting).token).to.be.above(lock.token);
  });

  it('a session survives kill -9 and restart: the held lock stays, the pending acquire is re-sent', async () => {
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const dataDir = await makeTempDir();
    // The helper listens on port 0; the later --listen/--peers pin the port so the restarted
    // node is where the clients look for it.
    const pinned = { dataDir, args: ['--listen', address, '--peers', `n1=${address}`] };
    let restartable = await startNodeProcess(pinned);
    try {
      const a = client({ servers: [address], graceMs: 10000 });
      const b = client({ servers: [address], graceMs: 10000 });
      const name = lockName();
      const held: Lock = await a.preempt(name);
      const waiting = b.acquire(name);
      await waitUntil(async () => (await a.check(name)).waiters === 1);

      restartable.kill('SIGKILL');
      await restartable.waitExit();
      restartable = await startNodeProcess(pinned);

      const state = await a.check(name);
      expect(state).to.include({ owner: a.clientId, token: held.token });
      expect(held.signal.aborted).to.equal(false);
      await held.release();
      const granted = await waiting;
      expect(granted.token).to.be.above(held.token);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      clients = [];
      await restartable.stop();
    }
  });

  it('node bin/main client: one-shot WRITE then READ print the exact lines', async () => {
    const server = `127.0.0.1:${node.port}`;
    const name = lockName();
    const wrote = await runCli(['--server', server, name, 'WRITE', 'v1']);
    expect(wrote.stderr).to.equal('');
    expect(wrote.stdout).to.equal(`REQUESTING lock for resource: ${name}\nLOCKED ${name}\nWROTE 'v1' to ${name}\nUNLOCKED ${name}\n`);
    expect(wrote.code).to.equal(0);
    const read = await runCli(['--server', server, name, 'READ']);
    expect(read.stdout).to.equal(`REQUESTING lock for resource: ${name}\nLOCKED ${name}\nREAD from ${name}: v1\nUNLOCKED ${name}\n`);
  });

  it('node bin/main client: the shell reads commands from a pipe and exits at EOF', async () => {
    const name = lockName();
    const result = await runCli(['--server', `127.0.0.1:${node.port}`], `preempt ${name}\nwrite ${name} hi\nread ${name}\nrelease ${name}\ncheck ${name}\n`);
    expect(result.code).to.equal(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines[0]).to.match(new RegExp(`^LOCKED ${name} token=\\d+$`));
    expect(lines.slice(1)).to.deep.equal([`WROTE 'hi' to ${name}`, `${name}: "hi\\n"`, `RELEASED ${name}`, `${name}: free`]);
  });
});

async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadlineMs = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadlineMs) throw new Error(`condition did not hold within ${timeoutMs}ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
