// Snapshots of the replicated lock table: Raft log compaction saves the whole LockState as one
// string, ships it to followers that are far behind, and a restart restores from it. Pure like the
// rest of lib/locks (no node:*, no Buffer).
//
// Three promises:
// - Deterministic: the same state always encodes to the same string. Every object is written with
//   a fixed key order, and every Map and Set in its insertion order, which is part of the state
//   (session results are evicted oldest first; the order of sessions, locks, a session's locks and
//   waits decides the order of effects in later applies).
// - Complete: a decoded state answers every later command exactly like the original: same answers,
//   same effects, same state. The deadline heap is written as its entries array as is, stale
//   (lazily deleted) entries included, and pushed back in that order, which rebuilds the very same
//   array (a valid heap never moves an item pushed in its own array order). A wait queue is written
//   as its live waiters in queue order (its dead slots are invisible to every operation). A file's
//   chunks are joined into one string (readFile does the same).
// - Versioned and strict: `{"v":3,...}` (versions 1 and 2 are still read). decodeSnapshot refuses an unknown version, bad JSON, a
//   missing, extra or mistyped field, or a state that breaks checkInvariants, with a SnapshotError;
//   it builds a fresh state and returns it only when all of it is valid, so nothing is ever
//   half-restored.
//
// Format v3 (one JSON object, keys in this order):
//   { "v": 3, "now", "appliedIndex", "lastToken", "seq",
//     "limits": { "sessions", "locks", "locksPerSession", "waitersPerLock", "files", "fileBytes",
//                 "totalFileBytes" },
//     "sessions": [{ "client", "serial", "conn", "connected", "ttlMs", "graceMs", "resume",
//                    "lastContactAt", "disconnectedAt", "queuedAt", "locks": [name],
//                    "waits": [name], "results": [[request_id, fingerprint, answer | null]] }],
//     "locks":    [[ name, owner (its index in "sessions", or null), token, grantedAt, leaseUntil,
//                    waiters: [{ "client", "seq", "enqueuedAt", "deadline", "leaseMs" (null when
//                                absent), "reqs": [request_id] }] ]],
//     "files":    [{ "name", "data", "sizeBytes" }],
//     "deadlines": [{ "at", "seq", "kind", "key", "lock", "serial" }] }   (heap array order)
// A lock is a list, not an object, and names its owner by position: at 100,000 held locks the
// keys and the owner's client id repeated were two thirds of the text, which is made whole in
// memory every snapshot (issue 7: memory per lock). v2 is the same with each lock an object
// { "name", "owner" (the client id), "token", "grantedAt", "leaseUntil", "waiters" }; v1 is v2
// without "limits", which then are the defaults.
// Answers are stored as the JSON objects they are, in their own key order, so that a retried
// request still gets the first answer byte for byte.
import { assert } from '../core/assert';
import { defaultStateLimits, type StateLimits } from '../core/limits';
import type { Answer } from '../protocol/answers';
import { DeadlineHeap, type Deadline, type DeadlineKind } from './deadline-heap';
import { checkInvariants } from './invariants';
import { pushWaiter, type CachedAnswer, type GuardedFile, type LockEntry, type LockState, type Session } from './state';
import type { Waiter } from './wait-queue';

export const snapshotVersion = 3;
const limitKeys: ReadonlyArray<keyof StateLimits> = [
  'sessions', 'locks', 'locksPerSession', 'waitersPerLock', 'files', 'fileBytes', 'totalFileBytes',
];

/** A snapshot that cannot be restored: not JSON, an unknown version, or not a valid state. */
export class SnapshotError extends Error {
  override name = 'SnapshotError';
}

// ---- the wire shape of version 1 ----

type ResultV1 = [req: string, fingerprint: string, answer: Answer | null];

interface SessionV1 {
  client: string;
  serial: number;
  conn: string | null;
  connected: boolean;
  ttlMs: number;
  graceMs: number;
  resume: string;
  lastContactAt: number;
  disconnectedAt: number | null;
  queuedAt: number | null;
  locks: string[];
  waits: string[];
  results: ResultV1[];
}

interface WaiterV1 {
  client: string;
  seq: number;
  enqueuedAt: number;
  deadline: number | null;
  leaseMs: number | null;
  reqs: string[];
}

