// Fuzzes the TCP front door of a real node with malformed lines from a seeded generator
// (FUZZ_SEED to replay). The node must stay up, answer every line that reaches it exactly once
// (bad_request where the schema says so, a legitimate answer otherwise), never close a
// connection for a bad line under the frame limit, and serve a well-formed client afterwards.
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { Prng } from '../../lib/core/prng';
import { errorCodes } from '../../lib/protocol/errors';
import { actions, validateRequest } from '../../lib/protocol/schemas';
import { cleanupNodeProcesses, startNodeProcess, type NodeProcess } from '../helpers/node-process';
import { connectRaw, errorOf, sleep, waitFor, type Message, type RawClient } from '../helpers/raw-client';

const lineCount = 2000;
const connectionCount = 6;
const frameBytesMax = 65536;
const seed = process.env['FUZZ_SEED'] !== undefined ? Number(process.env['FUZZ_SEED']) : 20240611;

type Kind = 'bytes' | 'truncated' | 'wrong_types' | 'huge_numbers' | 'deep' | 'unicode' | 'actions' | 'overlong' | 'whitespace';

class LineGenerator {
  private idSeq = 0;
  constructor(private readonly prng: Prng) {}

  line(): { kind: Kind; bytes: Buffer } {
    const p = this.prng;
    const kind = p.pick<Kind>([
      'bytes', 'truncated', 'wrong_types', 'huge_numbers', 'deep', 'unicode', 'actions', 'actions', 'actions', 'overlong', 'whitespace',
    ]);
    let bytes: Buffer;
    switch (kind) {
      case 'bytes': bytes = this.randomBytes(); break;
      case 'truncated': bytes = this.truncated(); break;
      case 'wrong_types': bytes = Buffer.from(this.wrongTypes(), 'utf8'); break;
      case 'huge_numbers': bytes = Buffer.from(this.hugeNumbers(), 'utf8'); break;
      case 'deep': bytes = Buffer.from(this.deep(), 'utf8'); break;
      case 'unicode': bytes = this.unicode(); break;
      case 'actions': bytes = Buffer.from(JSON.stringify(this.actionObject()), 'utf8'); break;
      case 'overlong': bytes = Buffer.from(JSON.stringify(this.overlong()), 'utf8'); break;
      case 'whitespace': bytes = Buffer.from(p.pick([' ', '\t', '\r', ' \r', '\r\r', '{}\r', '\u00a0', ' {"id":1} ', '\f']), 'utf8'); break;
    }
    // A newline byte would split the line in two; it never occurs inside a UTF-8 sequence.
    for (let i = 0; i < bytes.length; i++) if (bytes[i] === 0x0a) bytes[i] = 0x20;
    if (bytes.length > frameBytesMax) bytes = bytes.subarray(0, frameBytesMax);
    return { kind, bytes };
  }

  /** Seeded stand-in for a UUID (the generator must replay from its seed alone). */
  private hex(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += '0123456789abcdef'[this.prng.int(0, 15)];
    return s;
  }

  private id(): unknown {
    const p = this.prng;
    if (p.chance(0.85)) return `f${++this.idSeq}`;
    return p.pick<unknown>([++this.idSeq, -this.idSeq, this.idSeq + 0.5, null, true, {}, [], 'x', 0, '', 1e300]);
  }

  private randomBytes(): Buffer {
    const p = this.prng;
    const n = p.int(1, 200);
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = p.int(0, 255);
    if (p.chance(0.3)) out[0] = 0x7b; // '{' so some of them look like JSON
    return out;
  }

  private truncated(): Buffer {
    const p = this.prng;
    const full = Buffer.from(JSON.stringify(this.actionObject(true)), 'utf8');
    return full.subarray(0, p.int(1, Math.max(1, full.length - 1)));
  }

  private randomScalar(): unknown {
    const p = this.prng;
    return p.pick<() => unknown>([
      () => p.int(-1e6, 1e6),
      () => p.next() * 1e6,
      () => null,
      () => p.chance(0.5),
      () => this.randomString(p.int(0, 20)),
      () => [],
      () => ({}),
      () => [p.int(0, 9), 'x'],
      () => ({ nested: { deeper: [1, 2, { x: null }] } }),
      () => -0,
      () => Number.MAX_SAFE_INTEGER + 2,
      () => 1e21,
      () => '0',
      () => '',
    ])();
  }

