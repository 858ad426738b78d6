// The seeded raw-bytes generator: one line of bytes a misbehaving client might send, drawn from
// a Prng so that any line (and any stream of lines) is reproducible from its seed alone. Kinds:
// random bytes (invalid UTF-8, NULs), truncated JSON, wrong types for every field, number
// literals at and past JSON's edges, deep nesting (up to the frame limit, and past it), unicode
// edge cases (lone surrogates in escapes, overlong UTF-8, BOM), duplicate keys, prototype keys,
// plausible requests of every action, over-long fields, whitespace, and lines just under and
// over the 65536-byte frame limit. `expectationOf` says what the node must answer to a line, by
// the contract: nothing for an empty line, frame_too_large past the limit, bad_request (id null
// when unreadable) for anything the schema refuses, and a real answer otherwise.
import { frameBytesMax } from '../core/limits';
import type { Prng } from '../core/prng';
import { actions, requestSchemas, validateRequest, type Action } from '../protocol/schemas';
import { awkwardUnits, edgeNumbers, edgeNumberTexts } from './arbitraries';

export const lineKinds = [
  'bytes', 'truncated', 'wrong_types', 'huge_numbers', 'deep', 'unicode', 'actions', 'overlong', 'whitespace',
  'frame_edge', 'duplicate_keys', 'prototype_keys', 'nul',
] as const;
export type LineKind = (typeof lineKinds)[number];

/** Lock and file names the generator uses, shared by every connection (and every case). */
export const fuzzLockCount = 8;
/** Acquires that would block are bounded so a case does not wait long for their answers. */
export const fuzzAcquireTimeoutMsMax = 50;

const kindWeights: ReadonlyArray<[LineKind, number]> = [
  ['bytes', 3], ['truncated', 3], ['wrong_types', 4], ['huge_numbers', 3], ['deep', 2], ['unicode', 3], ['actions', 9],
  ['overlong', 2], ['whitespace', 2], ['frame_edge', 1], ['duplicate_keys', 2], ['prototype_keys', 2], ['nul', 2],
];

export class LineGenerator {
  private idSeq = 0;

  /** `idPrefix` keeps the ids of lines from different generators apart; without `oversize`
   *  every line fits in a frame (a stream that must keep its connection open). */
  constructor(private readonly prng: Prng, private readonly idPrefix = 'f', private readonly oversize = true) {}

  /** One line without its newline. It never holds a 0x0a byte, and it is longer than the frame
   *  limit only when `kind` is frame_edge or deep (and `oversize` is on). */
  line(): { kind: LineKind; bytes: Buffer } {
    const kind = this.pickKind();
    let bytes = this.bytesOf(kind);
    // A newline byte would split the line in two; it never occurs inside a UTF-8 sequence.
    for (let i = 0; i < bytes.length; i++) if (bytes[i] === 0x0a) bytes[i] = 0x20;
    const mayExceed = this.oversize && (kind === 'frame_edge' || kind === 'deep');
    if (!mayExceed && bytes.length > frameBytesMax) bytes = bytes.subarray(0, frameBytesMax);
    return { kind, bytes };
  }

  private pickKind(): LineKind {
    const total = kindWeights.reduce((sum, [, w]) => sum + w, 0);
    let roll = this.prng.int(1, total);
    for (const [kind, weight] of kindWeights) {
      roll -= weight;
      if (roll <= 0) return kind;
    }
    return 'actions';
  }

  private bytesOf(kind: LineKind): Buffer {
    const text = (s: string): Buffer => Buffer.from(s, 'utf8');
    switch (kind) {
      case 'bytes': return this.randomBytes();
      case 'truncated': return this.truncated();
      case 'wrong_types': return text(this.wrongTypes());
      case 'huge_numbers': return text(this.hugeNumbers());
      case 'deep': return text(this.deep());
      case 'unicode': return this.unicode();
      case 'actions': return text(JSON.stringify(this.actionObject()));
      case 'overlong': return text(JSON.stringify(this.overlong()));
      case 'whitespace': return text(this.prng.pick([' ', '\t', '\r', ' \r', '\r\r', '{}\r', '\u00a0', ' {"id":1} ', '\f', '\v', '\u2028']));
      case 'frame_edge': return text(this.frameEdge());
      case 'duplicate_keys': return text(this.duplicateKeys());
      case 'prototype_keys': return text(this.prototypeKeys());
      case 'nul': return this.nul();
    }
  }

  private nextId(): string {
    return `${this.idPrefix}${++this.idSeq}`;
  }

  /** Seeded stand-in for a UUID (the generator must replay from its seed alone). */
  private hex(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += '0123456789abcdef'[this.prng.int(0, 15)];
    return s;
  }