interface FileV1 {
  name: string;
  data: string;
  sizeBytes: number;
}

interface DeadlineV1 {
  at: number;
  seq: number;
  kind: DeadlineKind;
  key: string;
  lock: string;
  serial: number;
}

/** [name, owner's index in sessions or null, token, grantedAt, leaseUntil, waiters] */
type LockV3 = [name: string, owner: number | null, token: number, grantedAt: number, leaseUntil: number | null, waiters: WaiterV1[]];

interface SnapshotV3 {
  v: 3;
  now: number;
  appliedIndex: number;
  lastToken: number;
  seq: number;
  limits: StateLimits;
  sessions: SessionV1[];
  locks: LockV3[];
  files: FileV1[];
  deadlines: DeadlineV1[];
}

// ---- encode ----

export function encodeSnapshot(state: LockState): string {
  const limits = {} as StateLimits;
  for (const key of limitKeys) limits[key] = state.limits[key];
  const owners = new Map<string, number>();
  for (const client of state.sessions.keys()) owners.set(client, owners.size);
  const head: Omit<SnapshotV3, 'locks' | 'files' | 'deadlines'> = {
    v: 3,
    now: state.now,
    appliedIndex: state.appliedIndex,
    lastToken: state.lastToken,
    seq: state.seq,
    limits,
    sessions: [...state.sessions].map(([client, session]) => encodeSession(client, session)),
  };
  const tail: Pick<SnapshotV3, 'files' | 'deadlines'> = {
    files: [...state.files].map(([name, file]) => encodeFile(name, file)),
    deadlines: state.deadlines.entries().map(encodeDeadline),
  };
  // The same text as JSON.stringify of the whole SnapshotV3, but the locks, most of a large
  // state, are written a few at a time: no list of them all is made, only their text.
  return `${JSON.stringify(head).slice(0, -1)},"locks":[${encodeLocks(state, owners)}],${JSON.stringify(tail).slice(1)}`;
}

function encodeLocks(state: LockState, owners: ReadonlyMap<string, number>): string {
  const chunks: string[] = [];
  let pieces: string[] = [];
  for (const [name, lock] of state.locks) {
    pieces.push(JSON.stringify(encodeLock(name, lock, owners)));
    if (pieces.length === 1024) {
      chunks.push(pieces.join(','));
      pieces = [];
    }
  }
  if (pieces.length > 0) chunks.push(pieces.join(','));
  return chunks.join(',');
}

function encodeSession(client: string, session: Session): SessionV1 {
  assert(session.client === client, `session ${client} is stored under the client ${session.client}`);
  return {
    client,
    serial: session.serial,
    conn: session.conn,
    connected: session.connected,
    ttlMs: session.ttlMs,
    graceMs: session.graceMs,
    resume: session.resume,
    lastContactAt: session.lastContactAt,
    disconnectedAt: session.disconnectedAt,
    queuedAt: session.queuedAt,
    locks: [...session.locks],
    waits: [...session.waits],
    results: [...session.results].map(([req, cached]): ResultV1 => [req, cached.fingerprint, cached.answer]),
  };
}

function encodeLock(name: string, lock: LockEntry, owners: ReadonlyMap<string, number>): LockV3 {
  assert(lock.name === name, `lock ${name} is stored under the name ${lock.name}`);
  const owner = lock.owner === null ? null : owners.get(lock.owner);
  assert(owner !== undefined, `lock ${name} is owned by ${lock.owner}, who has no session`);
  const waiters = (lock.waiters?.toArray() ?? []).map((waiter): WaiterV1 => ({
    client: waiter.client,
    seq: waiter.seq,
    enqueuedAt: waiter.enqueuedAt,
    deadline: waiter.deadline,
    leaseMs: waiter.leaseMs ?? null,
    reqs: [...waiter.reqs],
  }));
  return [name, owner, lock.token, lock.grantedAt, lock.leaseUntil, waiters];
}

function encodeFile(name: string, file: GuardedFile): FileV1 {
  return { name, data: file.chunks.join(''), sizeBytes: file.sizeBytes };
}