  private randomString(n: number): string {
    const p = this.prng;
    const pools = ['abcXYZ019._:/-', ' %\\"\'{}[]\u0000\t', 'é✓😀\u2028\u2029\ufeff\ud800\udfff', '..//'];
    let s = '';
    for (let i = 0; i < n; i++) {
      const pool = p.pick(pools);
      s += pool[p.int(0, pool.length - 1)];
    }
    return s;
  }

  private wrongTypes(): string {
    const p = this.prng;
    if (p.chance(0.3)) return JSON.stringify(this.randomScalar());
    const obj: Record<string, unknown> = { id: this.id(), action: p.chance(0.8) ? p.pick(actions) : this.randomScalar() };
    for (const field of ['lock_name', 'client_id', 'file', 'data', 'token', 'timeout_ms', 'lease_ms', 'ttl_ms', 'grace_ms', 'stale_ok', 'request_id', 'resume_token', 'auth']) {
      if (p.chance(0.4)) obj[field] = this.randomScalar();
    }
    return JSON.stringify(obj);
  }

  private hugeNumbers(): string {
    const p = this.prng;
    const huge = p.pick([
      '1e400', '-1e400', '123456789012345678901234567890', '9007199254740993', '9007199254740991', '1e-400', '-0',
      '0.0000000000000000000000001', '1E+308', '4294967297', '18446744073709551616', '1.7976931348623157e308', '86400001',
      '86400000', '99', '100', '0x10', '01', '.5', '1.', 'NaN', 'Infinity', '-', '+1',
    ]);
    const field = p.pick(['id', 'token', 'timeout_ms', 'lease_ms', 'ttl_ms', 'grace_ms']);
    const action = field === 'ttl_ms' || field === 'grace_ms' ? 'hello' : p.pick(['release', 'acquire', 'preempt', 'append']);
    const base: Record<string, unknown> = {
      id: `f${++this.idSeq}`, action, lock_name: 'fz-num', client_id: `fz-${this.prng.int(0, 5)}`,
    };
    if (action === 'append') Object.assign(base, { file: 'fz-num', data: 'n', token: 1 });
    if (action === 'acquire' && field !== 'timeout_ms') base['timeout_ms'] = 0;
    const text = JSON.stringify(base);
    // Put the literal in by hand so the exact digits reach the server.
    if (field === 'id') return text.replace(/"id":"f\d+"/, `"id":${huge}`);
    return `${text.slice(0, -1)},"${field}":${huge}}`;
  }

  private deep(): string {
    const p = this.prng;
    const depth = p.pick([10, 100, 1000, 5000, 20000, 30000]);
    const open = p.chance(0.5) ? '[' : '{"a":';
    const close = open === '[' ? ']' : '}';
    const balanced = p.chance(0.8);
    const inner = `${open.repeat(depth)}1${close.repeat(balanced ? depth : p.int(0, depth))}`;
    if (p.chance(0.5)) return inner;
    return `{"id":"f${++this.idSeq}","action":"check","lock_name":${inner}}`;
  }

