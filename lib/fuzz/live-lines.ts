// Raw lines against a live node. A case is a few connections, each with a stream of generated
// lines (ended by \n or \r\n, and maybe an unterminated tail), written in random-sized chunks so
// lines split across writes; now and then one more connection poses as a peer. Properties:
//   - every line gets exactly one answer, matched by id: bad_request for what the schema refuses
//     (id null when unreadable), a real answer otherwise (never `internal`), nothing for an
//     empty line or an unterminated tail; every line the node sends is JSON;
//   - a line over 65536 bytes gets frame_too_large (id null) and the connection closes, after the
//     answers to the bad lines before it; a connection is never closed otherwise;
//   - a connection posing as a peer with an unknown id gets nothing and is closed;
//   - every answer that shows a lock's token shows the one owner of that grant (TokenLedger).
// The node's health (no crash, serves a fresh client) is checked by the caller after each case.
import * as fc from 'fast-check';
import { Prng } from '../core/prng';
import { errorCodes } from '../protocol/errors';
import { noKnownBugs, type KnownBugs } from './known-bugs';
import { expectationOf, LineGenerator, type Expectation } from './raw-lines';
import { WireSocket, type Message } from './wire';

/** How long a case waits for the answers it is owed. */
export const answersTimeoutMs = 5000;

/** What one connection sends: whole lines (without their ending) and maybe an unterminated tail. */
export interface ConnectionPlan {
  lines: Array<{ bytes: Buffer; ending: '\n' | '\r\n' }>;
  tail: Buffer | null;
}

export interface LinesCase {
  connections: number;
  lines: Array<{ conn: number; seed: number; crlf: boolean }>;
  tail: { conn: number; seed: number } | null;
  chunkSeed: number;
  /** One more connection that opens with a peer hello from a member the node does not know:
   *  `refused` sends a whole hello line, `unbounded` (known bug peer-hello-unbounded) never
   *  ends its hello line. */
  imposter: 'none' | 'refused' | 'unbounded';
}

export interface LinesStats {
  lines: number;
  valid: number;
  codes: Map<string, number>;
}

/**
 * Fencing across everything a run sees: a token of a lock names one grant, so every answer
 * that shows lock L with token T (a grant, a re-take, a check) shows the same owner. Kept for
 * the life of a node, across cases.
 */
export class TokenLedger {
  private readonly owners = new Map<string, Map<number, string>>();

  note(answer: Message, where: string): void {
    const { lock_name: lock, token, owner } = answer;
    if (answer['ok'] !== true || typeof lock !== 'string' || typeof token !== 'number' || typeof owner !== 'string') return;
    const tokens = this.owners.get(lock) ?? new Map<number, string>();
    this.owners.set(lock, tokens);
    const known = tokens.get(token);
    if (known !== undefined && known !== owner) fail(`${where}: token ${token} of ${lock} was granted to ${known}, and now shows ${owner}`);
    tokens.set(token, owner);
  }
}

export function linesCase(_bugs: KnownBugs = noKnownBugs): fc.Arbitrary<LinesCase> {
  const imposters = ['refused', 'unbounded'] as const;
  return fc.record({
    connections: fc.integer({ min: 1, max: 4 }),
    lines: fc.array(fc.record({ conn: fc.nat(3), seed: fc.nat(), crlf: fc.boolean() }), { minLength: 1, maxLength: 24 }),
    tail: fc.option(fc.record({ conn: fc.nat(3), seed: fc.nat() }), { freq: 6, nil: null }),
    chunkSeed: fc.nat(),
    imposter: fc.oneof({ weight: 15, arbitrary: fc.constant('none' as const) }, { weight: 1, arbitrary: fc.constantFrom(...imposters) }),
  });
}

/** The line a seed stands for; ids carry the seed so lines from different seeds never collide. */
export function lineOf(seed: number): Buffer {
  return new LineGenerator(new Prng(seed), `s${seed}-`).line().bytes;
}

