// Model-based fuzzing of a live node with fast-check's commands: a few clients, each on its own
// connection, run random interleavings of valid requests (preempt, acquire that returns at once
// or queues, release and append with the current, an earlier or a never-granted token, check,
// read, keepalive, hello, bye, a disconnect, a resume on a new connection, and strangers naming
// someone else's session), one at a time, and every answer is compared with a small model of
// the contract: who holds each lock with which token, FIFO waiters (their grants come back on
// their own connections when a holder lets go), and each file's contents. Tokens of every lock
// must only grow. Shrinking gives the shortest sequence of requests that goes wrong.
import * as fc from 'fast-check';
import { nameLengthMax } from '../core/limits';
import { awkwardString, validName } from './arbitraries';
import type { KnownBugs } from './known-bugs';
import { probeTimeoutMs } from './fuzz-node';
import { WireSocket, type Message } from './wire';

const clientCount = 3;
const lockCount = 2;
const fileCount = 2;

export interface ModelOptions {
  /** Also draw the steps that reproduce these reported bugs (keepalive-stranger, long-file-name). */
  knownBugs?: KnownBugs;
  /** fast-check's replayPath of a failing command sequence (printed with it). */
  replayPath?: string;
}

/** What the contract says the node holds. */
export class LockModel {
  owner: Array<number | null> = Array(lockCount).fill(null);
  token: Array<number | null> = Array(lockCount).fill(null);
  /** Every token seen for each lock, newest last (fencing: strictly increasing). */
  tokens: number[][] = Array.from({ length: lockCount }, () => []);
  waiters: number[][] = Array.from({ length: lockCount }, () => []);
  /** The lock each client waits for with an acquire that has no timeout. */
  waitOf: Array<number | null> = Array(clientCount).fill(null);
  files: string[] = Array(fileCount).fill('');
  /** A client's session is live (opened by its first request, ended by bye or disconnect). */
  live: boolean[] = Array(clientCount).fill(false);
  /** The resume secret of a client's live session, once a hello told it. */
  resume: Array<string | null> = Array(clientCount).fill(null);
  ttlMs: number[] = Array(clientCount).fill(10_000);
}

/** The node, seen through one connection per client. */
export class LiveNode {
  readonly sockets: WireSocket[] = [];
  readonly pending: Array<Promise<Message | null> | null> = Array(clientCount).fill(null);
  readonly clients: string[];
  readonly locks: string[];
  readonly filesNames: string[];
  private readonly strangers: WireSocket[] = [];

  constructor(readonly port: number, serial: number, world: ModelWorld) {
    this.clients = world.clients.map((suffix, i) => `m${serial}-c${i}${suffix}`);
    this.locks = Array.from({ length: lockCount }, (_, i) => `m${serial}-L${i}`);
    // Each case has files of its own: the prefix keeps them apart, the rest is drawn.
    this.filesNames = world.files.map((name, i) => {
      const prefix = `m${serial}/f${i}`;
      return name === 'longest' ? `${prefix}-${'x'.repeat(nameLengthMax - prefix.length - 1)}` : `${prefix}/${name}`.slice(0, nameLengthMax);
    });
  }

  async open(): Promise<void> {
    for (let i = 0; i < clientCount; i++) this.sockets.push(await WireSocket.connect(this.port));
  }

  close(): void {
    for (const socket of [...this.sockets, ...this.strangers]) socket.destroy();
  }

  socket(c: number): WireSocket {
    return this.sockets[c] as WireSocket;
  }

  async stranger(): Promise<WireSocket> {
    const socket = await WireSocket.connect(this.port);
    this.strangers.push(socket);
    return socket;
  }

  async request(c: number, fields: Message, socket: WireSocket = this.socket(c)): Promise<Message> {
    const answer = await socket.request(fields, probeTimeoutMs);
    if (answer === null) throw new Error(`no answer to ${JSON.stringify(fields)} within ${probeTimeoutMs} ms`);
    return answer;
  }
}

type Step = fc.AsyncCommand<LockModel, LiveNode>;

function fail(message: string): never {
  throw new Error(message);
}

function codeOf(answer: Message): string {
  if (answer['ok'] === true) return 'ok';
  return String((answer['error'] as { code?: unknown } | undefined)?.code);
}

function expectCode(answer: Message, code: string, what: string): void {
  if (codeOf(answer) !== code) fail(`${what}: expected ${code}, got ${JSON.stringify(answer).slice(0, 400)}`);
}