  private unicode(): Buffer {
    const p = this.prng;
    const id = `f${++this.idSeq}`;
    const variants: Array<() => Buffer> = [
      () => Buffer.from(`{"id":"${id}","action":"check","lock_name":"\\ud800"}`),
      () => Buffer.from(`{"id":"\\udfff\\ud800","action":"status"}`),
      () => Buffer.from(`{"id":"${id}","action":"preempt","lock_name":"a","client_id":"\\ud83d"}`),
      () => Buffer.from(`{"id":"${id}","action":"hello","client_id":"\\udc00\\u0000\\u2028"}`),
      () => Buffer.concat([Buffer.from(`{"id":"${id}","action":"check","lock_name":"`), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]),
      () => Buffer.concat([Buffer.from(`{"id":"${id}","action":"check","lock_name":"`), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')]),
      () => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`{"id":"${id}","action":"status"}`)]),
      () => Buffer.concat([Buffer.from(`{"id":"`), Buffer.from([0xff, 0xfe]), Buffer.from('","action":"status"}')]),
      () => Buffer.from(`{"id":"${id}","action":"read","file":"😀"}`),
      () => Buffer.from(`{"id":"${id}","action":"read","file":"e\u0301"}`),
      () => Buffer.from(`{"id":"${id}","action":"check","lock_name":"\\u0061"}`),
      () => Buffer.from(`{"id":"${id}","action":"check","lock_name":"\\x61"}`),
      () => Buffer.from(`{"id":"${id}","act\\u0069on":"status"}`),
      () => Buffer.from(`{"id":"${id}","action":"stat\\u0075s"}`),
      () => Buffer.from(`{"id":"${id}","action":"status","\\u0000":1}`),
      () => Buffer.from(`{"id":"${id}","action":"append","file":"fz-u","lock_name":"fz-u","client_id":"fz-u","token":1,"data":"\\ud800\\udc00\\udc00\\ud800"}`),
      () => Buffer.from(`{"id":"${id}","action":"status","id":"dup-${id}"}`),
      () => Buffer.from(`{"id":"${id}","action":"check","lock_name":"x","__proto__":{"polluted":1}}`),
      () => Buffer.from(`{"id":"${id}","action":"constructor"}`),
      () => Buffer.from(`{"id":"${id}","action":"__proto__"}`),
      () => Buffer.from(JSON.stringify({ id, action: 'check', lock_name: this.randomString(p.int(1, 30)) })),
    ];
    return p.pick(variants)();
  }

  /** An object with a valid action and (mostly) plausible, sometimes random, field values. */
  actionObject(plausible = false): Record<string, unknown> {
    const p = this.prng;
    const action = p.pick(actions);
    const lock = `fz-${p.int(0, 7)}`;
    const client = `fz-client-${p.int(0, 9)}`;
    const fields: Record<string, unknown> = {};
    switch (action) {
      case 'hello': Object.assign(fields, { client_id: client }); if (p.chance(0.5)) fields['ttl_ms'] = p.int(50, 20000); if (p.chance(0.3)) fields['grace_ms'] = p.int(0, 1000); if (p.chance(0.2)) fields['resume_token'] = this.hex(32); break;
      case 'preempt': Object.assign(fields, { lock_name: lock, client_id: client }); if (p.chance(0.3)) fields['lease_ms'] = p.int(0, 500); break;
      case 'acquire': Object.assign(fields, { lock_name: lock, client_id: client, timeout_ms: p.int(0, 300) }); if (p.chance(0.3)) fields['lease_ms'] = p.int(1, 500); break;
      case 'release': Object.assign(fields, { lock_name: lock, client_id: client }); if (p.chance(0.5)) fields['token'] = p.int(0, 50); break;
      case 'check': Object.assign(fields, { lock_name: lock }); if (p.chance(0.3)) fields['stale_ok'] = p.chance(0.5); break;
      case 'keepalive': Object.assign(fields, { client_id: client }); break;
      case 'append': Object.assign(fields, { file: `fz-file-${p.int(0, 3)}`, data: this.randomString(p.int(0, 30)), lock_name: lock, client_id: client, token: p.int(1, 50) }); break;
      case 'read': Object.assign(fields, { file: `fz-file-${p.int(0, 3)}` }); break;
      case 'status': break;
      case 'bye': Object.assign(fields, { client_id: client }); break;
    }
    if (['preempt', 'acquire', 'release', 'append', 'bye'].includes(action) && p.chance(0.3)) fields['request_id'] = this.hex(16);
    if (!plausible) {
      // Mutate: replace, drop or add fields.
      for (const key of Object.keys(fields)) {
        const r = p.next();
        if (r < 0.12) fields[key] = this.randomScalar();
        else if (r < 0.18) delete fields[key];
      }
      if (p.chance(0.1)) fields[p.pick(['extra', 'Lock_name', 'id ', 'token', 'auth'])] = this.randomScalar();
    }
    const obj: Record<string, unknown> = { id: plausible ? `f${++this.idSeq}` : this.id(), action, ...fields };
    // A valid acquire must not block the test for long: bound its wait.
    const v = validateRequest(obj);
    if (v.ok && v.request.action === 'acquire' && (v.request.timeout_ms === undefined || v.request.timeout_ms > 300)) {
      obj['timeout_ms'] = p.int(0, 300);
    }
    return obj;
  }

  private overlong(): Record<string, unknown> {
    const p = this.prng;
    const id = `f${++this.idSeq}`;
    const long = (n: number): string => 'n'.repeat(n);
    return p.pick<() => Record<string, unknown>>([
      () => ({ id, action: 'check', lock_name: long(p.int(257, 5000)) }),
      () => ({ id, action: 'read', file: long(p.int(257, 5000)) }),
      () => ({ id, action: 'preempt', lock_name: 'fz-long', client_id: 'fz-long', request_id: long(p.int(65, 500)) }),
      () => ({ id, action: 'hello', client_id: long(p.int(129, 1000)) }),
      () => ({ id, action: 'hello', client_id: 'fz-long', resume_token: long(p.int(129, 1000)) }),
      () => ({ id, action: 'hello', client_id: 'fz-long', auth: long(p.int(4097, 6000)) }),
      () => ({ id: long(p.int(1000, 20000)), action: 'status' }),
      () => ({ id, action: long(p.int(100, 3000)) }),
      () => ({ id, action: 'check', lock_name: `${'a/'.repeat(p.int(100, 200))}b` }),
      () => ({ id, action: 'append', file: 'fz-long', lock_name: 'fz-long', client_id: 'fz-long', token: 1, data: long(p.int(1000, 40000)) }),
    ])();
  }
}