function encodeDeadline(deadline: Deadline): DeadlineV1 {
  return {
    at: deadline.at, seq: deadline.seq, kind: deadline.kind, key: deadline.key, lock: deadline.lock, serial: deadline.serial,
  };
}

// ---- decode ----

export function decodeSnapshot(text: string): LockState {
  if (typeof text !== 'string') throw new SnapshotError(`snapshot: expected a string, got ${typeName(text)}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new SnapshotError(`snapshot: not valid JSON (${(error as Error).message})`);
  }
  if (!isObject(parsed)) throw new SnapshotError(`snapshot: expected an object, got ${typeName(parsed)}`);
  if (!('v' in parsed)) throw new SnapshotError('snapshot: missing the version field v');
  const version = parsed['v'];
  if (version !== 1 && version !== 2 && version !== 3) {
    throw new SnapshotError(`snapshot: unknown version ${JSON.stringify(version) ?? typeName(version)} (this build reads versions 1 to ${snapshotVersion})`);
  }
  const state = decodeState(parsed, version);
  try {
    checkInvariants(state);
  } catch (error) {
    throw new SnapshotError(`snapshot: not a valid lock state: ${(error as Error).message}`);
  }
  return state;
}

function decodeState(value: Record<string, unknown>, version: 1 | 2 | 3): LockState {
  const keys = ['v', 'now', 'appliedIndex', 'lastToken', 'seq', 'sessions', 'locks', 'files', 'deadlines'];
  if (version !== 1) keys.push('limits');
  const top = new Fields(value, 'snapshot', keys);
  const seq = top.count('seq');
  const state: LockState = {
    now: top.time('now'),
    appliedIndex: top.count('appliedIndex'),
    lastToken: top.count('lastToken'),
    seq,
    sessions: new Map(),
    locks: new Map(),
    files: new Map(),
    fileBytes: 0,
    deadlines: new DeadlineHeap(),
    limits: version === 1 ? { ...defaultStateLimits } : decodeLimits(top.object('limits')),
  };
  top.list('sessions').forEach((item, i) => {
    const session = decodeSession(item, `snapshot.sessions[${i}]`, seq);
    if (state.sessions.has(session.client)) throw new SnapshotError(`snapshot.sessions[${i}]: a second session of client ${JSON.stringify(session.client)}`);
    state.sessions.set(session.client, session);
  });
  const clients = [...state.sessions.keys()];
  top.list('locks').forEach((item, i) => {
    const path = `snapshot.locks[${i}]`;
    const lock = version === 3 ? decodeLockV3(item, path, seq, clients) : decodeLock(new Fields(item, path, lockKeysV2), path, seq);
    if (state.locks.has(lock.name)) throw new SnapshotError(`snapshot.locks[${i}]: a second lock named ${JSON.stringify(lock.name)}`);
    state.locks.set(lock.name, lock);
  });
  top.list('files').forEach((item, i) => {
    const path = `snapshot.files[${i}]`;
    const fields = new Fields(item, path, ['name', 'data', 'sizeBytes']);
    const name = fields.string('name');
    if (state.files.has(name)) throw new SnapshotError(`${path}: a second file named ${JSON.stringify(name)}`);
    const file = { chunks: [fields.string('data')], sizeBytes: fields.count('sizeBytes') };
    state.files.set(name, file);
    state.fileBytes += file.sizeBytes;
  });
  decodeDeadlines(top.list('deadlines'), state);
  return state;
}

function decodeLimits(value: unknown): StateLimits {
  const fields = new Fields(value, 'snapshot.limits', limitKeys);
  const limits = {} as StateLimits;
  for (const key of limitKeys) limits[key] = fields.count(key);
  return limits;
}

function decodeSession(value: unknown, path: string, seq: number): Session {
  const fields = new Fields(value, path, [
    'client', 'serial', 'conn', 'connected', 'ttlMs', 'graceMs', 'resume', 'lastContactAt', 'disconnectedAt', 'queuedAt',
    'locks', 'waits', 'results',
  ]);
  const results = new Map<string, CachedAnswer>();
  fields.list('results').forEach((item, i) => {
    const at = `${path}.results[${i}]`;
    if (!Array.isArray(item) || item.length !== 3) throw new SnapshotError(`${at}: expected [request_id, fingerprint, answer]`);
    const [req, print, answer] = item as unknown[];
    if (typeof req !== 'string') throw new SnapshotError(`${at}[0]: expected a string, got ${typeName(req)}`);
    if (typeof print !== 'string') throw new SnapshotError(`${at}[1]: expected a string, got ${typeName(print)}`);
    if (results.has(req)) throw new SnapshotError(`${at}: request_id ${JSON.stringify(req)} twice`);
    results.set(req, { fingerprint: print, answer: answer === null ? null : decodeAnswer(answer, `${at}[2]`) });
  });
  const session: Session = {
    client: fields.string('client'),
    serial: fields.counter('serial', seq),
    conn: fields.stringOrNull('conn'),
    connected: fields.boolean('connected'),
    ttlMs: fields.duration('ttlMs'),
    graceMs: fields.duration('graceMs'),
    resume: fields.string('resume'),
    lastContactAt: fields.time('lastContactAt'),
    disconnectedAt: fields.timeOrNull('disconnectedAt'),
    queuedAt: fields.timeOrNull('queuedAt'),
    locks: fields.stringSet('locks'),
    waits: fields.stringSet('waits'),
    results,
  };
  return session;
}

const lockKeysV2 = ['name', 'owner', 'token', 'grantedAt', 'leaseUntil', 'waiters'];

/** A v3 lock list, read through the v2 field readers with its positions as the keys. */
function decodeLockV3(value: unknown, path: string, seq: number, clients: readonly string[]): LockEntry {
  if (!Array.isArray(value) || value.length !== lockKeysV2.length) {
    throw new SnapshotError(`${path}: expected [name, owner, token, grantedAt, leaseUntil, waiters]`);
  }
  const owner: unknown = value[1];
  if (owner !== null && (typeof owner !== 'number' || !Number.isInteger(owner) || owner < 0 || owner >= clients.length)) {
    throw new SnapshotError(`${path}[1]: expected the index of a session or null, got ${JSON.stringify(owner)}`);
  }
  const named = Object.fromEntries(lockKeysV2.map((key, i) => [key, value[i]]));
  named['owner'] = owner === null ? null : clients[owner];
  return decodeLock(new Fields(named, path, lockKeysV2), path, seq);
}

function decodeLock(fields: Fields, path: string, seq: number): LockEntry {
  const lock: LockEntry = {
    name: fields.string('name'),
    owner: fields.stringOrNull('owner'),
    token: fields.count('token'),
    grantedAt: fields.time('grantedAt'),
    leaseUntil: fields.timeOrNull('leaseUntil'),
    waiters: null,
  };
  fields.list('waiters').forEach((item, i) => {
    const at = `${path}.waiters[${i}]`;
    const w = new Fields(item, at, ['client', 'seq', 'enqueuedAt', 'deadline', 'leaseMs', 'reqs']);
    const leaseMs = w.durationOrNull('leaseMs');
    const waiter: Waiter = {
      client: w.string('client'),
      seq: w.counter('seq', seq),
      enqueuedAt: w.time('enqueuedAt'),
      deadline: w.timeOrNull('deadline'),
      leaseMs: leaseMs ?? undefined,
      reqs: [...w.stringSet('reqs')],
    };
    if (lock.waiters?.get(waiter.client) !== undefined) throw new SnapshotError(`${at}: ${JSON.stringify(waiter.client)} waits twice`);
    pushWaiter(lock, waiter);
  });
  return lock;
}

function decodeDeadlines(items: unknown[], state: LockState): void {
  const entries: Deadline[] = [];
  const seqs = new Set<number>();
  items.forEach((item, i) => {
    const path = `snapshot.deadlines[${i}]`;
    const fields = new Fields(item, path, ['at', 'seq', 'kind', 'key', 'lock', 'serial']);
    const kind = fields.string('kind');
    if (kind !== 'session' && kind !== 'lease' && kind !== 'waiter') throw new SnapshotError(`${path}.kind: unknown kind ${JSON.stringify(kind)}`);
    // Key order as state-machine.ts pushes them.
    const deadline: Deadline = {
      at: fields.time('at'), kind, key: fields.string('key'), lock: fields.string('lock'), serial: fields.count('serial'),
      seq: fields.counter('seq', state.seq),
    };
    if (seqs.has(deadline.seq)) throw new SnapshotError(`${path}.seq: ${deadline.seq} twice (the heap order must be total)`);
    seqs.add(deadline.seq);
    entries.push(deadline);
  });
  // Pushed in array order, a valid heap keeps every item where it is; anything else was not a heap.
  for (const deadline of entries) state.deadlines.push(deadline);
  const rebuilt = state.deadlines.entries();
  for (let i = 0; i < entries.length; i++) {
    if (rebuilt[i] !== entries[i]) throw new SnapshotError(`snapshot.deadlines[${i}]: the entries are not in heap order`);
  }
}

function decodeAnswer(value: unknown, path: string): Answer {
  if (!isObject(value) || typeof value['ok'] !== 'boolean') throw new SnapshotError(`${path}: expected an answer object with a boolean ok`);
  if (value['ok'] === false) {
    const error = value['error'];
    if (!isObject(error) || typeof error['code'] !== 'string' || typeof error['message'] !== 'string') {
      throw new SnapshotError(`${path}.error: expected { code, message } strings`);
    }
  }
  return value as Answer;
}

// ---- field readers ----

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}

/** The fields of one object of the snapshot: exactly `keys`, each read with its type checked. */
class Fields {
  private readonly value: Record<string, unknown>;

  constructor(value: unknown, private readonly path: string, keys: readonly string[]) {
    if (!isObject(value)) throw new SnapshotError(`${path}: expected an object, got ${typeName(value)}`);
    for (const key of keys) {
      if (!Object.prototype.hasOwnProperty.call(value, key)) throw new SnapshotError(`${path}: missing field ${key}`);
    }
    for (const key of Object.keys(value)) {
      if (!keys.includes(key)) throw new SnapshotError(`${path}: unknown field ${JSON.stringify(key)}`);
    }
    this.value = value;
  }

  private fail(key: string, expected: string): never {
    throw new SnapshotError(`${this.path}.${key}: expected ${expected}, got ${JSON.stringify(this.value[key]) ?? typeName(this.value[key])}`);
  }

  string(key: string): string {
    const value = this.value[key];
    return typeof value === 'string' ? value : this.fail(key, 'a string');
  }

  stringOrNull(key: string): string | null {
    return this.value[key] === null ? null : this.string(key);
  }

  boolean(key: string): boolean {
    const value = this.value[key];
    return typeof value === 'boolean' ? value : this.fail(key, 'true or false');
  }

  /** A cluster time: any finite number. */
  time(key: string): number {
    const value = this.value[key];
    return typeof value === 'number' && Number.isFinite(value) ? value : this.fail(key, 'a finite number');
  }

  timeOrNull(key: string): number | null {
    return this.value[key] === null ? null : this.time(key);
  }

  duration(key: string): number {
    const value = this.value[key];
    return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : this.fail(key, 'a duration >= 0');
  }

  durationOrNull(key: string): number | null {
    return this.value[key] === null ? null : this.duration(key);
  }

  /** A non-negative integer (index, token, size, serial). */
  count(key: string): number {
    const value = this.value[key];
    return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : this.fail(key, 'an integer >= 0');
  }

  /** A value the state's `seq` counter handed out, so at most `seq` (later ones must not collide). */
  counter(key: string, seq: number): number {
    const value = this.count(key);
    return value <= seq ? value : this.fail(key, `a counter value <= seq ${seq}`);
  }

  object(key: string): Record<string, unknown> {
    const value = this.value[key];
    return isObject(value) ? value : this.fail(key, 'an object');
  }

  list(key: string): unknown[] {
    const value = this.value[key];
    return Array.isArray(value) ? value : this.fail(key, 'an array');
  }

  /** Distinct strings, in their order. */
  stringSet(key: string): Set<string> {
    const out = new Set<string>();
    this.list(key).forEach((item, i) => {
      if (typeof item !== 'string') throw new SnapshotError(`${this.path}.${key}[${i}]: expected a string, got ${typeName(item)}`);
      if (out.has(item)) throw new SnapshotError(`${this.path}.${key}[${i}]: ${JSON.stringify(item)} twice`);
      out.add(item);
    });
    return out;
  }
}