export function plansOf(c: LinesCase): ConnectionPlan[] {
  const plans: ConnectionPlan[] = Array.from({ length: c.connections }, () => ({ lines: [], tail: null }));
  for (const line of c.lines) {
    (plans[line.conn % c.connections] as ConnectionPlan).lines.push({ bytes: lineOf(line.seed), ending: line.crlf ? '\r\n' : '\n' });
  }
  if (c.tail !== null) (plans[c.tail.conn % c.connections] as ConnectionPlan).tail = lineOf(c.tail.seed);
  return plans;
}

/** What a connection is owed: the answers to its lines up to the first oversized one, and
 *  whether that line (or the tail) closes it. */
interface Owed {
  answers: Array<Extract<Expectation, { kind: 'answer' }>>;
  closes: boolean;
}

function owedOf(plan: ConnectionPlan): Owed {
  const answers: Owed['answers'] = [];
  for (const line of plan.lines) {
    // The splitter counts a line's bytes up to the \n, a \r of a \r\n ending included.
    const e = expectationOf(line.ending === '\r\n' ? Buffer.concat([line.bytes, Buffer.from('\r')]) : line.bytes);
    if (e.kind === 'too_large') return { answers, closes: true };
    if (e.kind === 'answer') answers.push(e);
  }
  return { answers, closes: plan.tail !== null && expectationOf(plan.tail).kind === 'too_large' };
}

function streamOf(plan: ConnectionPlan): Buffer {
  const parts: Buffer[] = [];
  for (const line of plan.lines) parts.push(line.bytes, Buffer.from(line.ending));
  if (plan.tail !== null) parts.push(plan.tail);
  return Buffer.concat(parts);
}

async function sendChunked(socket: WireSocket, bytes: Buffer, prng: Prng): Promise<void> {
  let at = 0;
  while (at < bytes.length && !socket.closed) {
    const n = prng.chance(0.1) ? prng.int(1, 16) : prng.int(1, 8192);
    socket.write(bytes.subarray(at, at + n));
    at += n;
    if (prng.chance(0.2)) await new Promise((resolve) => setImmediate(resolve));
  }
}

function fail(message: string): never {
  throw new Error(message);
}

function codeOf(answer: Message): string {
  if (answer['ok'] === true) return 'ok';
  const error = answer['error'] as { code?: unknown } | undefined;
  return String(error?.code);
}

/** Checks one answer's shape, whatever it answers. */
function checkShape(answer: Message, where: string): void {
  if (typeof answer['ok'] !== 'boolean') fail(`${where}: an answer without a boolean ok: ${JSON.stringify(answer).slice(0, 300)}`);
  if (answer['ok'] === true) return;
  const error = answer['error'] as { code?: unknown; message?: unknown } | undefined;
  if (!(errorCodes as readonly unknown[]).includes(error?.code) || typeof error?.message !== 'string') {
    fail(`${where}: a malformed error answer: ${JSON.stringify(answer).slice(0, 300)}`);
  }
  if (error?.code === 'internal') fail(`${where}: answered internal: ${JSON.stringify(answer).slice(0, 300)}`);
}

