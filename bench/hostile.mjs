#!/usr/bin/env node
// Slow and hostile clients (issue 5, item 7): do well-behaved clients keep their latency while
// others misbehave, and does every node's memory stay bounded?
//
//   node bench/hostile.mjs [--duration 10] [--phases baseline,pipeline,flood,...]
//                          [--victims 8] [--out DIR] [--node-args "..."] [--verbose]
//   node bench/hostile.mjs --help
//
// A fresh 3-node cluster of real `node bin/main server` processes on 127.0.0.1 (free ports,
// a temp data dir removed at the end). Victims, in this process: --victims LockClients, each on
// its own lock, doing preempt + release (one every --victim-pace-ms, back to back if slower),
// spread over the three nodes; plus a contended pair doing acquire/release on one shared lock.
// The victims run through the whole bench; each phase takes the samples whose preempt started
// inside its window. Phases (each --duration s once the hostile load is in place, then
// --settle s with it gone):
//   baseline  nothing hostile
//   pipeline  per node: a connection that pipelines `read` of a --read-file-bytes guarded file,
//             and one that pipelines `check`, as fast as the socket takes them, never reading
//   pipeline-reconnect  the same, connecting again at once whenever the node cuts it off
//   slow      per node: --slow-conns connections that send a `status` line one byte per second,
//             and --slow-conns that say hello and then trickle a `check` one byte per second
//   idle      --idle-conns connections: half never send a byte, 40% sent one `status` and went
//             quiet, 10% said hello and keep their session alive (keepalive every 3 s);
//             spread over the nodes, or all on the leader with --idle-target leader
//   flood     acquire with no timeout, as fast as possible: --flood-hot-sessions sessions queue
//             on --flood-hot-locks hot locks (one holder each, forever), re-sending at once
//             when refused; --flood-distinct-sessions sessions acquire fresh lock names with
//             --flood-window requests in flight, and keep going after limit_exceeded
//   all       pipeline, slow, idle and flood at once
// By default the phases are all of these, then baseline again (to see how much the machine
// itself drifted; the first baseline is the reference for the ratios).
// Hostile clients run in child processes (one per load, at --hostile-nice, so their own CPU
// takes less from the nodes: on a real deployment they would be on other machines), spread
// round-robin over all three nodes, leader included. The nodes run with --node-args, by default
// bounds the flood reaches within a phase (see DEFAULT_NODE_ARGS). Per phase: victim preempt p50/p99/max,
// p99 / baseline p99 (issue target <= 2), cycles/s, contended acquire p99, victim errors, each
// node's VmRSS (/proc/PID/status) before / at the end / peak / after settling, and what the
// hostile clients saw (answers by code, connections closed by the node, ...), the log entries
// the cluster committed per second, the terms that passed (elections), and whether new clients
// get in: every 500 ms a fresh connection to each node sends one status (failures, p99).
// Results: a table on stdout, and hostile.jsonl + hostile.txt + the node logs in
// bench/results/<date>-<time>-hostile/ (or --out). Every process started is stopped at the end,
// also on error or Ctrl-C.
//
// Cost: phases x (duration + settle + ~2-4 s set-up), about 2 min with the defaults (8 phases);
// --duration 3 --settle 1 makes a ~1 min smoke run.
import { spawn, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Conn, nodeStatus, numberFlag, parseFlags, withTimeout } from './common.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);
const ALL_PHASES = ['baseline', 'pipeline', 'pipeline-reconnect', 'slow', 'idle', 'flood', 'all'];
// The unloaded baseline again at the end shows how much the machine itself drifted.
const DEFAULT_PHASES = [...ALL_PHASES, 'baseline'];
/** The hostile loads of each phase. */
const PHASE_LOADS = {
  baseline: [],
  pipeline: ['pipeline'],
  'pipeline-reconnect': ['pipeline-reconnect'],
  slow: ['slow'],
  idle: ['idle'],
  flood: ['flood'],
  all: ['pipeline', 'slow', 'idle', 'flood'],
};
// Bounds the flood can reach within a phase (the defaults, 10,000 waiters per lock and 100,000
// locks per session, take minutes and ~10,000 connections); --node-args "" runs the defaults.
const DEFAULT_NODE_ARGS = '--max-waiters-per-lock 500 --max-locks-per-session 20000';

const HELP = `usage: node bench/hostile.mjs [flags]

Victim latency and node memory under slow and hostile clients, 3-node latchkey on 127.0.0.1.

  --duration S               seconds measured per phase (default 10)
  --settle S                 seconds after each phase with the hostile load gone (default 3)
  --warmup S                 seconds of victim traffic before the first phase (default 2)
  --phases LIST              from ${ALL_PHASES.join(',')} (default ${DEFAULT_PHASES.join(',')});
                             baseline is run first if not named first; the first one is the reference
  --victims N                uncontended victim clients (default 8)
  --victim-pace-ms MS        each victim starts a cycle every MS ms (0: back to back; default 10)
  --no-contended             no contended victim pair
  --read-file-bytes N        size of the guarded file the pipeliner reads (default 1048576)
  --pipeline-conns N         pipelining connections per node and action (default 1)
  --slow-conns N             slow connections per node and kind (default 20)
  --idle-conns N             idle connections in all (default 2000)
  --idle-target WHERE        spread (over all nodes, default) or leader (all on the leader)
  --flood-hot-locks N        hot locks (default 4)
  --flood-hot-sessions N     sessions queueing on every hot lock (default 800)
  --flood-distinct-sessions N  sessions taking fresh locks (default 4)
  --flood-window N           requests in flight per distinct session (default 256)
  --hostile-nice N           nice value of the hostile client processes (default 10; 0 = none)
  --node-args "..."          extra flags for every node (default "${DEFAULT_NODE_ARGS}")
  --node-flags "..."         flags for node itself, e.g. "--cpu-prof --cpu-prof-dir /tmp/prof"
                             (profiles are written when the nodes stop at the end)
  --out DIR                  results folder (default bench/results/<date>-<time>-hostile)
  --keep                     keep the nodes' data dirs
  --samples                  also write every victim sample (phase, start s, ms) to samples.csv
  --verbose                  progress on stderr`;

