#!/usr/bin/env node
// Failover time, latchkey side by side with etcd: from `kill -9` of the leader to the first
// successful grant on the new leader, median of N trials.
//
//   node bench/failover.mjs [--trials 5] [--systems latchkey,etcd] [--checkout PATH]
//                           [--bench-dir PATH] [--json-out FILE] [--verbose]
//   node bench/failover.mjs --help
//
// latchkey: one 3-node cluster of real processes on 127.0.0.1 for all trials. Per trial: find the
// leader (status), open a session on each survivor (hello), SIGKILL the leader (t0 =
// performance.now() just before the kill), then on each survivor send `preempt` of a fresh lock
// name every 5-10 ms (without waiting for earlier tries to be answered; see MAX_OUTSTANDING)
// until one answers ok (t1). Then restart the killed node with the same --id/--data/port and wait
// until all three agree on the leader and its commit_index has caught up.
//
// etcd: a fresh 3-member cluster from BENCH_DIR/peers.sh for every trial. Per trial: find the
// leader (maintenance status of each member), grant a session lease on each survivor, SIGKILL the
// leader's pid, then on each survivor send the lock step of etcd's mutex recipe (one Txn: put
// KEY with the lease if KEY's create_revision is 0) every 5-10 ms, the same way, until one
// succeeds. etcd runs as peers.sh starts it: its defaults, heartbeat 100 ms, election 1000 ms.
//
// Both: the time until a survivor's status first names a new leader is reported too.
// Plain ESM, Node 20, no build step. Everything on 127.0.0.1; every process started is stopped
// at the end, also on error or SIGINT.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Conn, nodeStatus, numberFlag, parseFlags, withTimeout as timeout } from './common.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HELP = `usage: node bench/failover.mjs [flags]

Measures kill -9 of the leader -> first successful grant on the new leader (ms),
median of N trials, for latchkey (3 nodes) and etcd (3 members).

  --trials N               trials per system (default 5)
  --systems LIST           latchkey,etcd (default both)
  --checkout PATH          latchkey checkout to run (default: this repository, ${ROOT})
  --bench-dir PATH         the shared bench folder (default: <repo>/../shared/bench)
  --json-out FILE          append one JSON line per system to FILE
  --heartbeat-ms N         latchkey --heartbeat-ms (default 50)
  --election-timeout-ms N  latchkey --election-timeout-ms (default 300)
  --latchkey-args "..."    extra flags for every latchkey node
  --latchkey-ports A,B,C   latchkey client ports (default 17011,17012,17013)
  --locks N                locks taken (and held) before the trials, so there is state (default 20)
  --retry-min-ms N / --retry-max-ms N   pause between tries on each survivor (default 5 / 10)
  --trial-timeout-s N      a trial that takes longer fails (default 30)
  --state-dir DIR          latchkey data dirs and logs (default: a fresh dir under $TMPDIR, removed
                           at the end unless --keep)
  --keep                   keep the latchkey state dir
  --verbose                progress on stderr