/** Matches a connection's answers to the lines it sent, by id, and checks each. */
function checkConnection(socket: WireSocket, owed: Owed, where: string, stats: LinesStats, ledger: TokenLedger): void {
  const unparsable = socket.unparsable[0];
  if (unparsable !== undefined) fail(`${where}: the node sent a line that is not a JSON object: ${unparsable.slice(0, 300)}`);
  for (const m of socket.received) {
    if (!('id' in m) && typeof m['event'] !== 'string') fail(`${where}: a line that is neither an answer nor an event: ${JSON.stringify(m).slice(0, 300)}`);
  }
  let answers = socket.answers();
  answers.forEach((a) => {
    checkShape(a, where);
    ledger.note(a, where);
  });
  if (owed.closes) {
    const tooLarge = answers.filter((a) => codeOf(a) === 'frame_too_large');
    if (tooLarge.length !== 1 || tooLarge[0]?.['id'] !== null) {
      fail(`${where}: expected one frame_too_large with id null, got ${JSON.stringify(tooLarge).slice(0, 300)} (socket error ${socket.error}; received ${JSON.stringify(socket.received).slice(0, 300)})`);
    }
    if (!socket.closed) fail(`${where}: the connection stayed open after frame_too_large`);
    answers = answers.filter((a) => codeOf(a) !== 'frame_too_large');
  } else if (socket.closed) {
    fail(`${where}: the node closed a connection that sent no oversized line`);
  }
  const groups = new Map<string, { owed: Owed['answers']; got: Message[] }>();
  for (const e of owed.answers) {
    const g = groups.get(e.idKey) ?? { owed: [], got: [] };
    g.owed.push(e);
    groups.set(e.idKey, g);
  }
  for (const a of answers) {
    const key = JSON.stringify(a['id']);
    const g = groups.get(key);
    if (g === undefined) fail(`${where}: an answer with an id no line carried: ${JSON.stringify(a).slice(0, 300)}`);
    g.got.push(a);
    stats.codes.set(codeOf(a), (stats.codes.get(codeOf(a)) ?? 0) + 1);
  }
  for (const [key, g] of groups) checkGroup(key, g, owed.closes, where);
}

/** The answers carrying one id: one per line that carried it (valid lines before a
 *  frame_too_large may go unanswered: the connection closed under them). */
function checkGroup(key: string, g: { owed: Array<Extract<Expectation, { kind: 'answer' }>>; got: Message[] }, closes: boolean, where: string): void {
  const lines = JSON.stringify(g.owed.map((e) => e.line.slice(0, 160)));
  const got = JSON.stringify(g.got).slice(0, 600);
  const bad = g.owed.filter((e) => e.bad).length;
  const isBad = (m: Message): boolean => codeOf(m) === 'bad_request';
  // A valid request may still be refused for reusing a request_id with another request.
  const reused = g.got.filter((m) => isBad(m) && String((m['error'] as { message?: unknown }).message).includes('already used')).length;
  const gotBad = g.got.filter(isBad).length - Math.min(reused, g.owed.length - bad);
  if (gotBad !== bad) fail(`${where}: id ${key.slice(0, 80)}: ${bad} bad lines but ${gotBad} bad_request answers (lines ${lines}; answers ${got})`);
  if (g.got.length > g.owed.length || (!closes && g.got.length !== g.owed.length)) {
    fail(`${where}: id ${key.slice(0, 80)}: ${g.owed.length} lines but ${g.got.length} answers (lines ${lines}; answers ${got})`);
  }
  for (const e of g.owed) {
    if (e.unreadable && key !== 'null') fail(`${where}: an unreadable line was answered with id ${key}`);
  }
}

export interface PlanOptions {
  /** Ends the wait for answers early (the node crashed: they will never come). */
  interrupted?: () => boolean;
  /** Shared by the cases of one node; a fresh one by default. */
  ledger?: TokenLedger;
}