// ------------------------------------------------------------------ flags
function parseArgs(argv) {
  const o = {
    duration: 10, settle: 3, warmup: 2, phases: DEFAULT_PHASES, victims: 8, victimPaceMs: 10, contended: true,
    readFileBytes: 1 << 20, pipelineConns: 1, slowConns: 20, idleConns: 2000, idleTarget: 'spread',
    floodHotLocks: 4, floodHotSessions: 800, floodDistinctSessions: 4, floodWindow: 256,
    hostileNice: 10, nodeArgs: DEFAULT_NODE_ARGS, nodeFlags: '', out: null, keep: false, verbose: false, samples: false,
    worker: null, spec: null,
  };
  const num = (flag, v, min = 0) => numberFlag(usage, flag, v, min);
  parseFlags(argv, (flag, val) => {
    switch (flag) {
      case '-h': case '--help': process.stdout.write(HELP + '\n'); process.exit(0); break;
      case '--duration': o.duration = num(flag, val(), 1); break;
      case '--settle': o.settle = num(flag, val(), 0); break;
      case '--warmup': o.warmup = num(flag, val(), 0); break;
      case '--phases': o.phases = val().split(',').map(s => s.trim()).filter(Boolean); break;
      case '--victims': o.victims = Math.floor(num(flag, val(), 1)); break;
      case '--victim-pace-ms': o.victimPaceMs = num(flag, val(), 0); break;
      case '--no-contended': o.contended = false; break;
      case '--read-file-bytes': o.readFileBytes = Math.floor(num(flag, val(), 0)); break;
      case '--pipeline-conns': o.pipelineConns = Math.floor(num(flag, val(), 0)); break;
      case '--slow-conns': o.slowConns = Math.floor(num(flag, val(), 0)); break;
      case '--idle-conns': o.idleConns = Math.floor(num(flag, val(), 0)); break;
      case '--idle-target': o.idleTarget = val(); if (!['spread', 'leader'].includes(o.idleTarget)) usage('--idle-target is spread or leader'); break;
      case '--flood-hot-locks': o.floodHotLocks = Math.floor(num(flag, val(), 0)); break;
      case '--flood-hot-sessions': o.floodHotSessions = Math.floor(num(flag, val(), 0)); break;
      case '--flood-distinct-sessions': o.floodDistinctSessions = Math.floor(num(flag, val(), 0)); break;
      case '--flood-window': o.floodWindow = Math.floor(num(flag, val(), 1)); break;
      case '--hostile-nice': o.hostileNice = Math.floor(num(flag, val(), 0)); break;
      case '--node-args': o.nodeArgs = val(); break;
      case '--node-flags': o.nodeFlags = val(); break;
      case '--out': o.out = path.resolve(val()); break;
      case '--keep': o.keep = true; break;
      case '--samples': o.samples = true; break;
      case '--verbose': case '-v': o.verbose = true; break;
      case '--worker': o.worker = val(); break; // internal: a hostile client process
      case '--spec': o.spec = JSON.parse(val()); break;
      default: return false;
    }
    return true;
  }, usage);
  for (const p of o.phases) if (!ALL_PHASES.includes(p)) usage(`unknown phase '${p}' (${ALL_PHASES.join(', ')})`);
  if (o.phases[0] !== 'baseline') o.phases = ['baseline', ...o.phases];
  return o;
}
function usage(msg) {
  process.stderr.write(`hostile: ${msg}\n\n${HELP}\n`);
  process.exit(2);
}

const o = parseArgs(process.argv.slice(2));
const sleep = ms => new Promise(r => setTimeout(r, ms));
const now = () => performance.now();
const say = (...a) => process.stderr.write(`hostile: ${a.join(' ')}\n`);
const log = (...a) => { if (o.verbose) process.stderr.write(`[hostile ${new Date().toISOString().slice(11, 23)}] ${a.join(' ')}\n`); };
const round = (x, d = 1) => (x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d);
const bump = (m, k, n = 1) => { m[k] = (m[k] ?? 0) + n; };

/** Connects in batches, so 2,000 connects do not overflow the listen backlog. */
async function inBatches(n, size, fn) {
  const out = [];
  for (let i = 0; i < n; i += size) {
    out.push(...await Promise.all(Array.from({ length: Math.min(size, n - i) }, (_, j) => fn(i + j))));
  }
  return out;
}