etcd uses BENCH_DIR/peers.sh (ports from its environment: ETCD_CLIENT_PORTS, ETCD_PEER_PORTS,
BENCH_STATE_DIR) and the etcd3 client in BENCH_DIR/node_modules.`;

// ------------------------------------------------------------------ flags
function parseArgs(argv) {
  const o = {
    trials: 5, systems: ['latchkey', 'etcd'], checkout: ROOT, benchDir: null, jsonOut: null,
    heartbeatMs: 50, electionTimeoutMs: 300, latchkeyArgs: '', ports: [17011, 17012, 17013],
    locks: 20, retryMinMs: 5, retryMaxMs: 10, trialTimeoutS: 30, stateDir: null, keep: false, verbose: false,
  };
  const num = (flag, v, min = 0) => numberFlag(usage, flag, v, min);
  parseFlags(argv, (flag, val) => {
    switch (flag) {
      case '-h': case '--help': process.stdout.write(HELP + '\n'); process.exit(0); break;
      case '--trials': o.trials = Math.floor(num(flag, val(), 1)); break;
      case '--systems': o.systems = val().split(',').map(s => s.trim()).filter(Boolean); break;
      case '--checkout': o.checkout = path.resolve(val()); break;
      case '--bench-dir': o.benchDir = path.resolve(val()); break;
      case '--json-out': o.jsonOut = path.resolve(val()); break;
      case '--heartbeat-ms': o.heartbeatMs = num(flag, val(), 1); break;
      case '--election-timeout-ms': o.electionTimeoutMs = num(flag, val(), 1); break;
      case '--latchkey-args': o.latchkeyArgs = val(); break;
      case '--latchkey-ports': o.ports = val().split(',').map(p => Math.floor(num(flag, p, 1))); break;
      case '--locks': o.locks = Math.floor(num(flag, val(), 0)); break;
      case '--retry-min-ms': o.retryMinMs = num(flag, val(), 0); break;
      case '--retry-max-ms': o.retryMaxMs = num(flag, val(), 0); break;
      case '--trial-timeout-s': o.trialTimeoutS = num(flag, val(), 1); break;
      case '--state-dir': o.stateDir = path.resolve(val()); break;
      case '--keep': o.keep = true; break;
      case '--verbose': case '-v': o.verbose = true; break;
      default: return false;
    }
    return true;
  }, usage);
  for (const s of o.systems) if (s !== 'latchkey' && s !== 'etcd') usage(`unknown system '${s}' (latchkey, etcd)`);
  if (o.ports.length !== 3) usage('--latchkey-ports needs three ports');
  if (o.retryMaxMs < o.retryMinMs) usage('--retry-max-ms must be >= --retry-min-ms');
  o.benchDir ??= path.resolve(ROOT, '../shared/bench');
  return o;
}
function usage(msg) {
  process.stderr.write(`failover: ${msg}\n\n${HELP}\n`);
  process.exit(2);
}

const o = parseArgs(process.argv.slice(2));
const log = (...a) => { if (o.verbose) process.stderr.write(`[failover ${new Date().toISOString().slice(11, 23)}] ${a.join(' ')}\n`); };
const say = (...a) => process.stderr.write(`failover: ${a.join(' ')}\n`);
const sleep = ms => new Promise(r => setTimeout(r, ms));
const jitter = () => o.retryMinMs + Math.random() * (o.retryMaxMs - o.retryMinMs);
const round = (x, d = 1) => (x === null || x === undefined ? null : Math.round(x * 10 ** d) / 10 ** d);
const trialTimeoutMs = () => o.trialTimeoutS * 1000;

class TrialError extends Error {}

// Tries are not paced by answers: a try sent while a survivor still believes in the dead leader
// may hang until its request times out (etcd: its 5 s deadline here) while later tries go
// through, so the bound on outstanding tries must stay above what 30 s of retrying can pile up
// within one request timeout (5 s / 5 ms = 1000).
const MAX_OUTSTANDING = 1024;
const ETCD_CALL_DEADLINE_MS = 5000;

/** Resolves as promise does, or rejects after ms with a TrialError. */
const withTimeout = (promise, ms, what) => timeout(promise, ms, what, TrialError);

/** Polls fn() every `every` ms until it returns a truthy value, or throws after ms. */
async function until(fn, ms, what, every = 20) {
  const end = performance.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    if (performance.now() >= end) throw new TrialError(`${what}: not within ${ms / 1000} s${last ? ` (last error: ${last.message})` : ''}`);
    await sleep(every);
  }
}

// ------------------------------------------------------------------ cleanup of everything started
const children = new Set(); // latchkey ChildProcess objects
let etcdStarted = false;
let cleanedUp = false;
let tmpToRemove = null;

function peersSh(args, { check = true } = {}) {
  const r = spawnSync(path.join(o.benchDir, 'peers.sh'), args, { encoding: 'utf8', timeout: 60000 });
  if (check && r.status !== 0) {
    throw new Error(`peers.sh ${args.join(' ')} failed (exit ${r.status}${r.signal ? `, ${r.signal}` : ''}):\n${(r.stderr || '').trim()}`);
  }
  return { out: (r.stdout || '').trim(), err: (r.stderr || '').trim() };
}

/** Synchronous last-resort cleanup (also used from process 'exit'). */
function cleanupSync() {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  }
  children.clear();
  if (etcdStarted) { peersSh(['stop', 'etcd'], { check: false }); etcdStarted = false; }
  if (tmpToRemove && !o.keep) { try { fs.rmSync(tmpToRemove, { recursive: true, force: true }); } catch { /* best effort */ } }
}

async function stopChild(c, ms = 5000) {
  if (c.exitCode !== null || c.signalCode !== null) { children.delete(c); return; }
  const exited = new Promise(r => c.once('exit', r));
  c.kill('SIGTERM');
  const t = setTimeout(() => { try { c.kill('SIGKILL'); } catch { /* gone */ } }, ms);
  await exited;
  clearTimeout(t);
  children.delete(c);
}

process.on('exit', cleanupSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { say(`${sig}: stopping everything started`); cleanupSync(); process.exit(130); });
}

// ------------------------------------------------------------------ stats
function stats(xs) {
  const s = xs.filter(x => typeof x === 'number').sort((a, b) => a - b);
  if (s.length === 0) return { median: null, min: null, max: null };
  const m = s.length >> 1;
  return { median: s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2, min: s[0], max: s[s.length - 1] };
}

const latchkeyStatus = (port, ms = 1000) => nodeStatus(port, ms, TrialError);

// ------------------------------------------------------------------ latchkey cluster
class LatchkeyCluster {
  constructor(dir) {
    this.dir = dir;
    this.ids = ['n1', 'n2', 'n3'];
    this.port = Object.fromEntries(this.ids.map((id, i) => [id, o.ports[i]]));
    this.peers = this.ids.map(id => `${id}=127.0.0.1:${this.port[id]}`).join(',');
    this.proc = {};
  }

  async start(id) {
    const data = path.join(this.dir, id);
    fs.mkdirSync(data, { recursive: true });
    const fd = fs.openSync(path.join(this.dir, `${id}.log`), 'a');
    const args = [path.join(o.checkout, 'bin', 'main'), 'server', '--id', id, '--listen', `127.0.0.1:${this.port[id]}`,
      '--peers', this.peers, '--data', data, '--heartbeat-ms', String(o.heartbeatMs),
      '--election-timeout-ms', String(o.electionTimeoutMs), ...o.latchkeyArgs.split(/\s+/).filter(Boolean)];
    const c = spawn(process.execPath, args, { cwd: o.checkout, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    children.add(c);
    c.once('exit', () => children.delete(c));
    this.proc[id] = c;
    log(`latchkey ${id} started, pid ${c.pid}, port ${this.port[id]}`);
    await until(async () => {
      if (c.exitCode !== null || c.signalCode !== null) {
        throw new TrialError(`latchkey ${id} exited (${c.exitCode ?? c.signalCode}); log tail:\n${this.tail(id)}`);
      }
      const s = await new Conn(this.port[id]).connect(500).catch(() => null);
      if (s) s.destroy();
      return s !== null;
    }, trialTimeoutMs(), `latchkey ${id} listening on ${this.port[id]}`, 50).catch(e => {
      if (e instanceof TrialError && !e.message.includes('log tail')) e.message += `; log tail:\n${this.tail(id)}`;
      throw e;
    });
  }

  tail(id, n = 15) {
    try { return fs.readFileSync(path.join(this.dir, `${id}.log`), 'utf8').trim().split('\n').slice(-n).join('\n'); } catch { return '(no log)'; }
  }

  alive(id) { const c = this.proc[id]; return c && c.exitCode === null && c.signalCode === null; }

  /** Statuses of the live nodes, all asked at once. */
  async statuses(ids = this.ids.filter(id => this.alive(id))) {
    const rs = await Promise.all(ids.map(id => latchkeyStatus(this.port[id]).then(r => [id, r], () => [id, null])));
    return Object.fromEntries(rs);
  }

  /**
   * Waits until every live node answers status, they all name the same leader in the same term,
   * and (catchUp) every node's commit_index has reached the leader's. Returns {leader, term, commit}.
   */
  async waitStable({ catchUp = false, what = 'cluster stable' } = {}) {
    let last = null;
    try {
      return await until(async () => {
        const st = await this.statuses(this.ids);
        last = st;
        const all = Object.values(st);
        if (all.some(s => s === null)) return null;
        const leader = all[0].leader;
        if (!leader || !all.every(s => s.leader === leader && s.term === all[0].term)) return null;
        const ls = st[leader];
        if (ls.role !== 'leader') return null;
        if (catchUp && !all.every(s => s.commit_index >= ls.commit_index)) return null;
        return { leader, term: ls.term, commit: ls.commit_index };
      }, trialTimeoutMs(), what, 25);
    } catch (e) {
      if (last) e.message += `\nlast statuses: ${JSON.stringify(last)}`;
      throw e;
    }
  }

  async stopAll() {
    await Promise.all(Object.values(this.proc).map(c => stopChild(c)));
  }
}

/** Takes `n` locks on a session that outlives the connection, so the cluster has state. */
async function takeSomeLocks(port, n) {
  if (n === 0) return 0;
  const c = await new Conn(port).connect();
  const clientId = randomUUID();
  try {
    const h = await withTimeout(c.request({ action: 'hello', client_id: clientId, ttl_ms: 3600000, grace_ms: 3600000 }), 10000, 'hello');
    if (!h.ok) {
      // A build with a lower bound on ttl/grace: fall back to the defaults.
      const h2 = await withTimeout(c.request({ action: 'hello', client_id: clientId }), 10000, 'hello');
      if (!h2.ok) throw new Error(`hello: ${JSON.stringify(h2.error)}`);
    }
    const rs = await withTimeout(Promise.all(Array.from({ length: n }, (_, i) =>
      c.request({ action: 'preempt', lock_name: `failover/state/${i}`, client_id: clientId }))), 10000, 'taking the state locks');
    const bad = rs.filter(r => !r.ok);
    if (bad.length) throw new Error(`taking the state locks: ${JSON.stringify(bad[0].error)}`);
    return rs.length;
  } finally { c.destroy(); }
}

/**
 * One survivor's client during a trial: every 5-10 ms a new `preempt` try (and a `status` until a
 * new leader is seen), without waiting for earlier tries (at most MAX_OUTSTANDING outstanding).
 */
function latchkeySurvivorLoop({ id, port, conn, clientId, lockName, dead, t0, shared }) {
  let c = conn;
  let cid = clientId;
  let reconnecting = false;
  const tick = () => {
    if (shared.done) return;
    if (c.closed) {
      if (!reconnecting) {
        reconnecting = true;
        shared.reconnects++;
        // The old session ended with its connection; a new client_id avoids client_mismatch.
        cid = randomUUID();
        new Conn(port).connect(1000).then(nc => { c = nc; shared.conns.push(nc); }, () => {}).finally(() => { reconnecting = false; });
      }
    } else {
      if (c.outstanding < MAX_OUTSTANDING) {
        shared.tries++;
        c.request({ action: 'preempt', lock_name: lockName, client_id: cid }).then(r => {
          if (shared.done) return;
          if (r.ok) {
            shared.done = true;
            shared.resolve({ grantMs: performance.now() - t0, via: id, token: r.token });
          } else {
            const code = r.error?.code ?? 'unknown';
            shared.errors[code] = (shared.errors[code] ?? 0) + 1;
          }
        }, () => { shared.errors.closed = (shared.errors.closed ?? 0) + 1; });
      }
      if (shared.leaderMs === null) {
        c.request({ action: 'status' }).then(r => {
          if (shared.leaderMs !== null || !r.ok) return;
          if ((r.role === 'leader' && r.node !== dead) || (r.leader && r.leader !== dead)) {
            shared.leaderMs = performance.now() - t0;
            shared.newLeader = r.role === 'leader' ? r.node : r.leader;
          }
        }, () => {});
      }
    }
    setTimeout(tick, jitter());
  };
  tick();
}

async function latchkeyTrial(cl, trial) {
  const { leader } = await cl.waitStable({ catchUp: true, what: `trial ${trial}: all three agreeing on a leader` });
  const survivors = cl.ids.filter(id => id !== leader);
  const lockName = `failover/t${trial}/${randomUUID().slice(0, 8)}`;
  const shared = { done: false, tries: 0, errors: {}, reconnects: 0, leaderMs: null, newLeader: null, conns: [] };
  const clients = [];
  try {
    for (const id of survivors) {
      const conn = await new Conn(cl.port[id]).connect();
      shared.conns.push(conn);
      const clientId = randomUUID();
      const h = await withTimeout(conn.request({ action: 'hello', client_id: clientId }), 10000, `hello on ${id}`);
      if (!h.ok) throw new TrialError(`hello on ${id}: ${JSON.stringify(h.error)}`);
      clients.push({ id, port: cl.port[id], conn, clientId });
    }
    const victim = cl.proc[leader];
    const exited = new Promise(r => victim.once('exit', r));
    const result = new Promise((resolve) => { shared.resolve = resolve; });
    log(`trial ${trial}: SIGKILL leader ${leader} (pid ${victim.pid})`);
    const t0 = performance.now();
    victim.kill('SIGKILL');
    for (const c of clients) latchkeySurvivorLoop({ ...c, lockName, dead: leader, t0, shared });
    let r;
    try {
      r = await withTimeout(result, trialTimeoutMs(), `latchkey trial ${trial}: first grant after killing ${leader}`);
    } finally { shared.done = true; }
    await withTimeout(exited, 5000, `${leader} exiting after SIGKILL`);
    // a status reply may lag the grant by a few ms; give it a moment if it has not come yet
    for (let i = 0; i < 20 && shared.leaderMs === null; i++) await sleep(5);
    log(`trial ${trial}: grant after ${r.grantMs.toFixed(1)} ms via ${r.via}; new leader seen after ${shared.leaderMs?.toFixed(1)} ms (${shared.newLeader}); ${shared.tries} tries`);
    // Ends the trial's sessions (bye) and connections.
    await Promise.all(shared.conns.filter(c => !c.closed).map(async (c) => {
      const cli = clients.find(x => x.conn === c);
      if (cli) await withTimeout(c.request({ action: 'bye', client_id: cli.clientId }), 2000, 'bye').catch(() => {});
      c.destroy();
    }));
    // Bring the killed node back and let it catch up before the next trial.
    const tr = performance.now();
    await cl.start(leader);
    const stable = await cl.waitStable({ catchUp: true, what: `trial ${trial}: ${leader} restarted and caught up` });
    log(`trial ${trial}: ${leader} back and caught up in ${(performance.now() - tr).toFixed(0)} ms (leader ${stable.leader}, term ${stable.term}, commit ${stable.commit})`);
    return { grantMs: r.grantMs, leaderMs: shared.leaderMs, killed: leader, newLeader: shared.newLeader, via: r.via, tries: shared.tries, errors: shared.errors, reconnects: shared.reconnects };
  } finally {
    shared.done = true;
    for (const c of shared.conns) c.destroy();
  }
}

async function runLatchkey() {
  const main = path.join(o.checkout, 'dist', 'lib', 'cli', 'main.js');
  if (!fs.existsSync(main)) throw new Error(`${o.checkout} is not built (no dist/lib/cli/main.js): run npm run build there`);
  const dir = o.stateDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'latchkey-failover-'));
  if (!o.stateDir) tmpToRemove = dir;
  else { fs.rmSync(dir, { recursive: true, force: true }); fs.mkdirSync(dir, { recursive: true }); }
  const cl = new LatchkeyCluster(dir);
  say(`latchkey: 3 nodes on 127.0.0.1:${o.ports.join(',')} from ${o.checkout} (heartbeat ${o.heartbeatMs} ms, election timeout ${o.electionTimeoutMs} ms), data and logs in ${dir}`);
  const trials = [];
  try {
    await Promise.all(cl.ids.map(id => cl.start(id)));
    const first = await cl.waitStable({ what: 'latchkey electing its first leader' });
    const taken = await takeSomeLocks(cl.port[first.leader], o.locks);
    log(`latchkey: leader ${first.leader}; ${taken} locks taken and held`);
    for (let t = 1; t <= o.trials; t++) {
      const r = await latchkeyTrial(cl, t);
      trials.push(r);
      say(`latchkey trial ${t}/${o.trials}: killed ${r.killed}; first grant after ${r.grantMs.toFixed(1)} ms (via ${r.via}); new leader ${r.newLeader ?? '?'} seen after ${r.leaderMs === null ? '?' : r.leaderMs.toFixed(1)} ms`);
    }
  } catch (e) {
    e.message += `\nlatchkey logs in ${dir}` + (tmpToRemove === dir ? ' (kept because of the error)' : '');
    if (tmpToRemove === dir) tmpToRemove = null; // keep the logs of a failed run
    throw e;
  } finally {
    await cl.stopAll();
  }
  return {
    system: 'latchkey',
    settings: { heartbeat_ms: o.heartbeatMs, election_timeout_ms: o.electionTimeoutMs, extra_args: o.latchkeyArgs || null, state_locks: o.locks },
    settingsText: `heartbeat ${o.heartbeatMs} ms, election ${o.electionTimeoutMs}-${2 * o.electionTimeoutMs} ms`,
    trials,
  };
}

// ------------------------------------------------------------------ etcd
async function loadEtcd() {
  const req = createRequire(path.join(o.benchDir, 'package.json'));
  let etcd3, cockatiel;
  try {
    etcd3 = req('etcd3');
    cockatiel = req('cockatiel');
  } catch (e) {
    throw new Error(`cannot load etcd3 from ${o.benchDir}/node_modules (${e.message}); run ${o.benchDir}/install-peers.sh`);
  }
  return { Etcd3: etcd3.Etcd3, noop: cockatiel.noop };
}

async function etcdTrial(lib, trial) {
  const { Etcd3, noop } = lib;
  const tStart = performance.now();
  peersSh(['stop', 'etcd'], { check: false }); // a leftover from an interrupted run
  etcdStarted = true;
  peersSh(['start', 'etcd']);
  const endpoints = peersSh(['endpoints', 'etcd']).out.split(',');
  const pids = peersSh(['pids', 'etcd']).out.split(',').map(Number);
  if (endpoints.length !== 3 || pids.length !== 3 || pids.some(p => !p)) throw new Error(`peers.sh gave endpoints ${endpoints} pids ${pids}`);
  // One client per member, pinned to it, with the etcd3 client's retries and circuit breaker off
  // (its default breaker stops calling a host for 5 s after 3 errors, which would hide etcd's own
  // failover time).
  const clients = endpoints.map(ep => new Etcd3({ hosts: [`http://${ep}`], faultHandling: { host: () => noop, global: noop } }));
  const shared = { done: false, tries: 0, errors: {}, leaderMs: null, newLeader: null };
  try {
    // The leader: every member names the same leader id, and one member's own id is it.
    const st = await until(async () => {
      const ss = await Promise.all(clients.map(c => c.maintenance.status({}, { deadline: Date.now() + 1000 })));
      const leader = ss[0].leader;
      if (!leader || leader === '0' || !ss.every(s => s.leader === leader)) return null;
      const idx = ss.findIndex(s => s.header.member_id === leader);
      return idx >= 0 ? { leader, idx } : null;
    }, trialTimeoutMs(), `etcd trial ${trial}: a leader all members agree on`);
    const survivors = [0, 1, 2].filter(i => i !== st.idx);
    // Some state, like latchkey's: a few lock keys under a lease.
    const stateLease = await clients[st.idx].leaseClient.leaseGrant({ TTL: 3600 });
    await Promise.all(Array.from({ length: o.locks }, (_, i) =>
      clients[st.idx].kv.put({ key: Buffer.from(`failover/state/${i}`), value: Buffer.from('x'), lease: stateLease.ID })));
    // A session lease on each survivor (as latchkey's hello), granted before the kill.
    const sessions = await Promise.all(survivors.map(async i => ({
      i, client: clients[i], owner: randomUUID(), lease: (await clients[i].leaseClient.leaseGrant({ TTL: 60 })).ID,
    })));
    const key = Buffer.from(`failover/t${trial}/${randomUUID().slice(0, 8)}`);
    const deadPid = pids[st.idx];
    const deadId = st.leader;
    const result = new Promise(resolve => { shared.resolve = resolve; });
    log(`etcd trial ${trial}: SIGKILL leader ${endpoints[st.idx]} (member ${deadId}, pid ${deadPid})`);
    const t0 = performance.now();
    process.kill(deadPid, 'SIGKILL');
    for (const s of sessions) {
      let outstanding = 0;
      const tick = () => {
        if (shared.done) return;
        if (outstanding < MAX_OUTSTANDING) {
          outstanding++; shared.tries++;
          // The lock step of etcd's mutex recipe: put KEY under the session lease if absent.
          s.client.kv.txn({
            compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
            success: [{ request_put: { key, value: Buffer.from(s.owner), lease: s.lease } }],
            failure: [{ request_range: { key } }],
          }, { deadline: Date.now() + ETCD_CALL_DEADLINE_MS }).then(r => {
            if (shared.done) return;
            const mine = r.succeeded || r.responses[0]?.response_range?.kvs?.[0]?.value?.toString() === s.owner;
            if (mine) { shared.done = true; shared.resolve({ grantMs: performance.now() - t0, via: endpoints[s.i] }); }
            else shared.errors.lock_held = (shared.errors.lock_held ?? 0) + 1;
          }, e => {
            const code = (e && e.constructor && e.constructor.name) || 'error';
            const k = `${code}: ${String(e?.message ?? e).slice(0, 60)}`;
            shared.errors[k] = (shared.errors[k] ?? 0) + 1;
          }).finally(() => { outstanding--; });
        }
        if (shared.leaderMs === null) {
          s.client.maintenance.status({}, { deadline: Date.now() + 1000 }).then(r => {
            if (shared.leaderMs !== null) return;
            if (r.leader && r.leader !== '0' && r.leader !== deadId) { shared.leaderMs = performance.now() - t0; shared.newLeader = r.leader; }
          }, () => {});
        }
        setTimeout(tick, jitter());
      };
      tick();
    }
    let r;
    try {
      r = await withTimeout(result, trialTimeoutMs(), `etcd trial ${trial}: first grant after killing the leader`);
    } finally { shared.done = true; }
    for (let i = 0; i < 20 && shared.leaderMs === null; i++) await sleep(5);
    log(`etcd trial ${trial}: grant after ${r.grantMs.toFixed(1)} ms via ${r.via}; new leader seen after ${shared.leaderMs?.toFixed(1)} ms; ${shared.tries} tries; errors ${JSON.stringify(shared.errors)}; trial took ${((performance.now() - tStart) / 1000).toFixed(1)} s`);
    return { grantMs: r.grantMs, leaderMs: shared.leaderMs, killed: endpoints[st.idx], newLeader: shared.newLeader, via: r.via, tries: shared.tries, errors: shared.errors };
  } finally {
    shared.done = true;
    for (const c of clients) { try { c.close(); } catch { /* closing */ } }
    peersSh(['stop', 'etcd'], { check: false });
    etcdStarted = false;
  }
}