/** A new grant of lock `l` to client `c`: the answer names them, with a token above every earlier one. */
function takeGrant(m: LockModel, r: LiveNode, l: number, c: number, answer: Message, what: string): void {
  expectCode(answer, 'ok', what);
  const token = answer['token'];
  const last = m.tokens[l]?.at(-1) ?? 0;
  if (answer['lock_name'] !== r.locks[l] || answer['owner'] !== r.clients[c] || typeof token !== 'number' || token <= last) {
    fail(`${what}: expected a grant of ${r.locks[l]} to ${r.clients[c]} with a token above ${last}, got ${JSON.stringify(answer)}`);
  }
  m.owner[l] = c;
  m.token[l] = token;
  m.tokens[l]?.push(token);
}

function expectSameGrant(m: LockModel, r: LiveNode, l: number, c: number, answer: Message, what: string): void {
  expectCode(answer, 'ok', what);
  if (answer['owner'] !== r.clients[c] || answer['token'] !== m.token[l]) fail(`${what}: expected the same grant (token ${m.token[l]}), got ${JSON.stringify(answer)}`);
}

/** Lock `l` is let go: it goes to its first waiter, whose queued acquire is answered now. */
async function handOff(m: LockModel, r: LiveNode, l: number, what: string): Promise<void> {
  m.owner[l] = null;
  m.token[l] = null;
  const next = m.waiters[l]?.shift();
  if (next === undefined) return;
  m.waitOf[next] = null;
  const answer = await r.pending[next];
  r.pending[next] = null;
  if (answer === null || answer === undefined) fail(`${what}: the queued acquire of ${r.clients[next]} was never granted`);
  takeGrant(m, r, l, next, answer, `${what}: hand-off to ${r.clients[next]}`);
}

/** Client `c`'s session ends (bye or disconnect): its wait ends, its locks go to their waiters. */
async function endSession(m: LockModel, r: LiveNode, c: number, answered: boolean, what: string): Promise<void> {
  const waited = m.waitOf[c];
  if (waited !== null && waited !== undefined) {
    m.waiters[waited] = (m.waiters[waited] as number[]).filter((w) => w !== c);
    m.waitOf[c] = null;
    const answer = answered ? await r.pending[c] : null;
    if (answered && (answer === null || answer === undefined || codeOf(answer) !== 'not_owner')) {
      fail(`${what}: the queued acquire of ${r.clients[c]} should end not_owner, got ${JSON.stringify(answer)}`);
    }
    r.pending[c] = null;
  }
  for (let l = 0; l < lockCount; l++) if (m.owner[l] === c) await handOff(m, r, l, what);
  m.live[c] = false;
  m.resume[c] = null;
  m.ttlMs[c] = 10_000; // the next session opens with the node's default unless a hello says otherwise
}

/** The holder of a lock other than `c`, or null. */
function heldByOther(m: LockModel, l: number, c: number): boolean {
  return m.owner[l] !== null && m.owner[l] !== c;
}

/** Waits until a check counts `count` waiters on lock `l`: a queued acquire has no answer to
 *  wait for, and the next one must not overtake it (FIFO is by arrival at the leader). */