// ================================================================== hostile workers (child processes)
// Each gets {ports, ...} in --spec, sends {type:'ready'} once its load is in place, and on
// {type:'stop'} sends {type:'stats', stats} and exits.
async function runWorker(kind, spec) {
  const stats = { kind: spec.label ?? kind };
  const stopping = [];
  let stopped = false;
  const tasks = [];
  const ports = spec.ports;
  const t0 = now();
  const secs = () => round((now() - t0) / 1000, 1);
  // Keep the worker's own answers out of the parent's way; errors are counted, not thrown.
  process.on('uncaughtException', e => { bump(stats, `worker_exception: ${String(e?.message ?? e).slice(0, 60)}`); });

  if (kind === 'pipeline') {
    // Pipelines requests as fast as the socket accepts them and never reads an answer; cut off,
    // it connects again at once and does the same.
    stats.requests_written = 0; stats.by_conn = {};
    stats.answers_read_at_stop = 0; stats.answer_bytes_read_at_stop = 0; stats.limit_exceeded_read_at_stop = 0;
    const live = new Set();
    const open = (port, action, key) => new Promise((resolve) => {
      const c = stats.by_conn[key] ??= { connects: 0, cut_off: 0, cut_at_s: [], requests: 0 };
      const s = net.connect({ port, host: '127.0.0.1' });
      s.pause(); // never read
      const rec = { s, closed: false };
      live.add(rec);
      s.on('error', () => undefined);
      s.on('close', () => {
        rec.closed = true;
        live.delete(rec);
        resolve();
        if (stopped) return;
        c.cut_off++;
        if (c.cut_at_s.length < 20) c.cut_at_s.push(secs());
        if (spec.reconnect) setTimeout(() => { if (!stopped) open(port, action, key); }, 50);
      });
      s.once('connect', () => {
        c.connects++;
        let id = 0;
        const body = action === 'read' ? `"action":"read","file":"${spec.file}"` : `"action":"check","lock_name":"${spec.file}"`;
        const pump = () => {
          while (!rec.closed && !stopped) {
            let chunk = '';
            for (let k = 0; k < 256; k++) chunk += `{"id":${++id},${body}}\n`;
            stats.requests_written += 256;
            c.requests += 256;
            if (!s.write(chunk)) { s.once('drain', pump); return; }
          }
        };
        pump();
        resolve();
      });
    });
    for (const [i, port] of ports.entries()) {
      for (let k = 0; k < spec.conns; k++) {
        const where = i === 0 ? 'leader' : `follower${i}`;
        tasks.push(open(port, 'read', `${where}/read#${k}`), open(port, 'check', `${where}/check#${k}`));
      }
    }
    await Promise.all(tasks);
    stopping.push(async () => {
      // Now read for up to a second what the node still had queued, to see what it answered.
      const needle = 'limit_exceeded';
      await Promise.all([...live].map(r => new Promise((resolve) => {
        let tail = '';
        r.s.on('data', (d) => {
          stats.answer_bytes_read_at_stop += d.length;
          for (let i = d.indexOf(10); i >= 0; i = d.indexOf(10, i + 1)) stats.answers_read_at_stop++;
          const text = tail + d.toString('latin1');
          for (let j = text.indexOf(needle); j >= 0; j = text.indexOf(needle, j + 1)) stats.limit_exceeded_read_at_stop++;
          tail = text.slice(-(needle.length - 1));
        });
        r.s.resume();
        setTimeout(() => { r.s.destroy(); resolve(); }, 1000);
      })));
    });
  } else if (kind === 'slow') {
    // One byte per second: a status line from the first byte, and a check after a hello.
    stats.connections = 0; stats.bytes_sent = 0; stats.answers = {}; stats.closed_by_node = {}; stats.closed_after_s = {};
    const conns = [];
    const trickle = (s, text, rec) => {
      let i = 0;
      const t = setInterval(() => {
        if (rec.closed || stopped) { clearInterval(t); return; }
        s.write(text[i % text.length]);
        i++;
        stats.bytes_sent++;
      }, 1000);
      rec.timer = t;
    };
    const open = (port, mode) => new Promise((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' });
      const rec = { s, closed: false, mode, opened: now() };
      conns.push(rec);
      let buf = '';
      let helloed = false;
      s.on('error', () => undefined);
      s.on('close', () => {
        rec.closed = true;
        clearInterval(rec.timer);
        if (!stopped) {
          bump(stats.closed_by_node, mode);
          (stats.closed_after_s[mode] ??= []).push(round((now() - rec.opened) / 1000, 1));
        }
        resolve();
      });
      s.on('data', (d) => {
        buf += d.toString('utf8');
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i); buf = buf.slice(i + 1);
          let m; try { m = JSON.parse(line); } catch { continue; }
          if (m.id === undefined) continue;
          bump(stats.answers, `${mode}:${m.ok ? 'ok' : m.error?.code}`);
          if (mode === 'hello' && !helloed) {
            helloed = true;
            trickle(s, '{"id":2,"action":"check","lock_name":"slow/x"}\n', rec);
            resolve();
          }
        }
      });
      s.once('connect', () => {
        stats.connections++;
        if (mode === 'raw') { trickle(s, '{"id":1,"action":"status"}\n', rec); resolve(); }
        else s.write(`${JSON.stringify({ id: 1, action: 'hello', client_id: randomUUID() })}\n`);
      });
    });
    for (const port of ports) for (let i = 0; i < spec.conns; i++) tasks.push(open(port, 'raw'), open(port, 'hello'));
    await withTimeout(Promise.all(tasks), 30000, 'slow connections').catch(e => bump(stats, e.message));
    stopping.push(async () => { for (const r of conns) { clearInterval(r.timer); r.s.destroy(); } });
  } else if (kind === 'idle') {
    // Half never send a byte, 40% send one status and go quiet, 10% hold a session (keepalive).
    const n = spec.conns;
    const plan = { silent: Math.round(n * 0.5), status: Math.round(n * 0.4) };
    plan.session = n - plan.silent - plan.status;
    stats.planned = plan; stats.opened = {}; stats.refused = {}; stats.closed_by_node = {}; stats.closed_after_s = {};
    stats.keepalive_answers = {};
    const conns = [];
    const kinds = [...Array(plan.silent).fill('silent'), ...Array(plan.status).fill('status'), ...Array(plan.session).fill('session')];
    await inBatches(kinds.length, 100, async (i) => {
      const mode = kinds[i];
      const port = ports[i % ports.length];
      const c = new Conn(port);
      const rec = { c, mode, opened: now(), closed: false };
      c.onClose = () => {
        rec.closed = true;
        clearInterval(rec.timer);
        if (!stopped) {
          bump(stats.closed_by_node, mode);
          (stats.closed_after_s[mode] ??= []).push(round((now() - rec.opened) / 1000, 1));
        }
      };
      try {
        await c.connect(10000);
      } catch (e) {
        bump(stats.refused, `${mode}:${e.code ?? e.message}`);
        return;
      }
      conns.push(rec);
      bump(stats.opened, mode);
      try {
        if (mode === 'status') {
          const r = await withTimeout(c.request({ action: 'status' }), 10000, 'status');
          if (!r.ok) bump(stats.refused, `status:${r.error?.code}`);
        } else if (mode === 'session') {
          const clientId = randomUUID();
          const r = await withTimeout(c.request({ action: 'hello', client_id: clientId }), 20000, 'hello');
          if (!r.ok) { bump(stats.refused, `session:${r.error?.code}`); return; }
          rec.timer = setInterval(() => {
            c.request({ action: 'keepalive', client_id: clientId })
              .then(a => bump(stats.keepalive_answers, a.ok ? 'ok' : a.error?.code), () => undefined);
          }, 3000);
        }
      } catch (e) { bump(stats.refused, `${mode}:${e.code ?? e.message}`); }
    });
    stopping.push(async () => { for (const r of conns) { clearInterval(r.timer); r.c.destroy(); } });
  } else if (kind === 'flood') {
    // acquire with no timeout, as fast as the answers come back.
    stats.sessions = { hot: 0, distinct: 0 }; stats.hello_refused = {}; stats.sent = 0; stats.answers = {};
    stats.closed_by_node = 0; stats.granted_hot = 0; stats.granted_distinct = 0;
    stats.in_flight_max = 0;
    let inFlight = 0;
    const conns = [];
    const openSession = async (i, role) => {
      const c = new Conn(ports[i % ports.length]);
      try { await c.connect(10000); } catch (e) { bump(stats.hello_refused, e.code ?? e.message); return null; }
      conns.push(c);
      c.onClose = () => { if (!stopped) stats.closed_by_node++; };
      const clientId = randomUUID();
      const r = await withTimeout(c.request({ action: 'hello', client_id: clientId }), 30000, 'hello')
        .catch(e => ({ ok: false, error: { code: e.code ?? 'no answer' } }));
      if (!r.ok) { bump(stats.hello_refused, r.error?.code); return null; }
      stats.sessions[role]++;
      return { c, clientId };
    };
    const acquire = (sess, lock) => {
      if (stopped || sess.c.closed) return Promise.resolve(null);
      stats.sent++;
      inFlight++;
      stats.in_flight_max = Math.max(stats.in_flight_max, inFlight);
      return sess.c.request({ action: 'acquire', lock_name: lock, client_id: sess.clientId }).then((a) => {
        inFlight--;
        bump(stats.answers, a.ok ? 'ok' : a.error?.code ?? '?');
        return a;
      }, () => { inFlight--; return null; });
    };
    const hot = await inBatches(spec.hotSessions, 100, i => openSession(i, 'hot'));
    const distinct = await inBatches(spec.distinctSessions, 100, i => openSession(i, 'distinct'));
    process.send({ type: 'ready' });
    const hotLoop = (sess, lock) => acquire(sess, lock).then((a) => {
      if (a === null) return;
      if (a.ok) { stats.granted_hot++; return; } // hold it forever
      setImmediate(() => hotLoop(sess, lock)); // refused: again, at once
    });
    for (const sess of hot) if (sess) for (let k = 0; k < spec.hotLocks; k++) hotLoop(sess, `flood/hot/${k}`);
    for (const [d, sess] of distinct.entries()) {
      if (!sess) continue;
      let n = 0;
      const one = () => acquire(sess, `flood/d${d}/${sess.clientId.slice(0, 8)}/${n++}`).then((a) => {
        if (a === null) return;
        if (a.ok) stats.granted_distinct++;
        one();
      });
      for (let w = 0; w < spec.window; w++) one();
    }
    stopping.push(async () => { for (const c of conns) c.destroy(); });
  } else {
    throw new Error(`unknown worker ${kind}`);
  }
  if (kind !== 'flood') process.send({ type: 'ready' });
  stats.ready_after_s = secs();
  process.on('message', async (m) => {
    if (m?.type !== 'stop') return;
    stats.ran_s = secs();
    stopped = true;
    for (const f of stopping) await f().catch(() => undefined);
    process.send({ type: 'stats', stats }, () => process.exit(0));
  });
  process.on('disconnect', () => process.exit(0));
}

