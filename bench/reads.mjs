#!/usr/bin/env node
// Measures linearizable `check` throughput and latency on a 3-node cluster with the two ways
// of confirming a read: read-index (a heartbeat round, no log write) and through the log (an
// entry per batch of reads). Usage: node bench/reads.mjs [--clients 32] [--duration 5]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const flag = (name, fallback) => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : fallback; };
const clients = flag('--clients', 32);
const durationS = flag('--duration', 5);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function connect(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    s.setEncoding('utf8');
    let buf = '';
    let id = 0;
    const waiting = new Map();
    s.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const m = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        waiting.get(m.id)?.(m);
        waiting.delete(m.id);
      }
    });
    s.on('error', reject);
    s.on('connect', () => resolve({
      call: (o) => new Promise((res) => { const n = ++id; waiting.set(n, res); s.write(`${JSON.stringify({ id: n, ...o })}\n`); }),
      close: () => s.destroy(),
    }));
  });
}

async function run(readPath) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-reads-'));
  const ports = [17101, 17102, 17103];
  const peers = ports.map((p, i) => `n${i + 1}=127.0.0.1:${p}`).join(',');
  const procs = ports.map((p, i) => spawn(process.execPath, [path.join(root, 'bin/main'), 'server', '--id', `n${i + 1}`,
    '--listen', `127.0.0.1:${p}`, '--peers', peers, '--data', path.join(dir, `n${i + 1}`), '--read-path', readPath, '--log-level', 'warn'],
  { stdio: 'ignore' }));
  try {
    for (let t = 0; t < 100; t++) {
      await sleep(100);
      try {
        const c = await connect(ports[0]);
        const s = await c.call({ action: 'status' });
        c.close();
        if (s.leader) break;
      } catch { /* not up yet */ }
    }
    const conns = await Promise.all(Array.from({ length: clients }, (_, i) => connect(ports[i % 3])));
    await conns[0].call({ action: 'preempt', lock_name: 'r', client_id: 'holder' });
    const lat = [];
    let stop = false;
    const until = performance.now() + durationS * 1000;
    await Promise.all(conns.map(async (c) => {
      while (!stop && performance.now() < until) {
        const t0 = performance.now();
        const r = await c.call({ action: 'check', lock_name: 'r' });
        if (!r.ok) throw new Error(JSON.stringify(r));
        lat.push(performance.now() - t0);
      }
    }));
    stop = true;
    conns.forEach((c) => c.close());
    lat.sort((a, b) => a - b);
    const q = (p) => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))].toFixed(2);
    return { readPath, reads_per_s: Math.round(lat.length / durationS), p50_ms: q(0.5), p99_ms: q(0.99) };
  } finally {
    procs.forEach((p) => p.kill('SIGKILL'));
    await sleep(200);
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows = [];
for (const mode of ['index', 'log']) rows.push(await run(mode));
console.log(`linearizable check, 3 nodes, ${clients} clients spread over all nodes, ${durationS} s`);
for (const r of rows) console.log(`${r.readPath.padEnd(6)} ${String(r.reads_per_s).padStart(7)} reads/s  p50 ${r.p50_ms} ms  p99 ${r.p99_ms} ms`);
