// Restart time (issue 7): a node whose data directory holds N log entries (default 1,000,000)
// or, with --snapshot, the snapshot of the state they built, is started and timed until it
// serves: from spawning `node bin/main server` to the answer of the first `preempt`.
//
//   node bench/restart.mjs [--entries 1000000] [--clients 1000] [--snapshot] [--runs 3]
//
// The data directory is written directly with the node's own DiskLog (one node, term 1), so
// building it takes seconds, not the minutes a live cluster would need to commit a million
// entries. The log holds hello for every client and then preempt/release pairs over 10,000
// lock names, the shape of a busy cluster's log.
//
// RESTART_NODE_FLAGS="--cpu-prof ..." passes node flags to the server; the server is then
// stopped with SIGINT instead of SIGKILL, so a profile gets written.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => path.join(root, 'dist', 'lib', p);
const { DiskLog } = await import(dist('io/disk-log.js'));
const { writeHardState } = await import(dist('io/hard-state.js'));
const { createLockState } = await import(dist('locks/state.js'));
const { apply } = await import(dist('locks/state-machine.js'));
const { encodeSnapshot } = await import(dist('locks/snapshot.js'));

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? fallback : Number(args[i + 1]);
};
const entriesWanted = flag('entries', 1_000_000);
const clients = flag('clients', 1000);
const runs = flag('runs', 3);
const withSnapshot = args.includes('--snapshot');

function* commands() {
  let at = 1;
  for (let c = 0; c < clients; c++) {
    yield { type: 'hello', at, client: `c${c}`, conn: `n1/boot/${c}`, ttlMs: 86_400_000, graceMs: 0, implicit: false, fresh: randomUUID() };
  }
  for (let i = 0; ; i++) {
    at += 1;
    const c = i % clients;
    const lock = `lock/${i % 10_000}`;
    const common = { at, client: `c${c}`, conn: `n1/boot/${c}`, req: `r${i}`, lock };
    yield (i % 2 === 0 ? { type: 'preempt', ...common } : { type: 'release', ...common, req: `r${i}x` });
  }
}

async function build(dir) {
  await fs.mkdir(dir, { recursive: true });
  await writeHardState(dir, { term: 1, votedFor: 'n1' });
  const state = createLockState();
  const log = await DiskLog.open(path.join(dir, 'log'), { fsync: 'never' });
  const source = commands();
  let batch = [];
  for (let index = 1; index <= entriesWanted; index++) {
    const command = source.next().value;
    if (withSnapshot) apply(state, index, command);
    else batch.push({ index, term: 1, data: Buffer.from(JSON.stringify(command), 'utf8') });
    if (batch.length === 10_000) {
      await log.append(batch);
      batch = [];
    }
  }
  if (batch.length > 0) await log.append(batch);
  await log.close();
  if (withSnapshot) {
    // The shape node.ts writes: a Raft snapshot whose data is the encoded lock state.
    await fs.writeFile(path.join(dir, 'snapshot.json'), JSON.stringify({ index: entriesWanted, term: 1, data: encodeSnapshot(state) }));
    const bytes = (await fs.stat(path.join(dir, 'snapshot.json'))).size;
    console.error(`restart: snapshot of ${entriesWanted} entries, ${(bytes / 1048576).toFixed(1)} MiB`);
  }
}

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Spawns the node and resolves with ms until a preempt is answered ok. */
async function timeStart(dir) {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, [
    ...(process.env.RESTART_NODE_FLAGS ? process.env.RESTART_NODE_FLAGS.split(' ') : []),
    path.join(root, 'bin', 'main'), 'server', '--id', 'n1', '--listen', `127.0.0.1:${port}`,
    '--peers', `n1=127.0.0.1:${port}`, '--data', dir, '--log-level', 'warn', '--snapshot-every', String(entriesWanted * 2),
  ], { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    for (;;) {
      const answer = await tryPreempt(port);
      if (answer?.ok === true) return performance.now() - started;
      if (performance.now() - started > 120_000) throw new Error(`no answer in 120 s: ${JSON.stringify(answer)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    child.kill(process.env.RESTART_NODE_FLAGS ? 'SIGINT' : 'SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
  }
}

function tryPreempt(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.on('error', () => resolve(null));
    socket.on('connect', () => socket.write(`{"id":1,"action":"preempt","lock_name":"restart/probe/${randomUUID()}","client_id":"${randomUUID()}"}\n`));
    socket.on('data', (chunk) => {
      text += chunk;
      if (!text.includes('\n')) return;
      socket.destroy();
      resolve(JSON.parse(text.split('\n')[0]));
    });
    setTimeout(() => { socket.destroy(); resolve(null); }, 10_000);
  });
}

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'latchkey-restart-'));
try {
  const t0 = performance.now();
  await build(dir);
  console.error(`restart: built ${entriesWanted} ${withSnapshot ? 'entries into a snapshot' : 'log entries'} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const times = [];
  for (let i = 0; i < runs; i++) {
    // Each run starts from the same files: copy them so one run's own writes do not carry over.
    const copy = `${dir}-run${i}`;
    await fs.cp(dir, copy, { recursive: true });
    times.push(await timeStart(copy));
    await fs.rm(copy, { recursive: true, force: true });
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  const result = { kind: 'restart', entries: entriesWanted, snapshot: withSnapshot, runs: times.map((t) => Math.round(t)), median_ms: Math.round(median) };
  console.log(JSON.stringify(result));
} finally {
  await fs.rm(dir, { recursive: true, force: true });
}