// ================================================================== the parent
const children = new Set();
const workers = new Set();
let cleanedUp = false;
let tmpToRemove = null;

function cleanupSync() {
  if (cleanedUp) return;
  cleanedUp = true;
  for (const w of workers) { try { w.kill('SIGKILL'); } catch { /* gone */ } }
  for (const c of children) if (c.exitCode === null && c.signalCode === null) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  if (tmpToRemove && !o.keep) { try { fs.rmSync(tmpToRemove, { recursive: true, force: true }); } catch { /* best effort */ } }
}

async function freePorts(n) {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve(s));
  })));
  const ports = servers.map(s => s.address().port);
  await Promise.all(servers.map(s => new Promise(r => s.close(r))));
  return ports;
}

function rssKiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch { return null; }
}

class Cluster {
  constructor(dir, ports) {
    this.dir = dir; this.ids = ['n1', 'n2', 'n3']; this.proc = {}; this.deaths = [];
    this.port = Object.fromEntries(this.ids.map((id, i) => [id, ports[i]]));
    this.peers = this.ids.map(id => `${id}=127.0.0.1:${this.port[id]}`).join(',');
  }

  async start(id) {
    const data = path.join(this.dir, id);
    fs.mkdirSync(data, { recursive: true });
    const fd = fs.openSync(path.join(this.dir, `${id}.log`), 'a');
    const args = [...o.nodeFlags.split(/\s+/).filter(Boolean), path.join(ROOT, 'bin', 'main'), 'server', '--id', id,
      '--listen', `127.0.0.1:${this.port[id]}`, '--peers', this.peers, '--data', data,
      ...o.nodeArgs.split(/\s+/).filter(Boolean)];
    const c = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    children.add(c);
    this.proc[id] = c;
    c.once('exit', (code, signal) => {
      children.delete(c);
      if (!this.stopping) {
        this.deaths.push({ node: id, code, signal, at: now() });
        say(`node ${id} EXITED (${code ?? signal}); log tail:\n${this.tail(id)}`);
      }
    });
    log(`${id} pid ${c.pid} port ${this.port[id]}`);
    const end = now() + 20000;
    for (;;) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`${id} exited at start; log tail:\n${this.tail(id)}`);
      if (await nodeStatus(this.port[id], 500).then(() => true, () => false)) return;
      if (now() > end) throw new Error(`${id} not listening within 20 s`);
      await sleep(50);
    }
  }

  tail(id, n = 12) {
    try { return fs.readFileSync(path.join(this.dir, `${id}.log`), 'utf8').trim().split('\n').slice(-n).join('\n'); } catch { return '(no log)'; }
  }

  alive(id) { const c = this.proc[id]; return c && c.exitCode === null && c.signalCode === null; }

  rss() { return Object.fromEntries(this.ids.map(id => [id, this.alive(id) ? rssKiB(this.proc[id].pid) : null])); }

  /** Waits until every node names the same leader in the same term; returns its id. */
  async waitLeader(ms = 20000) {
    const end = now() + ms;
    for (;;) {
      const ss = await Promise.all(this.ids.map(id => nodeStatus(this.port[id], 1000).catch(() => null)));
      const l = ss[0]?.leader;
      if (l && ss.every(s => s && s.leader === l && s.term === ss[0].term)) return { leader: l, term: ss[0].term, commit: ss[0].commit_index };
      if (now() > end) throw new Error(`no leader all nodes agree on within ${ms / 1000} s`);
      await sleep(100);
    }
  }

  /** The leader's commit index (null if no answer). */
  async commitIndex(leader) {
    const s = await nodeStatus(this.port[leader], 5000).catch(() => null);
    return s?.commit_index ?? null;
  }

  async restartDead() {
    for (const id of this.ids) if (!this.alive(id)) { say(`restarting ${id}`); await this.start(id); }
  }

  async stop() {
    this.stopping = true;
    await Promise.all(this.ids.map(async (id) => {
      const c = this.proc[id];
      if (!this.alive(id)) return;
      const exited = new Promise(r => c.once('exit', r));
      c.kill('SIGTERM');
      const t = setTimeout(() => { try { c.kill('SIGKILL'); } catch { /* gone */ } }, 10000);
      await exited;
      clearTimeout(t);
    }));
  }
}