async function queued(r: LiveNode, l: number, count: number, what: string): Promise<void> {
  const started = Date.now();
  for (;;) {
    const check = await r.request(0, { action: 'check', lock_name: r.locks[l] });
    if (check['waiters'] === count) return;
    if (Date.now() - started > probeTimeoutMs) fail(`${what}: expected ${count} waiters, got ${JSON.stringify(check)}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

// ---- steps ----

class Take implements Step {
  constructor(readonly c: number, readonly l: number, readonly how: 'preempt' | 'acquire_now' | 'acquire_wait') {}
  check(m: Readonly<LockModel>): boolean {
    // One queued acquire per client; a second acquire of the lock it waits for would share the
    // queue position rather than answer (PROTOCOL §4), which is not what this step checks.
    if (this.how === 'acquire_wait') return m.waitOf[this.c] === null;
    return this.how !== 'acquire_now' || m.waitOf[this.c] !== this.l;
  }
  async run(m: LockModel, r: LiveNode): Promise<void> {
    const { c, l, how } = this;
    const fields: Message = { action: how === 'preempt' ? 'preempt' : 'acquire', lock_name: r.locks[l], client_id: r.clients[c] };
    if (how === 'acquire_now') fields['timeout_ms'] = 0;
    m.live[c] = true;
    if (how === 'acquire_wait' && heldByOther(m, l, c)) {
      const socket = r.socket(c);
      r.pending[c] = socket.request(fields, 60_000);
      m.waiters[l]?.push(c);
      m.waitOf[c] = l;
      await queued(r, l, m.waiters[l]?.length ?? 0, String(this));
      return;
    }
    const answer = await r.request(c, fields);
    if (m.owner[l] === c) expectSameGrant(m, r, l, c, answer, String(this));
    else if (m.owner[l] === null) takeGrant(m, r, l, c, answer, String(this));
    else if (how === 'preempt') {
      expectCode(answer, 'lock_held', String(this));
      if ((answer['error'] as { owner?: unknown }).owner !== r.clients[m.owner[l] as number]) fail(`${this}: lock_held names the wrong owner: ${JSON.stringify(answer)}`);
    } else expectCode(answer, 'timeout', String(this));
  }
  toString(): string {
    return `${this.how}(c${this.c}, L${this.l})`;
  }
}

type TokenChoice = 'none' | 'current' | 'earlier' | 'never';
/** A client by index, or whoever holds the lock when the step runs (so that releases and appends
 *  by the holder, the interesting ones, are common). */
type Who = number | 'holder';

function resolve(m: LockModel, who: Who, l: number): number {
  return who === 'holder' ? m.owner[l] ?? 0 : who;
}

function nameOf(who: Who): string {
  return who === 'holder' ? 'holder' : `c${who}`;
}

function tokenFor(m: LockModel, l: number, choice: TokenChoice): number | undefined {
  const seen = m.tokens[l] as number[];
  const current = m.token[l];
  switch (choice) {
    case 'none': return undefined;
    case 'current': return current ?? seen.at(-1) ?? 1;
    case 'earlier': return seen.find((t) => current === null || t < current) ?? 1;
    case 'never': return (seen.at(-1) ?? 0) + 1_000_000;
  }
}

/** The answer the contract gives a release or an append naming `token`. */
function guardCode(m: LockModel, l: number, c: number, token: number | undefined): string {
  const current = m.token[l];
  if (current === null) return 'not_owner';
  if (token !== undefined && token < current) return 'stale_token';
  if (m.owner[l] !== c) return 'not_owner';
  if (token !== undefined && token !== current) return 'not_owner';
  return 'ok';
}

class Release implements Step {
  constructor(readonly who: Who, readonly l: number, readonly choice: TokenChoice) {}
  check(): boolean {
    return true;
  }
  async run(m: LockModel, r: LiveNode): Promise<void> {
    const { l } = this;
    const c = resolve(m, this.who, l);
    const token = tokenFor(m, l, this.choice);
    const answer = await r.request(c, { action: 'release', lock_name: r.locks[l], client_id: r.clients[c], ...(token === undefined ? {} : { token }) });
    m.live[c] = true;
    const code = guardCode(m, l, c, token);
    expectCode(answer, code, `${this} (token ${token})`);
    if (code === 'ok') await handOff(m, r, l, String(this));
  }
  toString(): string {
    return `release(${nameOf(this.who)}, L${this.l}, ${this.choice})`;
  }
}

/** UTF-8 bytes of what a read returns (lone surrogates are stored as U+FFFD). */
function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

class Append implements Step {
  constructor(readonly who: Who, readonly l: number, readonly f: number, readonly data: string, readonly choice: Exclude<TokenChoice, 'none'>) {}
  check(): boolean {
    return true;
  }
  async run(m: LockModel, r: LiveNode): Promise<void> {
    const { l, f } = this;
    const c = resolve(m, this.who, l);
    const token = tokenFor(m, l, this.choice) as number;
    const answer = await r.request(c, { action: 'append', file: r.filesNames[f], data: this.data, lock_name: r.locks[l], token, client_id: r.clients[c] });
    m.live[c] = true;
    const code = guardCode(m, l, c, token);
    expectCode(answer, code, `${this} (token ${token})`);
    if (code !== 'ok') return;
    m.files[f] += (this.data as string & { toWellFormed(): string }).toWellFormed();
    if (answer['size'] !== utf8Bytes(m.files[f] as string)) fail(`${this}: expected size ${utf8Bytes(m.files[f] as string)}, got ${JSON.stringify(answer)}`);
  }
  toString(): string {
    return `append(${nameOf(this.who)}, L${this.l}, f${this.f}, ${JSON.stringify(this.data)}, ${this.choice})`;
  }
}

class Look implements Step {
  constructor(readonly on: number, readonly what: 'check' | 'read', readonly i: number, readonly staleOk: boolean) {}
  check(): boolean {
    return true;
  }
  async run(m: LockModel, r: LiveNode): Promise<void> {
    const { i } = this;
    if (this.what === 'read') {
      const answer = await r.request(this.on, { action: 'read', file: r.filesNames[i], stale_ok: this.staleOk });
      if (answer['ok'] !== true || answer['data'] !== m.files[i]) fail(`${this}: expected ${JSON.stringify(m.files[i])}, got ${JSON.stringify(answer).slice(0, 400)}`);
      return;
    }
    const answer = await r.request(this.on, { action: 'check', lock_name: r.locks[i], stale_ok: this.staleOk });
    const owner = m.owner[i];
    const want = { ok: true, lock_name: r.locks[i], owner: owner === null ? null : r.clients[owner as number], token: m.token[i], waiters: m.waiters[i]?.length };
    for (const [key, value] of Object.entries(want)) {
      if (answer[key] !== value) fail(`${this}: expected ${JSON.stringify(want)}, got ${JSON.stringify(answer)}`);
    }
  }
  toString(): string {
    return `${this.what}(on c${this.on}, ${this.what === 'check' ? 'L' : 'f'}${this.i}${this.staleOk ? ', stale_ok' : ''})`;
  }
}

class Keepalive implements Step {
  constructor(readonly c: number) {}
  check(): boolean {
    return true;
  }
  async run(m: LockModel, r: LiveNode): Promise<void> {
    const answer = await r.request(this.c, { action: 'keepalive', client_id: r.clients[this.c] });
    m.live[this.c] = true;
    if (answer['ok'] !== true || answer['ttl_ms'] !== m.ttlMs[this.c]) fail(`${this}: expected ttl_ms ${m.ttlMs[this.c]}, got ${JSON.stringify(answer)}`);
  }
  toString(): string {
    return `keepalive(c${this.c})`;
  }
}

class Hello implements Step {
  constructor(readonly c: number, readonly ttlMs: number) {}
  check(): boolean {
    return true;
  }
  async run(m: LockModel, r: LiveNode): Promise<void> {
    const { c } = this;
    const answer = await r.request(c, { action: 'hello', client_id: r.clients[c], ttl_ms: this.ttlMs });
    const secret = answer['resume_token'];
    if (answer['ok'] !== true || answer['client_id'] !== r.clients[c] || answer['ttl_ms'] !== this.ttlMs || typeof secret !== 'string') {
      fail(`${this}: got ${JSON.stringify(answer)}`);
    }
    // A hello on the session's own connection keeps the session and its secret.
    if (m.resume[c] !== null && secret !== m.resume[c]) fail(`${this}: the resume_token changed within one session`);
    m.live[c] = true;
    m.resume[c] = secret;
    m.ttlMs[c] = this.ttlMs;
  }
  toString(): string {
    return `hello(c${this.c}, ttl ${this.ttlMs})`;
  }
}

class Bye implements Step {
  constructor(readonly c: number) {}
  check(): boolean {
    return true;
  }
  async run(m: LockModel, r: LiveNode): Promise<void> {
    expectCode(await r.request(this.c, { action: 'bye', client_id: r.clients[this.c] }), 'ok', String(this));
    await endSession(m, r, this.c, true, String(this));
  }
  toString(): string {
    return `bye(c${this.c})`;
  }
}

/** The client's connection drops (no grace): its session ends, and it comes back on a new one. */
class Disconnect implements Step {
  constructor(readonly c: number) {}
  check(): boolean {
    return true;
  }
  async run(m: LockModel, r: LiveNode): Promise<void> {
    const { c } = this;
    r.socket(c).destroy();
    await endSession(m, r, c, false, String(this));
    const socket = await WireSocket.connect(r.port);
    r.sockets[c] = socket;
    // Until the node has applied the disconnect, the old session is live and a hello is
    // client_mismatch; the first hello that succeeds opens the new session.
    for (const started = Date.now(); ; await new Promise((resolve) => setTimeout(resolve, 5))) {
      const answer = await r.request(c, { action: 'hello', client_id: r.clients[c] });
      if (answer['ok'] === true) {
        m.live[c] = true;
        m.resume[c] = answer['resume_token'] as string;
        m.ttlMs[c] = 10_000;
        return;
      }
      expectCode(answer, 'client_mismatch', String(this));
      if (Date.now() - started > probeTimeoutMs) fail(`${this}: the session was still live ${probeTimeoutMs} ms after its connection closed`);
    }
  }
  toString(): string {
    return `disconnect(c${this.c})`;
  }
}

/** The client moves its live session to a new connection with its resume secret. */
class Resume implements Step {
  constructor(readonly c: number) {}
  check(m: Readonly<LockModel>): boolean {
    return m.live[this.c] === true && m.resume[this.c] !== null && m.waitOf[this.c] === null;
  }
  async run(m: LockModel, r: LiveNode): Promise<void> {
    const { c } = this;
    const socket = await WireSocket.connect(r.port);
    const answer = await r.request(c, { action: 'hello', client_id: r.clients[c], resume_token: m.resume[c], ttl_ms: m.ttlMs[c] }, socket);
    if (answer['ok'] !== true || answer['resume_token'] !== m.resume[c]) fail(`${this}: got ${JSON.stringify(answer)}`);
    r.socket(c).destroy();
    r.sockets[c] = socket;
  }
  toString(): string {
    return `resume(c${this.c})`;
  }
}

/** A new connection names a client whose session is live elsewhere: client_mismatch, no effect. */
class Stranger implements Step {
  constructor(readonly c: number, readonly what: 'preempt' | 'release' | 'hello' | 'bye' | 'keepalive', readonly l: number) {}
  check(m: Readonly<LockModel>): boolean {
    return m.live[this.c] === true;
  }
  async run(_m: LockModel, r: LiveNode): Promise<void> {
    const { c, l } = this;
    const fields: Message = { action: this.what, client_id: r.clients[c] };
    if (this.what === 'preempt' || this.what === 'release') fields['lock_name'] = r.locks[l];
    if (this.what === 'hello') fields['resume_token'] = 'not-the-secret';
    expectCode(await r.request(c, fields, await r.stranger()), 'client_mismatch', String(this));
  }
  toString(): string {
    return `stranger(${this.what} as c${this.c}${this.what === 'preempt' || this.what === 'release' ? `, L${this.l}` : ''})`;
  }
}

// ---- the property ----

export function modelSteps(options: ModelOptions = {}): fc.Arbitrary<Step[]> {
  const c = fc.nat(clientCount - 1);
  const l = fc.nat(lockCount - 1);
  const f = fc.nat(fileCount - 1);
  const choice = fc.constantFrom<TokenChoice>('current', 'current', 'none', 'earlier', 'never');
  const strangerActions = fc.constantFrom('preempt' as const, 'release' as const, 'hello' as const, 'bye' as const, 'keepalive' as const);
  const take = fc.tuple(c, l, fc.constantFrom('preempt' as const, 'acquire_now' as const, 'acquire_wait' as const, 'acquire_wait' as const))
    .map(([a, b, how]) => new Take(a, b, how));
  const who = fc.oneof(fc.constant('holder' as const), c);
  const release = fc.tuple(who, l, choice).map(([a, b, t]) => new Release(a, b, t));
  // fc.commands draws each kind alike; the common requests are listed more than once.
  const steps: Array<fc.Arbitrary<Step>> = [
    take, take, take, release, release, release,
    fc.tuple(who, l, f, awkwardString(0, 16), fc.constantFrom<Exclude<TokenChoice, 'none'>>('current', 'current', 'earlier', 'never'))
      .map(([a, b, file, data, t]) => new Append(a, b, file, data, t)),
    fc.tuple(c, fc.constantFrom('check' as const, 'read' as const), fc.nat(1), fc.boolean()).map(([a, what, i, stale]) => new Look(a, what, i, stale)),
    c.map((a) => new Keepalive(a)),
    fc.tuple(c, fc.integer({ min: 1000, max: 60_000 })).map(([a, ttl]) => new Hello(a, ttl)),
    c.map((a) => new Bye(a)),
    c.map((a) => new Disconnect(a)),
    c.map((a) => new Resume(a)),
    fc.tuple(c, strangerActions, l).map(([a, what, b]) => new Stranger(a, what, b)),
  ];
  return fc.commands(steps, { maxCommands: 30, size: 'max', ...(options.replayPath === undefined ? {} : { replayPath: options.replayPath }) }) as unknown as fc.Arbitrary<Step[]>;
}

let serial = 0;

/** Runs one sequence of steps against the node on `port`; throws on the first disagreement. */
/** The names of one case: a suffix per client id (awkward unicode allowed), and per file the
 *  rest of a valid name ('longest' makes it 256 characters, a known bug). */
export interface ModelWorld {
  clients: string[];
  files: string[];
}

export async function runModelCase(port: number, world: ModelWorld, steps: Iterable<Step>): Promise<void> {
  const real = new LiveNode(port, ++serial, world);
  await real.open();
  try {
    await fc.asyncModelRun(() => ({ model: new LockModel(), real }), steps);
  } finally {
    real.close();
  }
}

export function modelWorld(options: ModelOptions = {}): fc.Arbitrary<ModelWorld> {
  const file = fc.oneof(validName(100), fc.constant('longest'));
  return fc.record({
    clients: fc.array(awkwardString(0, 6), { minLength: clientCount, maxLength: clientCount }),
    files: fc.array(file, { minLength: fileCount, maxLength: fileCount }),
  });
}