function etcdVersion() {
  try { return execFileSync('etcd', ['--version'], { encoding: 'utf8' }).split('\n')[0].replace(/^etcd Version:\s*/, ''); } catch { return null; }
}

async function runEtcd() {
  if (!fs.existsSync(path.join(o.benchDir, 'peers.sh'))) throw new Error(`no ${o.benchDir}/peers.sh (set --bench-dir)`);
  const lib = await loadEtcd();
  const version = etcdVersion();
  if (!version) throw new Error(`etcd is not installed: run ${o.benchDir}/install-peers.sh`);
  say(`etcd ${version}: a fresh 3-member cluster from ${o.benchDir}/peers.sh for each trial (its defaults: heartbeat 100 ms, election 1000 ms)`);
  const trials = [];
  for (let t = 1; t <= o.trials; t++) {
    const r = await etcdTrial(lib, t);
    trials.push(r);
    say(`etcd trial ${t}/${o.trials}: killed ${r.killed}; first grant after ${r.grantMs.toFixed(1)} ms (via ${r.via}); new leader seen after ${r.leaderMs === null ? '?' : r.leaderMs.toFixed(1)} ms`);
  }
  return {
    system: 'etcd',
    version,
    settings: { heartbeat_ms: 100, election_timeout_ms: 1000, state_keys: o.locks },
    settingsText: 'heartbeat 100 ms, election 1000 ms (defaults)',
    trials,
  };
}