// ------------------------------------------------------------------ victims
function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

class Victims {
  constructor(LockClient, cluster) {
    this.LockClient = LockClient; this.cluster = cluster;
    this.preempt = []; // [startedAt, ms]
    this.contended = []; // [startedAt, ms]
    this.cycles = []; // finishedAt
    this.errors = []; // [at, code]
    this.running = true; this.loops = []; this.clients = [];
  }

  servers(i) {
    const all = this.cluster.ids.map(id => `127.0.0.1:${this.cluster.port[id]}`);
    return [...all.slice(i % 3), ...all.slice(0, i % 3)]; // victim i starts on node i % 3
  }

  async start() {
    const n = o.victims + (o.contended ? 2 : 0);
    for (let i = 0; i < n; i++) {
      const c = new this.LockClient({ servers: this.servers(i), clientId: `victim-${i}-${randomUUID().slice(0, 8)}` });
      await c.connect();
      this.clients.push(c);
    }
    for (let i = 0; i < o.victims; i++) this.loops.push(this.uncontended(this.clients[i], `victim/${i}`));
    if (o.contended) for (let i = 0; i < 2; i++) this.loops.push(this.contendedLoop(this.clients[o.victims + i]));
  }

  fail(e) {
    this.errors.push([now(), e?.code ?? String(e?.message ?? e).slice(0, 60)]);
    return sleep(20);
  }

  async uncontended(client, name) {
    while (this.running) {
      const t0 = now();
      try {
        const lock = await client.preempt(name);
        const t1 = now();
        this.preempt.push([t0, t1 - t0]);
        await lock.release();
        this.cycles.push(now());
      } catch (e) { if (this.running) await this.fail(e); }
      const rest = o.victimPaceMs - (now() - t0);
      if (rest > 0) await sleep(rest);
    }
  }

  async contendedLoop(client) {
    while (this.running) {
      const t0 = now();
      try {
        const lock = await client.acquire('victim/shared', { timeoutMs: 10000 });
        this.contended.push([t0, now() - t0]);
        await sleep(1);
        await lock.release();
      } catch (e) { if (this.running) await this.fail(e); }
      const rest = o.victimPaceMs - (now() - t0);
      if (rest > 0) await sleep(rest);
    }
  }