/** Sends the plans on fresh connections and checks what comes back; throws on a violation. */
export async function runPlans(port: number, plans: ConnectionPlan[], chunkSeed: number, options: PlanOptions = {}): Promise<LinesStats> {
  const interrupted = options.interrupted ?? (() => false);
  const ledger = options.ledger ?? new TokenLedger();
  const sockets = await Promise.all(plans.map(() => WireSocket.connect(port)));
  const stats: LinesStats = { lines: 0, valid: 0, codes: new Map() };
  try {
    const owed = plans.map((plan) => owedOf(plan));
    for (const o of owed) {
      stats.lines += o.answers.length;
      stats.valid += o.answers.filter((e) => !e.bad).length;
    }
    const prng = new Prng(chunkSeed);
    await Promise.all(sockets.map((socket, i) => sendChunked(socket, streamOf(plans[i] as ConnectionPlan), prng)));
    const owedAll = (i: number): boolean => {
      const socket = sockets[i] as WireSocket;
      const o = owed[i] as Owed;
      return o.closes ? socket.closed : socket.answers().length >= o.answers.length;
    };
    const done = await Promise.all(sockets.map((socket, i) => socket.until(() => owedAll(i) || interrupted(), answersTimeoutMs)));
    if (interrupted()) fail('interrupted while waiting for answers');
    done.forEach((ok, i) => {
      if (!ok) fail(`connection ${i}: not every line was answered within ${answersTimeoutMs} ms: ${missing(sockets[i] as WireSocket, owed[i] as Owed)}`);
    });
    sockets.forEach((socket, i) => checkConnection(socket, owed[i] as Owed, `connection ${i}`, stats, ledger));
    await Promise.all(sockets.map((socket, i) => (owed[i]?.closes === true ? undefined : stillServes(socket, `connection ${i}`))));
    return stats;
  } finally {
    for (const socket of sockets) socket.destroy();
  }
}

/** A connection that took bad lines still serves (a bad request never closes it). The line
 *  before may be an unterminated tail: a newline first ends it (and it gets its answer). */
async function stillServes(socket: WireSocket, where: string): Promise<void> {
  socket.write('\n');
  const answer = await socket.request({ action: 'status' }, answersTimeoutMs);
  if (answer?.['ok'] !== true) fail(`${where}: status after the fuzzed lines answered ${JSON.stringify(answer)}`);
}

function missing(socket: WireSocket, owed: Owed): string {
  const got = new Map<string, number>();
  for (const m of socket.answers()) got.set(JSON.stringify(m['id']), (got.get(JSON.stringify(m['id'])) ?? 0) + 1);
  const lines: string[] = [];
  for (const e of owed.answers) {
    const n = got.get(e.idKey) ?? 0;
    if (n > 0) got.set(e.idKey, n - 1);
    else lines.push(e.line.slice(0, 200));
  }
  return `${lines.length} unanswered (closed: ${socket.closed}), e.g. ${JSON.stringify(lines.slice(0, 5))}`;
}

/** Bytes a connection that has not proven it is a peer may send without a newline. */
const helloBytesMax = 1024 * 1024;

/** A connection that opens as a peer the node does not know: it must be refused, unanswered,
 *  whether it sends its hello line whole or never ends it. */
async function runImposter(port: number, seed: number, how: 'refused' | 'unbounded'): Promise<void> {
  const socket = await WireSocket.connect(port);
  try {
    if (how === 'refused') {
      socket.write(`{"type":"peer_hello","from":"n2","to":"n1"}\n${JSON.stringify({ type: 'append_entries', from: 'n2', to: 'n1', term: 99 })}\n`);
      socket.write(Buffer.concat([lineOf(seed), Buffer.from('\n')]));
    } else {
      socket.write('{"type":"peer_hello","from":"n2","to":"n1","pad":"');
      socket.write(Buffer.alloc(2 * helloBytesMax, 0x61));
    }
    // Past the bytes it may hold, the node has no reason to wait: a second is plenty.
    const waitMs = how === 'refused' ? answersTimeoutMs : 1000;
    if (!(await socket.until(() => socket.closed, waitMs))) fail(`a connection posing as an unknown peer (${how}) was not closed`);
    if (socket.received.length + socket.unparsable.length > 0) fail(`a connection posing as an unknown peer was answered: ${JSON.stringify(socket.received).slice(0, 300)}`);
  } finally {
    socket.destroy();
  }
}

export async function runLinesCase(port: number, c: LinesCase, options: PlanOptions = {}): Promise<LinesStats> {
  const [stats] = await Promise.all([
    runPlans(port, plansOf(c), c.chunkSeed, options),
    c.imposter === 'none' ? Promise.resolve() : runImposter(port, c.chunkSeed, c.imposter),
  ]);
  return stats;
}
