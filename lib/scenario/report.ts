// What a person sees after `node bin/main`: a table per scenario, and one HTML file with an SVG
// timeline per scenario (one row per client with its holds and tokens, and the faults and
// leader changes as bands), so the failovers and hand-offs can be seen.
import type { HistoryOp } from './history';
import type { ScenarioReport } from './runner';

export function formatTable(report: ScenarioReport): string {
  const errors = Object.entries(report.errors).map(([code, n]) => `${code}=${n}`).join(' ') || 'none';
  const lines = [
    `${report.ok ? 'PASS' : 'FAIL'} ${report.name}  (${(report.durationMs / 1000).toFixed(1)} s, seed ${report.seed})`,
    `  ops ${report.ops}   grants ${report.grants}   handoffs ${report.handoffs}   leader changes ${report.leaderChanges}   lost ${report.lost}`,
    `  errors: ${errors}`,
  ];
  for (const check of report.checks) lines.push(`  ${check.ok ? 'ok  ' : 'FAIL'} ${check.name}: ${check.detail}`);
  return lines.join('\n');
}

export function formatSummary(reports: readonly ScenarioReport[]): string {
  const rows = reports.map((r) => [
    r.ok ? 'PASS' : 'FAIL', r.name, String(r.ops), String(r.grants), String(r.handoffs), String(r.leaderChanges),
    String(r.lost), Object.entries(r.errors).map(([c, n]) => `${c}=${n}`).join(' ') || '-',
    `${r.checks.filter((c) => c.ok).length}/${r.checks.length}`, `${(r.durationMs / 1000).toFixed(1)}s`,
  ]);
  const head = ['', 'scenario', 'ops', 'grants', 'handoffs', 'leaders', 'lost', 'errors', 'checks', 'time'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
  const fmt = (row: string[]): string => row.map((cell, i) => cell.padEnd(widths[i] as number)).join('  ').trimEnd();
  return [fmt(head), ...rows.map(fmt)].join('\n');
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

interface Bar { client: string; lock: string; token: number; fromMs: number; toMs: number; lost: boolean }

/** Hold bars: from the grant's answer to the release's invocation (or the loss, or the end). */
function holdBars(ops: readonly HistoryOp[], endMs: number): Bar[] {
  const bars: Bar[] = [];
  const open = new Map<string, Bar>();
  for (const op of [...ops].sort((a, b) => a.invokedMs - b.invokedMs)) {
    const key = `${op.client}\u0000${op.lock}`;
    if ((op.kind === 'acquire' || op.kind === 'preempt') && op.ok && op.completedMs !== null && op.token !== undefined) {
      if (open.has(key)) continue;
      const bar = { client: op.client, lock: op.lock, token: op.token, fromMs: op.completedMs, toMs: op.lostMs ?? endMs, lost: op.lost === true };
      open.set(key, bar);
      bars.push(bar);
    } else if (op.kind === 'release') {
      const bar = open.get(key);
      if (bar !== undefined) {
        bar.toMs = Math.min(bar.toMs, Math.max(bar.fromMs, op.invokedMs));
        open.delete(key);
      }
    }
  }
  return bars;
}

function timelineSvg(report: ScenarioReport): string {
  const clients = [...new Set(report.history.map((op) => op.client))].sort();
  const endMs = Math.max(report.endMs, 1);
  const left = 170;
  const width = 1100;
  const rowHeight = 18;
  const top = 30;
  const height = top + clients.length * rowHeight + 30;
  const x = (ms: number): number => left + (Math.max(0, Math.min(ms, endMs)) / endMs) * (width - left - 10);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="monospace" font-size="11">`);
  // Time axis.
  for (let s = 0; s * 1000 <= endMs; s += Math.max(1, Math.ceil(endMs / 1000 / 12))) {
    parts.push(`<line x1="${x(s * 1000)}" y1="${top - 8}" x2="${x(s * 1000)}" y2="${height - 20}" stroke="#eee"/>`);
    parts.push(`<text x="${x(s * 1000)}" y="${top - 12}" text-anchor="middle" fill="#666">${s}s</text>`);
  }
  // Node events as bands: a fault until the matching recovery, leader changes as lines.
  const colours: Record<string, string> = { kill: '#f8d0d0', pause: '#f8e8c0', isolate: '#d8d8f8', partition: '#d8d8f8', 'cut-link': '#d8d8f8' };
  const openFault = new Map<string, number>();
  for (const event of report.events) {
    const node = event.detail.split(/[ :]/)[0] ?? '';
    if (event.kind === 'kill' || event.kind === 'pause' || event.kind === 'isolate' || event.kind === 'partition') openFault.set(`${event.kind}:${node}`, event.atMs);
    const closeKind = event.kind === 'restart' ? 'kill' : event.kind === 'resume' ? 'pause' : event.kind === 'heal' ? 'isolate' : null;
    const close = (kind: string, key: string): void => {
      const from = openFault.get(key);
      if (from === undefined) return;
      openFault.delete(key);
      parts.push(`<rect x="${x(from)}" y="${top - 4}" width="${Math.max(2, x(event.atMs) - x(from))}" height="${clients.length * rowHeight + 8}" fill="${colours[kind] ?? '#eee'}" opacity="0.6"><title>${escapeHtml(`${kind} ${key.split(':')[1] ?? ''} ${from.toFixed(0)}-${event.atMs.toFixed(0)} ms`)}</title></rect>`);
    };
    if (closeKind === 'isolate') for (const key of [...openFault.keys()]) if (key.startsWith('isolate:') || key.startsWith('partition:')) close(key.split(':')[0] as string, key);
    if (closeKind === 'kill' || closeKind === 'pause') close(closeKind, `${closeKind}:${node}`);
    if (event.kind === 'leader' || event.kind === 'crash') {
      parts.push(`<line x1="${x(event.atMs)}" y1="${top - 4}" x2="${x(event.atMs)}" y2="${height - 20}" stroke="${event.kind === 'leader' ? '#2a7' : '#c33'}" stroke-dasharray="3,2"/>`);
      parts.push(`<text x="${x(event.atMs) + 2}" y="${height - 8}" fill="${event.kind === 'leader' ? '#2a7' : '#c33'}">${escapeHtml(`${event.kind} ${event.detail}`.slice(0, 40))}</text>`);
    }
  }
  for (const [key, from] of openFault) {
    const kind = key.split(':')[0] as string;
    parts.push(`<rect x="${x(from)}" y="${top - 4}" width="${Math.max(2, x(endMs) - x(from))}" height="${clients.length * rowHeight + 8}" fill="${colours[kind] ?? '#eee'}" opacity="0.6"><title>${escapeHtml(key)}</title></rect>`);
  }
  // One row per client: holds as bars labelled with their tokens, failed ops as ticks.
  const bars = holdBars(report.history, endMs);
  clients.forEach((client, row) => {
    const y = top + row * rowHeight;
    parts.push(`<text x="4" y="${y + 12}">${escapeHtml(client.slice(-24))}</text>`);
    for (const bar of bars.filter((b) => b.client === client)) {
      const w = Math.max(2, x(bar.toMs) - x(bar.fromMs));
      parts.push(`<rect x="${x(bar.fromMs)}" y="${y + 2}" width="${w}" height="${rowHeight - 5}" fill="${bar.lost ? '#e99' : '#69c'}"><title>${escapeHtml(`${bar.lock} token ${bar.token}: ${bar.fromMs.toFixed(0)}-${bar.toMs.toFixed(0)} ms${bar.lost ? ' (lost)' : ''}`)}</title></rect>`);
      if (w > 18) parts.push(`<text x="${x(bar.fromMs) + 2}" y="${y + 12}" fill="#fff">${bar.token}</text>`);
    }
    for (const op of report.history.filter((o) => o.client === client && !o.ok && o.completedMs !== null)) {
      parts.push(`<line x1="${x(op.completedMs as number)}" y1="${y + 2}" x2="${x(op.completedMs as number)}" y2="${y + rowHeight - 3}" stroke="#c33"><title>${escapeHtml(`${op.kind} ${op.lock}: ${op.code}`)}</title></line>`);
    }
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export function renderHtml(reports: readonly ScenarioReport[]): string {
  const sections = reports.map((r) => `
<section>
<h2>${r.ok ? '✅' : '❌'} ${escapeHtml(r.name)}</h2>
<p>${escapeHtml(r.description)}</p>
<pre>${escapeHtml(formatTable(r))}</pre>
<p class="legend">Blue: a client holds the lock (the number is its fencing token); red bar: a hold that ended by expiry or crash; red tick: a request that failed (hover for the code). Bands: red a killed node, yellow a paused node, violet a partition. Dashed green: a leader elected; dashed red: a node exit.</p>
${timelineSvg(r)}
</section>`).join('\n');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>latchkey scenarios</title>
<style>body{font-family:sans-serif;margin:20px}pre{background:#f6f6f6;padding:8px}section{margin-bottom:40px}.legend{color:#555;font-size:12px}</style>
</head><body>
<h1>latchkey scenarios</h1>
<pre>${escapeHtml(formatSummary(reports))}</pre>
${sections}
</body></html>
`;
}