  window(t0, t1) {
    const pick = xs => xs.filter(([t]) => t >= t0 && t < t1).map(([, ms]) => ms).sort((a, b) => a - b);
    const p = pick(this.preempt);
    const c = pick(this.contended);
    const errors = {};
    for (const [t, code] of this.errors) if (t >= t0 && t < t1) bump(errors, code);
    const cycles = this.cycles.filter(t => t >= t0 && t < t1).length;
    return {
      samples: p.length, p50: percentile(p, 0.5), p99: percentile(p, 0.99), p999: percentile(p, 0.999), max: p.at(-1) ?? null,
      cycles_per_s: cycles / ((t1 - t0) / 1000),
      contended_samples: c.length, contended_p50: percentile(c, 0.5), contended_p99: percentile(c, 0.99),
      errors,
    };
  }

  async stop() {
    this.running = false;
    await withTimeout(Promise.allSettled(this.loops), 15000, 'victims stopping').catch(() => undefined);
    await Promise.allSettled(this.clients.map(c => c.close()));
  }
}

// ------------------------------------------------------------------ hostile loads from the parent side
function startWorker(kind, cluster, leader) {
  // Node order starting with the leader, so a load with one connection per node hits it too.
  const ids = [leader, ...cluster.ids.filter(id => id !== leader)];
  const spec = { ports: ids.map(id => cluster.port[id]) };
  if (kind === 'pipeline' || kind === 'pipeline-reconnect') {
    Object.assign(spec, { file: 'hostile/big', conns: o.pipelineConns, reconnect: kind === 'pipeline-reconnect' });
  }
  spec.label = kind;
  const workerKind = kind === 'pipeline-reconnect' ? 'pipeline' : kind;
  if (kind === 'slow') Object.assign(spec, { conns: o.slowConns });
  if (kind === 'idle') Object.assign(spec, { conns: o.idleConns, ...(o.idleTarget === 'leader' ? { ports: spec.ports.slice(0, 1) } : {}) });
  if (kind === 'flood') {
    Object.assign(spec, {
      hotLocks: o.floodHotLocks, hotSessions: o.floodHotSessions, distinctSessions: o.floodDistinctSessions, window: o.floodWindow,
    });
  }
  const w = spawn(process.execPath, [SELF, '--worker', workerKind, '--spec', JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  workers.add(w);
  if (o.hostileNice > 0) { try { os.setPriority(w.pid, o.hostileNice); } catch { /* not allowed */ } }
  let onStats;
  const statsP = new Promise((resolve) => { onStats = resolve; });
  const ready = new Promise((resolve, reject) => {
    w.on('message', (m) => {
      if (m?.type === 'ready') resolve();
      if (m?.type === 'stats') onStats(m.stats);
    });
    w.once('exit', (code) => { workers.delete(w); reject(new Error(`worker ${kind} exited (${code}) before it was ready`)); onStats({ kind, exited: code }); });
  });
  return {
    kind, ready,
    async stop() {
      if (w.exitCode === null) { try { w.send({ type: 'stop' }); } catch { /* gone */ } }
      const stats = await withTimeout(statsP, 20000, `worker ${kind} stats`).catch(e => ({ kind, error: e.message }));
      if (w.exitCode === null) { await withTimeout(new Promise(r => w.once('exit', r)), 5000, 'worker exit').catch(() => w.kill('SIGKILL')); }
      workers.delete(w);
      return stats;
    },
  };
}

/** Makes the guarded file the pipeliner reads. */
async function makeBigFile(LockClient, cluster, bytes) {
  if (bytes <= 0) return;
  const c = new LockClient({ servers: cluster.ids.map(id => `127.0.0.1:${cluster.port[id]}`) });
  try {
    const lock = await c.preempt('hostile/big');
    const chunk = 'x'.repeat(60000);
    for (let done = 0; done < bytes;) {
      const part = chunk.slice(0, Math.min(chunk.length, bytes - done));
      await c.append(lock, part, 'hostile/big');
      done += part.length;
    }
    await lock.release();
  } finally { await c.close(); }
}

// ------------------------------------------------------------------ output
const mib = kib => (kib === null || kib === undefined ? '-' : (kib / 1024).toFixed(0));

function hostileSummary(stats) {
  const parts = [];
  for (const s of stats) {
    if (s.error || s.exited !== undefined) { parts.push(`${s.kind}: ${s.error ?? `exited ${s.exited}`}`); continue; }
    if (s.kind.startsWith('pipeline')) {
      const conns = Object.entries(s.by_conn).map(([k, c]) => `${k} cut ${c.cut_off}x`).join(', ');
      parts.push(`${s.kind}: wrote ${s.requests_written} reqs; ${conns}; at stop read ${s.answers_read_at_stop} answers` +
        ` (${(s.answer_bytes_read_at_stop / 1048576).toFixed(0)} MiB, ${s.limit_exceeded_read_at_stop} limit_exceeded)`);
    } else if (s.kind === 'slow') {
      const closed = Object.entries(s.closed_by_node).map(([k, v]) => `${k} ${v} (median ${medianOf(s.closed_after_s[k])} s)`).join(', ') || 'none';
      parts.push(`slow: ${s.connections} conns, ${s.bytes_sent} bytes trickled, answers ${JSON.stringify(s.answers)}, closed by node: ${closed}`);
    } else if (s.kind === 'idle') {
      const closed = Object.entries(s.closed_by_node).map(([k, v]) => `${k} ${v} (median ${medianOf(s.closed_after_s[k])} s)`).join(', ') || 'none';
      parts.push(`idle: opened ${JSON.stringify(s.opened)}, refused ${JSON.stringify(s.refused)}, closed by node: ${closed}; keepalives ${JSON.stringify(s.keepalive_answers)}`);
    } else if (s.kind === 'flood') {
      parts.push(`flood: sessions ${JSON.stringify(s.sessions)} (refused ${JSON.stringify(s.hello_refused)}), ${s.sent} acquires sent,` +
        ` answers ${JSON.stringify(s.answers)}, at most ${s.in_flight_max} unanswered at once, conns closed by node ${s.closed_by_node}`);
    }
  }
  return parts;
}

function medianOf(xs) {
  if (!xs || xs.length === 0) return '-';
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function table(rows, base) {
  const head = ['phase', 'p50 ms', 'p99 ms', 'p99/base', 'max ms', 'cycles/s', 'contended p99', 'log/s', 'victim errors', 'new conns failed', 'leader', 'RSS MiB n1', 'n2', 'n3'];
  const lines = [head];
  for (const r of rows) {
    const v = r.victims;
    const rss = id => `${mib(r.rss.before[id])}>${mib(r.rss.end[id])} pk ${mib(r.rss.peak[id])} >${mib(r.rss.settled[id])}`;
    lines.push([
      r.phase, v.p50?.toFixed(2) ?? '-', v.p99?.toFixed(2) ?? '-',
      base && v.p99 !== null ? `${(v.p99 / base).toFixed(2)}x` : '-', v.max?.toFixed(1) ?? '-',
      v.cycles_per_s.toFixed(0), v.contended_p99?.toFixed(1) ?? '-', r.entriesPerS === null ? '-' : r.entriesPerS.toFixed(0),
      Object.keys(v.errors).length ? Object.entries(v.errors).map(([k, n]) => `${k}:${n}`).join(' ') : '0',
      `${r.probes.failed}/${r.probes.tries}`,
      `${r.leaderChanged ? `${r.leaderBefore}->${r.leaderAfter}` : r.leaderBefore}${r.elections ? ` (+${r.elections} terms)` : ''}`,
      rss('n1'), rss('n2'), rss('n3'),
    ]);
  }
  const w = head.map((_, c) => Math.max(...lines.map(l => String(l[c]).length)));
  const fmt = l => l.map((x, c) => (c >= 1 && c <= 7 ? String(x).padStart(w[c]) : String(x).padEnd(w[c]))).join('  ').trimEnd();
  return [fmt(lines[0]), w.map(n => '-'.repeat(n)).join('  '), ...lines.slice(1).map(fmt)].join('\n');
}

// ------------------------------------------------------------------ main
async function main() {
  const distIndex = path.join(ROOT, 'dist', 'lib', 'index.js');
  if (!fs.existsSync(distIndex)) throw new Error(`no ${distIndex}: run npx tsc -p tsconfig.json first`);
  const { LockClient } = (await import(distIndex)).default ?? (await import(distIndex));
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const out = o.out ?? path.join(ROOT, 'bench', 'results', `${stamp}-hostile`);
  fs.mkdirSync(out, { recursive: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'latchkey-hostile-'));
  tmpToRemove = dir;
  const cluster = new Cluster(dir, await freePorts(3));
  say(`3 nodes on ${Object.values(cluster.port).join(', ')}, data in ${dir}; node args: ${o.nodeArgs || '(defaults)'}`);
  await Promise.all(cluster.ids.map(id => cluster.start(id)));
  let { leader } = await cluster.waitLeader();
  say(`leader ${leader}`);
  await makeBigFile(LockClient, cluster, o.readFileBytes);

  // RSS of every node, every 200 ms.
  const rssSeries = [];
  const sampler = setInterval(() => rssSeries.push([now(), cluster.rss()]), 200);
  // A fresh connection to every node every 500 ms, with one status: can new clients get in?
  const probes = []; // [at, ok, ms]
  const prober = setInterval(() => {
    for (const id of cluster.ids) {
      if (!cluster.alive(id)) continue;
      const t = now();
      nodeStatus(cluster.port[id], 2000).then(() => probes.push([t, true, now() - t]), () => probes.push([t, false, now() - t]));
    }
  }, 500);
  const victims = new Victims(LockClient, cluster);
  await victims.start();
  await sleep(o.warmup * 1000);

  const rows = [];
  const jsonl = path.join(out, 'hostile.jsonl');
  let base = null;
  try {
    for (const phase of o.phases) {
      await cluster.restartDead();
      const deathsBefore = cluster.deaths.length;
      const lb = await cluster.waitLeader();
      leader = lb.leader;
      const leaderBefore = leader;
      const termBefore = lb.term;
      const rssBefore = cluster.rss();
      const loads = PHASE_LOADS[phase];
      say(`phase ${phase}: ${loads.length ? `starting ${loads.join(', ')}` : 'no hostile load'} (leader ${leader})`);
      const tLoad = now();
      const ws = loads.map(k => startWorker(k, cluster, leader));
      const readyErrors = [];
      await Promise.all(ws.map(w => withTimeout(w.ready, 90000, `${w.kind} ready`).catch(e => readyErrors.push(e.message))));
      const t0 = now();
      const commit0 = await cluster.commitIndex(leader);
      const tc0 = now();
      log(`phase ${phase}: load in place after ${((t0 - tLoad) / 1000).toFixed(1)} s`);
      await sleep(o.duration * 1000);
      const t1 = now();
      const commit1 = await cluster.commitIndex(leader);
      const entriesPerS = commit0 !== null && commit1 !== null ? (commit1 - commit0) / ((now() - tc0) / 1000) : null;
      const rssEnd = cluster.rss();
      const la = await cluster.waitLeader().catch(() => ({ leader: null, term: null }));
      const leaderAfter = la.leader;
      const elections = la.term === null ? null : la.term - termBefore;
      const stats = await Promise.all(ws.map(w => w.stop()));
      await sleep(o.settle * 1000);
      const rssSettled = cluster.rss();
      const peak = {};
      for (const [t, r] of rssSeries) {
        if (t < tLoad) continue;
        for (const id of cluster.ids) if (r[id] !== null) peak[id] = Math.max(peak[id] ?? 0, r[id]);
      }
      const v = victims.window(t0, t1);
      const inPhase = probes.filter(([t]) => t >= t0 && t < t1);
      const probeMs = inPhase.filter(([, ok]) => ok).map(([, , ms]) => ms).sort((a, b) => a - b);
      const probeStats = { tries: inPhase.length, failed: inPhase.filter(([, ok]) => !ok).length, p99_ms: round(percentile(probeMs, 0.99), 1) };
      if (o.samples) {
        const rowsCsv = victims.preempt.filter(([t]) => t >= t0 && t < t1).map(([t, ms]) => `${phase},${((t - t0) / 1000).toFixed(3)},${ms.toFixed(2)}`);
        fs.appendFileSync(path.join(out, 'samples.csv'), rowsCsv.join('\n') + '\n');
      }
      if (phase === 'baseline' && base === null) base = v.p99;
      const row = {
        phase, leaderBefore, leaderAfter, leaderChanged: leaderAfter !== leaderBefore, elections, entriesPerS,
        victims: v, rss: { before: rssBefore, end: rssEnd, peak, settled: rssSettled },
        hostile: stats, readyErrors, loadSetupS: (t0 - tLoad) / 1000, probes: probeStats,
        deaths: cluster.deaths.slice(deathsBefore).map(d => ({ node: d.node, code: d.code, signal: d.signal })),
      };
      rows.push(row);
      const line = {
        bench: 'hostile', phase, duration_s: o.duration, victims: o.victims, victim_pace_ms: o.victimPaceMs,
        p50_ms: round(v.p50, 3), p99_ms: round(v.p99, 3), p999_ms: round(v.p999, 3), max_ms: round(v.max, 3),
        p99_over_baseline: base && v.p99 !== null ? round(v.p99 / base, 2) : null,
        cycles_per_s: round(v.cycles_per_s, 1), samples: v.samples, log_entries_per_s: round(entriesPerS, 0),
        contended_p50_ms: round(v.contended_p50, 3), contended_p99_ms: round(v.contended_p99, 3),
        victim_errors: v.errors, new_connection_status: probeStats, leader_before: leaderBefore, leader_after: leaderAfter, terms_passed: elections,
        rss_kib: row.rss, node_deaths: row.deaths, load_setup_s: round(row.loadSetupS, 2), ready_errors: readyErrors,
        hostile: stats, node_args: o.nodeArgs, commit: gitRev(), node: process.version, cpus: os.cpus().length,
        ts: new Date().toISOString(),
      };
      fs.appendFileSync(jsonl, JSON.stringify(line) + '\n');
      say(`phase ${phase}: p50 ${v.p50?.toFixed(2)} ms, p99 ${v.p99?.toFixed(2)} ms${base ? ` (${(v.p99 / base).toFixed(2)}x)` : ''}, ` +
        `${v.cycles_per_s.toFixed(0)} cycles/s, errors ${JSON.stringify(v.errors)}, RSS peak ${JSON.stringify(peak)}`);
      for (const p of hostileSummary(stats)) say(`  ${p}`);
      if (row.deaths.length) say(`  NODE DEATHS: ${JSON.stringify(row.deaths)}`);
    }
  } finally {
    clearInterval(sampler);
    clearInterval(prober);
    await victims.stop();
  }
  const text = [
    `hostile clients vs ${o.victims} victims (preempt+release on own locks, pace ${o.victimPaceMs} ms${o.contended ? ', + a contended acquire pair' : ''}),` +
    ` 3 nodes on 127.0.0.1, ${o.duration} s per phase, node args: ${o.nodeArgs || '(defaults)'}`,
    `RSS MiB per node: before > end of phase, peak during, > after ${o.settle} s settle`,
    table(rows, base),
    '',
    ...rows.flatMap(r => [
      `${r.phase}:${r.deaths.length ? ` NODE DEATHS ${JSON.stringify(r.deaths)};` : ''}${r.readyErrors.length ? ` setup errors ${r.readyErrors.join('; ')};` : ''} load in place after ${r.loadSetupS.toFixed(1)} s;` +
        ` status on a fresh connection: ${r.probes.failed} of ${r.probes.tries} failed, p99 ${r.probes.p99_ms ?? '-'} ms`,
      ...hostileSummary(r.hostile).map(p => `  ${p}`),
    ]),
  ].join('\n');
  fs.writeFileSync(path.join(out, 'hostile.txt'), text + '\n');
  process.stdout.write('\n' + text + '\n');
  await cluster.stop();
  for (const id of cluster.ids) { try { fs.copyFileSync(path.join(dir, `${id}.log`), path.join(out, `${id}.log`)); } catch { /* none */ } }
  say(`results in ${out}`);
}

function gitRev() {
  try { return execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return null; }
}

if (o.worker) {
  runWorker(o.worker, o.spec).catch((e) => { process.stderr.write(`hostile worker ${o.worker}: ${e.stack}\n`); process.exit(1); });
} else {
  process.on('exit', cleanupSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => { say(`${sig}: stopping everything started`); cleanupSync(); process.exit(130); });
  }
  main().then(() => { cleanupSync(); process.exit(0); }, (e) => {
    say(`FAILED: ${e && e.stack ? e.stack : e}`);
    cleanupSync();
    process.exit(1);
  });
}
