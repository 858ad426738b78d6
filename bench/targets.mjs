// The issue-7 targets, read from one `npm run bench` results folder: each target with both runs,
// the median, the ratio against etcd where there is one, and whether it is met.
//
//   node bench/targets.mjs RESULTS_DIR
//
// Reads RESULTS_DIR/results.jsonl (compare.sh), failover.jsonl (bench/failover.mjs),
// restart.jsonl (bench/restart.mjs) and floor.jsonl (../shared/bench/floor.mjs); a missing file
// leaves its rows out. With the floor, it also says what each throughput and latency goal asks
// of this machine before latchkey does any work.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node bench/targets.mjs RESULTS_DIR');
  process.exit(2);
}

const lines = (file) => {
  const p = path.join(dir, file);
  if (!existsSync(p)) return [];
  return readFileSync(p, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
};
const bench = lines('results.jsonl').filter((r) => r.kind === 'bench');
const failover = lines('failover.jsonl');
const restart = lines('restart.jsonl');
const floor = lines('floor.jsonl');

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return null;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const runsOf = (system, workload, pick) => bench
  .filter((r) => r.system === system && (system !== 'etcd' || r.recipe === 'mutex') && r.workload === workload)
  .map(pick).filter((v) => typeof v === 'number');
const fmt = (v) => (v === null || v === undefined ? '-' : Math.abs(v) >= 100 ? String(Math.round(v)) : Number(v.toPrecision(3)).toString());
const both = (xs) => (xs.length === 0 ? '-' : `${fmt(median(xs))} (${xs.map(fmt).join(', ')})`);

const rows = [];
/** higher: latchkey/etcd must reach `goal`; lower: latchkey/etcd must stay at or under `goal`. */
function versusEtcd(name, workload, pick, sense, goal) {
  const l = runsOf('latchkey', workload, pick);
  const e = runsOf('etcd', workload, pick);
  const ratio = median(l) !== null && median(e) ? median(l) / median(e) : null;
  const met = ratio === null ? '?' : (sense === 'higher' ? ratio >= goal : ratio <= goal) ? 'yes' : 'NO';
  rows.push([name, both(e), both(l), ratio === null ? '-' : `${fmt(ratio)}x`, `${sense === 'higher' ? '>=' : '<='} ${goal}x`, met]);
}
function absolute(name, values, goalText, ok) {
  const m = median(values);
  rows.push([name, '-', both(values), '-', goalText, m === null ? '?' : ok(m) ? 'yes' : 'NO']);
}

versusEtcd('uncontended cycles/s', 'uncontended', (r) => r.ops_per_s, 'higher', 10);
versusEtcd('uncontended acquire p99 ms', 'uncontended', (r) => r.acquire_ms?.p99, 'lower', 0.1);
versusEtcd('contended handoffs/s', 'contended', (r) => r.ops_per_s, 'higher', 20);
{
  const fair = runsOf('latchkey', 'contended', (r) => (r.per_client_ops?.max ? r.per_client_ops.min / r.per_client_ops.max : undefined));
  absolute('contended fairness least/most served', fair, '>= 0.9', (m) => m >= 0.9);
}
versusEtcd('100k locks: seconds to take', 'many-locks', (r) => r.take_s, 'lower', 0.1);
versusEtcd('100k locks: server KiB per lock (all members)', 'many-locks', (r) => r.server_rss_kb_per_lock, 'lower', 0.2);
{
  const l = failover.find((f) => f.system === 'latchkey');
  const e = failover.find((f) => f.system === 'etcd');
  if (l) rows.push(['failover kill -9 -> first grant, median ms', e ? fmt(e.median_ms) : '-', `${fmt(l.median_ms)} (${l.grant_ms.map(fmt).join(', ')})`, e ? `${fmt(l.median_ms / e.median_ms)}x` : '-', '< 1000 ms', l.median_ms < 1000 ? 'yes' : 'NO']);
}
for (const r of restart) {
  rows.push([`restart with ${r.entries} entries${r.snapshot ? ' (snapshot)' : ' (log)'}, ms`, '-', `${fmt(r.median_ms)} (${r.runs.map(fmt).join(', ')})`, '-', '< 3000 ms', r.median_ms < 3000 ? 'yes' : 'NO']);
}

const header = ['target', 'etcd/mutex', 'latchkey', 'ratio', 'goal', 'met'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
const line = (cells) => cells.map((c, i) => String(c).padEnd(widths[i])).join('  ');
console.log(line(header));
for (const r of rows) console.log(line(r));
console.log('median of runs, every run in brackets; ratios are latchkey/etcd on the same machine in the same run');

// What the goals ask of the machine itself, from floor.mjs: an NDJSON echo server (parse and
// answer, nothing else) and append + fdatasync of the disk. A goal beyond these cannot be met
// by any code on this machine with majority-durable answers.
const floorOf = (measure) => floor.find((f) => f.measure === measure);
const echo = floorOf('tcp-closed-loop');
const ping = floorOf('tcp-pingpong');
const disk = floorOf('disk-append4k-fdatasync');
if (echo && disk) {
  const etcdOf = (workload, pick) => median(runsOf('etcd', workload, pick));
  console.log('');
  console.log('the floor of this machine (floor.mjs), against the goals:');
  const cycles = etcdOf('uncontended', (r) => r.ops_per_s);
  if (cycles) {
    const need = 2 * 10 * cycles;
    console.log(`- uncontended >= 10x: ${fmt(need)} requests/s (acquire + release); an echo server with ${echo.conns} closed-loop connections serves ${fmt(echo.round_trips_per_s)}/s (${fmt(100 * need / echo.round_trips_per_s)}% of it), and each latchkey request also makes a round trip to a follower and waits for an fdatasync`);
  }
  const p99 = etcdOf('uncontended', (r) => r.acquire_ms?.p99);
  if (p99) console.log(`- acquire p99 <= 0.1x: ${fmt(p99 / 10)} ms; fdatasync alone: p50 ${fmt(disk.latency_ms.p50)} ms, p99 ${fmt(disk.latency_ms.p99)} ms; the echo server's p99 with ${echo.conns} connections: ${fmt(echo.rtt_ms.p99)} ms`);
  const handoffs = etcdOf('contended', (r) => r.ops_per_s);
  if (handoffs) {
    const budget = 1000 / (20 * handoffs);
    console.log(`- contended >= 20x: ${fmt(budget)} ms per hand-off, and hand-offs are serial: each waits for one majority-durable append (fdatasync p50 ${fmt(disk.latency_ms.p50)} ms) and at least two round trips (${fmt(ping?.rtt_ms.p50)} ms each, idle)`);
  }
}