// ------------------------------------------------------------------ output
function gitRev(dir) {
  try { return execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return null; }
}

function table(results) {
  const rows = [['system', 'settings', 'trials', 'each trial: first grant ms', 'median', 'min', 'max', 'new leader seen, median ms']];
  for (const r of results) {
    const g = stats(r.trials.map(t => t.grantMs));
    const l = stats(r.trials.map(t => t.leaderMs));
    rows.push([r.system, r.settingsText, String(r.trials.length), r.trials.map(t => t.grantMs.toFixed(0)).join(', '),
      g.median.toFixed(1), g.min.toFixed(1), g.max.toFixed(1), l.median === null ? '-' : l.median.toFixed(1)]);
  }
  const w = rows[0].map((_, c) => Math.max(...rows.map(r => r[c].length)));
  const right = new Set([2, 4, 5, 6, 7]);
  const fmt = r => r.map((x, c) => (right.has(c) ? x.padStart(w[c]) : x.padEnd(w[c]))).join('  ').trimEnd();
  return [
    'failover: SIGKILL of the leader -> first successful grant through a survivor (ms), 3 members, 127.0.0.1',
    fmt(rows[0]), w.map(n => '-'.repeat(n)).join('  '), ...rows.slice(1).map(fmt),
  ].join('\n');
}

