// What the bench scripts share: flag parsing, a timeout around a promise, and a raw NDJSON
// connection to a latchkey node (PROTOCOL §2). Plain ESM, no build step.
import net from 'node:net';

/**
 * Walks argv, calling onFlag(flag, val) for each flag (`--x v` and `--x=v` alike; val() takes
 * the value). onFlag returns false for a flag it does not know. usage(msg) must not return.
 */
export function parseFlags(argv, onFlag, usage) {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const val = () => {
      if (a.startsWith('--') && eq > 0) return a.slice(eq + 1);
      if (i + 1 >= argv.length) usage(`${flag} needs a value`);
      return argv[++i];
    };
    if (onFlag(flag, val) === false) usage(`unknown flag ${a}`);
  }
}

/** A number flag's value, at least min. */
export function numberFlag(usage, flag, v, min = 0) {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) usage(`${flag} needs a number >= ${min} (got '${v}')`);
  return n;
}

/** Resolves as promise does, or rejects after ms with a loud message (an ErrorClass). */
export function withTimeout(promise, ms, what, ErrorClass = Error) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => { t = setTimeout(() => rej(new ErrorClass(`${what}: no result within ${ms / 1000} s`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

/** One client connection that reads its answers: request() resolves with the whole answer (ok
 *  or not) and rejects (code 'closed') if the connection closes first. */
export class Conn {
  constructor(port, host = '127.0.0.1') {
    this.port = port; this.host = host; this.nextId = 1; this.pending = new Map(); this.closed = false; this.buf = '';
    /** Called with each pushed event (a line without id). */
    this.onEvent = null;
    /** Called once the connection closed, whoever closed it. */
    this.onClose = null;
  }

  connect(ms = 2000) {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port: this.port, host: this.host });
      s.setNoDelay(true);
      const t = setTimeout(() => { s.destroy(); reject(new Error(`connect ${this.host}:${this.port} timed out`)); }, ms);
      s.once('connect', () => { clearTimeout(t); this.connected = true; resolve(this); });
      s.on('error', e => { clearTimeout(t); this.err = e; if (!this.connected) reject(e); });
      s.on('data', d => this.onData(d));
      s.on('close', () => {
        this.closed = true;
        for (const p of this.pending.values()) p.reject(Object.assign(new Error('connection closed'), { code: 'closed' }));
        this.pending.clear();
        this.onClose?.();
      });
      this.sock = s;
    });
  }

  onData(d) {
    this.buf += d.toString('utf8');
    let i;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 1);
      if (!line.trim()) continue;
      let m;
      try { m = JSON.parse(line); } catch { continue; }
      if (m.id === undefined || m.id === null) { this.onEvent?.(m); continue; }
      const p = this.pending.get(m.id);
      if (p) { this.pending.delete(m.id); p.resolve(m); }
    }
  }

  /** Sends one request; resolves with the whole response (ok or not), rejects if the connection closes. */
  request(body) {
    if (this.closed) return Promise.reject(Object.assign(new Error('connection closed'), { code: 'closed' }));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.sock.write(JSON.stringify({ id, ...body }) + '\n');
    });
  }

  get outstanding() { return this.pending.size; }

  destroy() { if (this.sock) this.sock.destroy(); this.closed = true; }
}

/** A node's `status` answer, over a connection of its own. */
export async function nodeStatus(port, ms = 1000, ErrorClass = Error) {
  const c = await new Conn(port).connect(ms);
  try {
    const r = await withTimeout(c.request({ action: 'status' }), ms, `status on :${port}`, ErrorClass);
    if (!r.ok) throw new Error(`status on :${port}: ${r.error?.code} ${r.error?.message}`);
    return r;
  } finally { c.destroy(); }
}