interface Expectation {
  /** JSON of the id the answer must carry. */
  idKey: string;
  bad: boolean;
  line: string;
}

/** What the node must answer to these bytes, by the same rules the server applies. */
function expectationOf(bytes: Buffer): Expectation | null {
  let line = bytes.toString('utf8');
  if (line.length > 0 && line.charCodeAt(line.length - 1) === 13) line = line.slice(0, -1);
  if (line.length === 0) return null; // an empty line is skipped, not answered
  let message: unknown;
  try {
    message = JSON.parse(line);
  } catch {
    return { idKey: 'null', bad: true, line };
  }
  const result = validateRequest(message);
  if (!result.ok) return { idKey: JSON.stringify(result.id), bad: true, line };
  return { idKey: JSON.stringify(result.request.id), bad: false, line };
}

describe('e2e: fuzzed lines against a live node', function () {
  this.timeout(40000);
  let node: NodeProcess;
  const clients: RawClient[] = [];

  before(async () => {
    node = await startNodeProcess();
  });

  after(async () => {
    for (const c of clients) c.close();
    await node?.stop();
    await cleanupNodeProcesses();
  });

  it(`survives ${lineCount} malformed lines and answers each one (seed from FUZZ_SEED)`, async () => {
    // eslint-disable-next-line no-console
    console.log(`      fuzz seed ${seed} (replay with FUZZ_SEED=${seed})`);
    const prng = new Prng(seed);
    const gen = new LineGenerator(prng);
    const conns: RawClient[] = [];
    for (let i = 0; i < connectionCount; i++) {
      const c = await connectRaw(node.port);
      conns.push(c);
      clients.push(c);
    }
    const perConn: Array<{ bytes: Buffer[]; expected: Expectation[] }> = conns.map(() => ({ bytes: [], expected: [] }));
    const kinds = new Map<string, number>();
    let valid = 0;
    for (let i = 0; i < lineCount; i++) {
      const { kind, bytes } = gen.line();
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
      const slot = perConn[prng.int(0, connectionCount - 1)]!;
      slot.bytes.push(bytes, Buffer.from('\n'));
      const e = expectationOf(bytes);
      if (e !== null) {
        slot.expected.push(e);
        if (!e.bad) valid++;
      }
    }
    // eslint-disable-next-line no-console
    console.log(`      kinds ${JSON.stringify(Object.fromEntries(kinds))}; ${valid} valid requests`);
    expect(valid, 'some lines are valid requests').to.be.greaterThan(lineCount * 0.1);

    // Send every connection's stream in random-sized chunks (lines split across writes).
    await Promise.all(conns.map(async (c, i) => {
      const stream = Buffer.concat(perConn[i]!.bytes);
      let at = 0;
      while (at < stream.length) {
        const n = prng.int(1, 8192);
        c.sendBytes(stream.subarray(at, at + n));
        at += n;
        if (prng.chance(0.2)) await sleep(0);
      }
    }));

    const answersOf = (c: RawClient): Message[] => c.received().filter((m) => 'id' in m);
    try {
      await waitFor(async () => conns.map((c) => answersOf(c).length), (counts) => counts.every((n, i) => n >= perConn[i]!.expected.length), 15000, 50);
    } catch (err) {
      // Name the lines that were never answered.
      const missing: string[] = [];
      conns.forEach((c, i) => {
        const got = new Map<string, number>();
        for (const m of answersOf(c)) got.set(JSON.stringify(m['id']), (got.get(JSON.stringify(m['id'])) ?? 0) + 1);
        for (const e of perConn[i]!.expected) {
          const n = got.get(e.idKey) ?? 0;
          if (n > 0) got.set(e.idKey, n - 1);
          else missing.push(`conn ${i}: ${e.line.slice(0, 200)}`);
        }
      });
      throw new Error(`${(err as Error).message}; ${missing.length} lines unanswered, e.g.:\n${missing.slice(0, 15).join('\n')}`);
    }
    await sleep(300); // nothing more than one answer per line may arrive

    let badAnswers = 0;
    for (let i = 0; i < conns.length; i++) {
      const c = conns[i]!;
      const { expected } = perConn[i]!;
      expect(c.isClosed, `connection ${i} stays open`).to.equal(false);
      for (const m of c.received()) {
        expect('unparsable' in m, `node sent a line that is not JSON: ${JSON.stringify(m)}`).to.equal(false);
        if (!('id' in m)) expect(m['event'], JSON.stringify(m)).to.be.a('string');
      }
      const answers = answersOf(c);
      expect(answers.length, `connection ${i}: one answer per line`).to.equal(expected.length);
      const byId = new Map<string, { want: Expectation[]; got: Message[] }>();
      for (const e of expected) {
        const g = byId.get(e.idKey) ?? { want: [], got: [] };
        g.want.push(e);
        byId.set(e.idKey, g);
      }
      for (const m of answers) {
        const key = JSON.stringify(m['id']);
        const g = byId.get(key);
        expect(g, `an answer with an id no line carried: ${key}`).to.not.equal(undefined);
        g!.got.push(m);
      }
      for (const [key, g] of byId) {
        expect(g.got.length, `answers with id ${key.slice(0, 80)} (lines ${JSON.stringify(g.want.map((w) => w.line.slice(0, 120)))})`).to.equal(g.want.length);
        for (const m of g.got) {
          expect(m['ok'], JSON.stringify(m)).to.be.a('boolean');
          if (m['ok'] === false) {
            const err = errorOf(m);
            expect(errorCodes as readonly string[]).to.include(err.code);
            expect(err.message).to.be.a('string');
            expect(err.code, JSON.stringify(m)).to.not.equal('internal');
          }
        }
        const wantBad = g.want.filter((w) => w.bad).length;
        const gotBad = g.got.filter((m) => m['ok'] === false && errorOf(m).code === 'bad_request').length;
        badAnswers += gotBad;
        // A valid request may still be refused for reusing a request_id (rare with random ids).
        const reused = Math.min(
          g.want.length - wantBad,
          g.got.filter((m) => m['ok'] === false && errorOf(m).code === 'bad_request' && errorOf(m).message.includes('already used')).length,
        );
        expect(gotBad - reused, `bad_request answers for id ${key.slice(0, 80)} (lines ${JSON.stringify(g.want.map((w) => w.line.slice(0, 120)))}; got ${JSON.stringify(g.got).slice(0, 500)})`).to.equal(wantBad);
      }
    }
    expect(badAnswers).to.be.greaterThan(lineCount / 2);
    const codes = new Map<string, number>();
    for (const c of conns) {
      for (const m of answersOf(c)) {
        const code = m['ok'] === true ? 'ok' : errorOf(m).code;
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    }
    // eslint-disable-next-line no-console
    console.log(`      answers ${JSON.stringify(Object.fromEntries(codes))}`);
    expect(codes.get('ok') ?? 0, 'some fuzzed requests succeeded').to.be.greaterThan(50);

    // The node is up and serves a well-formed client normally.
    expect(node.exited).to.equal(false);
    const good = await connectRaw(node.port);
    clients.push(good);
    const me = randomUUID();
    const lock = 'after-fuzz';
    const g = await good.request({ action: 'preempt', lock_name: lock, client_id: me });
    expect(g).to.include({ ok: true, lock_name: lock, owner: me });
    expect(await good.request({ action: 'check', lock_name: lock })).to.include({ ok: true, owner: me, token: g['token'], waiters: 0 });
    expect(await good.request({ action: 'append', file: lock, data: 'ok', lock_name: lock, client_id: me, token: g['token'] })).to.include({ ok: true, size: 2 });
    expect(await good.request({ action: 'release', lock_name: lock, client_id: me, token: g['token'] })).to.include({ ok: true, lock_name: lock });
    expect(await good.request({ action: 'check', lock_name: lock })).to.include({ ok: true, owner: null, token: null, waiters: 0 });
    // The fuzzed connections still serve too.
    for (const c of conns) expect(await c.request({ action: 'status' })).to.include({ ok: true, node: 'n1' });
    const warnOrWorse = node.logs().filter((l) => l['level'] === 'error');
    expect(warnOrWorse, JSON.stringify(warnOrWorse).slice(0, 1000)).to.have.length(0);
  });
});