async function main() {
  const results = [];
  for (const s of o.systems) results.push(s === 'latchkey' ? await runLatchkey() : await runEtcd());
  process.stdout.write('\n' + table(results) + '\n');
  process.stdout.write(`(tries every ${o.retryMinMs}-${o.retryMaxMs} ms on each survivor without waiting for earlier ones; latchkey: preempt on a session opened before the kill; etcd: put-if-absent Txn under a lease granted before the kill)\n`);
  if (o.jsonOut) {
    fs.mkdirSync(path.dirname(o.jsonOut), { recursive: true });
    const common = { node: process.version, host: os.hostname(), cpus: os.cpus().length, ts: new Date().toISOString() };
    for (const r of results) {
      const g = stats(r.trials.map(t => t.grantMs));
      const l = stats(r.trials.map(t => t.leaderMs));
      const line = {
        system: r.system, metric: 'failover_kill9_leader_to_first_grant_ms', trials: r.trials.length,
        grant_ms: r.trials.map(t => round(t.grantMs, 2)), median_ms: round(g.median, 2), min_ms: round(g.min, 2), max_ms: round(g.max, 2),
        new_leader_seen_ms: r.trials.map(t => round(t.leaderMs, 2)), new_leader_seen_median_ms: round(l.median, 2),
        settings: r.settings, ...(r.version ? { server_version: r.version } : {}),
        ...(r.system === 'latchkey' ? { checkout: o.checkout, commit: gitRev(o.checkout) } : {}),
        detail: r.trials.map(t => ({ killed: t.killed, new_leader: t.newLeader, via: t.via, tries: t.tries, errors: t.errors })),
        retry_ms: [o.retryMinMs, o.retryMaxMs], ...common,
      };
      fs.appendFileSync(o.jsonOut, JSON.stringify(line) + '\n');
    }
    say(`results appended to ${o.jsonOut}`);
  }
}

main().then(() => { cleanupSync(); process.exit(0); }, (e) => {
  say(`FAILED: ${e && e.stack ? e.stack : e}`);
  cleanupSync();
  process.exit(1);
});