  private id(): unknown {
    const p = this.prng;
    if (p.chance(0.85)) return this.nextId();
    return p.pick<unknown>([++this.idSeq, -this.idSeq, this.idSeq + 0.5, null, true, {}, [], 'x', 0, '', 1e300, -0, [this.nextId()]]);
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
    const full = Buffer.from(JSON.stringify(this.actionObject(true)), 'utf8');
    return full.subarray(0, this.prng.int(1, Math.max(1, full.length - 1)));
  }

  randomScalar(): unknown {
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
      () => p.pick(edgeNumbers),
      () => '0',
      () => '',
      () => p.pick(['NaN', 'Infinity', '-0', '1e308', 'true', 'null']),
    ])();
  }

  randomString(n: number): string {
    const p = this.prng;
    const pools = ['abcXYZ019._:/-', ' %\\"\'{}[]\u0000\t', 'é✓😀\u2028\u2029\ufeff\ud800\udfff', '..//'];
    let s = '';
    for (let i = 0; i < n; i++) {
      const pool = p.pick(pools);
      s += pool[p.int(0, pool.length - 1)];
    }
    return s;
  }

  /** Every field of one action's schema, one of them (or more) with a value of the wrong type. */
  private wrongTypes(): string {
    const p = this.prng;
    if (p.chance(0.2)) return JSON.stringify(this.randomScalar());
    const action: Action = p.pick(actions);
    const fields = Object.keys((requestSchemas[action] as { properties: Record<string, unknown> }).properties);
    const obj = this.actionObject(true, action);
    const victims = fields.filter(() => p.chance(0.3));
    if (victims.length === 0) victims.push(p.pick(fields));
    for (const field of victims) obj[field] = this.randomScalar();
    return JSON.stringify(this.bounded(obj));
  }

  private hugeNumbers(): string {
    const p = this.prng;
    const huge = p.pick(edgeNumberTexts);
    const field = p.pick(['id', 'token', 'timeout_ms', 'lease_ms', 'ttl_ms', 'grace_ms']);
    const action = field === 'ttl_ms' || field === 'grace_ms' ? 'hello' : p.pick(['release', 'acquire', 'preempt', 'append']);
    // A lock of its own: an acquire with a valid timeout of a day must be granted, not wait.
    const id = this.nextId();
    const base: Record<string, unknown> = { id, action, lock_name: `fz-num-${id}`, client_id: `fz-${p.int(0, 5)}` };
    if (action === 'append') Object.assign(base, { file: 'fz-num', data: 'n', token: 1 });
    if (action === 'acquire' && field !== 'timeout_ms') base['timeout_ms'] = 0;
    const text = JSON.stringify(base);
    // Put the literal in by hand so the exact digits reach the server.
    if (field === 'id') return text.replace(/"id":"[^"]*"/, `"id":${huge}`);
    return `${text.slice(0, -1)},"${field}":${huge}}`;
  }

  /** Nesting up to the frame limit (a parser that recurses would overflow its stack), and now and
   *  then a line of 100,000 nested arrays that must be refused as frame_too_large. */
  private deep(): string {
    const p = this.prng;
    const depth = p.pick([10, 100, 1000, 5000, 20000, 32000, 65536, 100000]);
    const open = p.chance(0.6) ? '[' : '{"a":';
    const close = open === '[' ? ']' : '}';
    const balanced = p.chance(0.7);
    const inner = `${open.repeat(depth)}1${close.repeat(balanced ? depth : p.int(0, depth))}`;
    if (p.chance(0.5)) return inner;
    return `{"id":"${this.nextId()}","action":"check","lock_name":${inner}}`;
  }

  private unicode(): Buffer {
    const p = this.prng;
    const id = this.nextId();
    const b = (s: string): Buffer => Buffer.from(s, 'utf8');
    const around = (head: string, bytes: number[], tail: string): Buffer => Buffer.concat([b(head), Buffer.from(bytes), b(tail)]);
    const variants: Array<() => Buffer> = [
      () => b(`{"id":"${id}","action":"check","lock_name":"\\ud800"}`),
      () => b(`{"id":"\\udfff\\ud800","action":"status"}`),
      () => b(`{"id":"${id}","action":"preempt","lock_name":"fz-u","client_id":"\\ud83d"}`),
      () => b(`{"id":"${id}","action":"hello","client_id":"\\udc00\\u0000\\u2028"}`),
      () => around(`{"id":"${id}","action":"check","lock_name":"`, [0xed, 0xa0, 0x80], '"}'),
      () => around(`{"id":"${id}","action":"check","lock_name":"`, [0xc0, 0xaf], '"}'),
      () => around(`{"id":"${id}","action":"check","lock_name":"`, [0xf4, 0x90, 0x80, 0x80], '"}'),
      () => around(`{"id":"${id}","action":"status","x":"`, [0xe2, 0x82], '"}'),
      () => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), b(`{"id":"${id}","action":"status"}`)]),
      () => around('{"id":"', [0xff, 0xfe], '","action":"status"}'),
      () => b(`{"id":"${id}","action":"read","file":"😀"}`),
      () => b(`{"id":"${id}","action":"read","file":"e\u0301"}`),
      () => b(`{"id":"${id}","action":"check","lock_name":"\\u0061"}`),
      () => b(`{"id":"${id}","action":"check","lock_name":"\\x61"}`),
      () => b(`{"id":"${id}","act\\u0069on":"status"}`),
      () => b(`{"id":"${id}","action":"stat\\u0075s"}`),
      () => b(`{"id":"${id}","action":"status","\\u0000":1}`),
      () => b(`{"id":"${id}","action":"append","file":"fz-u","lock_name":"fz-u","client_id":"fz-u","token":1,"data":"\\ud800\\udc00\\udc00\\ud800"}`),
      () => b(JSON.stringify({ id, action: 'check', lock_name: this.randomString(p.int(1, 30)) })),
      () => b(JSON.stringify({ id, action: 'hello', client_id: p.pick(awkwardUnits).repeat(p.int(1, 40)) })),
      () => b(JSON.stringify({ id: p.pick(awkwardUnits), action: 'status' })),
    ];
    return p.pick(variants)();
  }

  private duplicateKeys(): string {
    const p = this.prng;
    const id = this.nextId();
    return p.pick([
      `{"id":"${id}","id":"${id}-second","action":"status"}`,
      `{"id":"${id}","action":"status","action":"check","lock_name":"fz-dup"}`,
      `{"id":"${id}","action":"check","lock_name":"../x","lock_name":"fz-dup"}`,
      `{"id":"${id}","action":"check","lock_name":"fz-dup","lock_name":"../x"}`,
      `{"id":"${id}","action":"preempt","lock_name":"fz-dup","client_id":"a","client_id":"fz-dup-client"}`,
      `{"id":null,"id":"${id}","action":"status"}`,
      `{"id":"${id}","action":"status","id":[]}`,
      `{"id":"${id}","action":"check","lock_name":"fz-dup","stale_ok":true,"stale_ok":"yes"}`,
    ]);
  }

  private prototypeKeys(): string {
    const p = this.prng;
    const id = this.nextId();
    return p.pick([
      `{"id":"${id}","action":"check","lock_name":"x","__proto__":{"polluted":1}}`,
      `{"__proto__":{"id":"${id}","action":"status"}}`,
      `{"id":"${id}","__proto__":{"action":"status"}}`,
      `{"id":"${id}","action":"status","constructor":{"prototype":{"polluted":1}}}`,
      `{"id":"${id}","action":"constructor"}`,
      `{"id":"${id}","action":"__proto__"}`,
      `{"id":"${id}","action":"toString"}`,
      `{"id":"${id}","action":"hasOwnProperty"}`,
      `{"id":"__proto__","action":"status"}`,
      `{"id":"${id}","action":"check","lock_name":"__proto__"}`,
      `{"id":"${id}","action":"preempt","lock_name":"constructor","client_id":"__proto__"}`,
      `{"id":"${id}","action":"read","file":"__proto__/constructor/prototype"}`,
      `{"id":"${id}","action":"hello","client_id":"toString","ttl_ms":{"valueOf":1000}}`,
    ]);
  }

  /** Raw NUL bytes (control characters JSON refuses unescaped) and escaped ones. */
  private nul(): Buffer {
    const p = this.prng;
    const id = this.nextId();
    const b = (s: string): Buffer => Buffer.from(s, 'utf8');
    return p.pick<() => Buffer>([
      () => Buffer.concat([b(`{"id":"${id}","action":"status"}`), Buffer.from([0])]),
      () => Buffer.concat([Buffer.from([0]), b(`{"id":"${id}","action":"status"}`)]),
      () => Buffer.concat([b(`{"id":"${id}`), Buffer.from([0]), b('","action":"status"}')]),
      () => b(`{"id":"${id}\\u0000","action":"status"}`),
      () => b(`{"id":"${id}","action":"hello","client_id":"\\u0000"}`),
      () => Buffer.alloc(p.int(1, 64)),
    ])();
  }

  /** Lines whose size sits at the frame limit: 65535 and 65536 bytes are served, more is
   *  frame_too_large. The padding is JSON whitespace or an append's data. */
  private frameEdge(): string {
    const p = this.prng;
    const size = frameBytesMax + p.pick([-1, 0, 0, 1, 1, 1000, 70000]);
    const id = this.nextId();
    if (p.chance(0.5)) {
      const head = `{"id":"${id}","action":"status"}`;
      return head + ' '.repeat(Math.max(0, size - head.length));
    }
    const head = `{"id":"${id}","action":"append","file":"fz-edge","lock_name":"fz-edge","client_id":"fz-edge","token":1,"data":"`;
    return `${head}${'e'.repeat(Math.max(0, size - head.length - 2))}"}`;
  }

  /** An object with a valid action and (mostly) plausible, sometimes random, field values. */
  actionObject(plausible = false, chosen?: Action): Record<string, unknown> {
    const p = this.prng;
    const action = chosen ?? p.pick(actions);
    const fields = this.plausibleFields(action);
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
    return this.bounded({ id: plausible ? this.nextId() : this.id(), action, ...fields });
  }

  /** A valid acquire must not block the case for long: its wait is bounded. */
  private bounded(obj: Record<string, unknown>): Record<string, unknown> {
    const v = validateRequest(obj);
    if (v.ok && v.request.action === 'acquire' && (v.request.timeout_ms === undefined || v.request.timeout_ms > fuzzAcquireTimeoutMsMax)) {
      obj['timeout_ms'] = this.prng.int(0, fuzzAcquireTimeoutMsMax);
    }
    return obj;
  }

  private plausibleFields(action: Action): Record<string, unknown> {
    const p = this.prng;
    const lock = `fz-${p.int(0, fuzzLockCount - 1)}`;
    const client = `fz-client-${p.int(0, 9)}`;
    switch (action) {
      case 'hello': return {
        client_id: client,
        ...(p.chance(0.5) ? { ttl_ms: p.int(50, 20000) } : {}),
        ...(p.chance(0.3) ? { grace_ms: p.int(0, 1000) } : {}),
        ...(p.chance(0.2) ? { resume_token: this.hex(32) } : {}),
      };
      case 'preempt': return { lock_name: lock, client_id: client, ...(p.chance(0.3) ? { lease_ms: p.int(0, 500) } : {}) };
      case 'acquire': return { lock_name: lock, client_id: client, timeout_ms: p.int(0, fuzzAcquireTimeoutMsMax), ...(p.chance(0.3) ? { lease_ms: p.int(1, 500) } : {}) };
      case 'release': return { lock_name: lock, client_id: client, ...(p.chance(0.5) ? { token: p.int(0, 50) } : {}) };
      case 'check': return { lock_name: lock, ...(p.chance(0.3) ? { stale_ok: p.chance(0.5) } : {}) };
      case 'keepalive': return { client_id: client };
      case 'append': return { file: `fz-file-${p.int(0, 3)}`, data: this.randomString(p.int(0, 30)), lock_name: lock, client_id: client, token: p.int(1, 50) };
      case 'read': return { file: `fz-file-${p.int(0, 3)}` };
      case 'status': return {};
      case 'bye': return { client_id: client };
    }
  }

  private overlong(): Record<string, unknown> {
    const p = this.prng;
    const id = this.nextId();
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

/** What the node owes one line (the bytes between two newlines, as sent). */
export type Expectation =
  | { kind: 'none' }
  | { kind: 'too_large' }
  /** `idKey` is the JSON of the id the answer must carry; `unreadable`: not JSON at all. */
  | { kind: 'answer'; idKey: string; bad: boolean; unreadable: boolean; line: string };

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * By the contract (PROTOCOL §2, §5): the same framing rules the server applies, then the schema.
 * A line that is not UTF-8 ("one JSON object ... UTF-8") is bad_request with id null.
 */
export function expectationOf(bytes: Buffer): Expectation {
  if (bytes.length > frameBytesMax) return { kind: 'too_large' };
  let line = bytes.toString('utf8');
  if (!isUtf8(bytes)) return { kind: 'answer', idKey: 'null', bad: true, unreadable: true, line };
  if (line.length > 0 && line.charCodeAt(line.length - 1) === 13) line = line.slice(0, -1);
  if (line.length === 0) return { kind: 'none' }; // an empty line is skipped, not answered
  let message: unknown;
  try {
    message = JSON.parse(line);
  } catch {
    return { kind: 'answer', idKey: 'null', bad: true, unreadable: true, line };
  }
  const result = validateRequest(message);
  if (!result.ok) return { kind: 'answer', idKey: JSON.stringify(result.id), bad: true, unreadable: false, line };
  return { kind: 'answer', idKey: JSON.stringify(result.request.id), bad: false, unreadable: false, line };
}

function isUtf8(bytes: Buffer): boolean {
  try {
    strictUtf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}
