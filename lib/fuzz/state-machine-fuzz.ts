// Property-based fuzzing of the pure lock state machine (lib/locks). A case is a small world (a
// few clients, locks and files with awkward names) and a list of steps; each step is resolved
// against the current state into a Command the replica could have proposed (every field within
// what the schema admits) or one that is wrong for the state (someone else's connection, a stale
// or never-granted token, a reused request_id, a wrong resume secret, time running backwards or
// jumping to 1e308). After every apply:
//   - apply did not throw, and checkInvariants holds;
//   - a second replica fed the same commands (as fresh copies) gave the same answer and effects;
//   - answers are well-formed (known error codes, never `internal`);
//   - fencing: a lock's token never goes down, a new grant's token is above every earlier one;
// and at one random step the state goes through encodeSnapshot/decodeSnapshot: the copy encodes
// to the same text and, from then on, answers every command exactly like the original.
//
// Steps hold indexes and choices, not values taken from the state, so fast-check can shrink a
// failing case to the few steps that matter and the case still means something after shrinking.
import * as fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import { AssertionError } from '../core/assert';
import { requestIdLengthMax } from '../core/limits';
import type { Command, ConnId } from '../locks/commands';
import { checkInvariants } from '../locks/invariants';
import { decodeSnapshot, encodeSnapshot } from '../locks/snapshot';
import { apply, type ApplyResult } from '../locks/state-machine';
import { checkLock, createLockState, readFile, type LockState } from '../locks/state';
import type { Answer } from '../protocol/answers';
import { errorCodes } from '../protocol/errors';
import { anyName, appendData, awkwardString, durationMs, shrinkAcross, ttlMs } from './arbitraries';

export type ApplyFn = (state: LockState, index: number, command: Command) => ApplyResult;

/** How the cluster time of the next command moves. */
type TimeStep =
  | { kind: 'forward'; ms: number }
  | { kind: 'back'; ms: number }
  | { kind: 'set'; at: number };

/** Which connection a client's command names. */
type ConnChoice = 'own' | 'fresh' | 'other' | 'http';
/** Which token a release or append carries. */
type TokenChoice = 'none' | 'current' | 'stale' | 'next' | { literal: number };
/** Which request_id a state-changing command carries. */
type ReqChoice = 'none' | 'fresh' | { reuse: number } | { literal: string };

type Op =
  | { type: 'hello'; client: number; conn: ConnChoice; ttlMs: number; graceMs: number; implicit: boolean; resume: 'none' | 'right' | 'wrong' }
  | { type: 'preempt'; client: number; conn: ConnChoice; lock: number; leaseMs: number | null; req: ReqChoice }
  | { type: 'acquire'; client: number; conn: ConnChoice; lock: number; leaseMs: number | null; timeoutMs: number | null; req: ReqChoice }
  | { type: 'release'; client: number; conn: ConnChoice; lock: number; token: TokenChoice; req: ReqChoice }
  | { type: 'append'; client: number; conn: ConnChoice; lock: number; token: TokenChoice; file: number; data: string; req: ReqChoice }
  | { type: 'bye'; client: number; conn: ConnChoice; req: ReqChoice }
  | { type: 'touch'; touches: Array<{ client: number; conn: ConnChoice }> }
  | { type: 'disconnected'; client: number; conn: ConnChoice }
  | { type: 'tick' };

/** `implicit`: like a node, open the client's session first if it has none on that connection. */
export interface Step { time: TimeStep; op: Op; implicit: boolean }

export interface StateMachineCase {
  clients: string[];
  locks: string[];
  files: string[];
  steps: Step[];
  /** The step after which the state goes through a snapshot round trip (modulo the length). */
  snapshotAfter: number;
}

// ---- arbitraries ----

const timeStep: fc.Arbitrary<TimeStep> = fc.oneof(
  shrinkAcross,
  // Huge jumps end every session at once (at 1e308 adding a ttl changes nothing), so they are
  // rare enough that most cases keep sessions alive for a while.
  { weight: 200, arbitrary: fc.record({ kind: fc.constant('forward' as const), ms: fc.integer({ min: 0, max: 200 }) }) },
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('forward' as const), ms: fc.double({ min: 0, max: 1e7, noNaN: true }) }) },
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('back' as const), ms: fc.integer({ min: 1, max: 1000 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('set' as const),
      at: fc.oneof(shrinkAcross, fc.constantFrom(0, 2 ** 53 - 1, 2 ** 53 + 2, 1e21, 1e308, Number.MAX_VALUE), fc.double({ min: 0, max: Number.MAX_VALUE, noNaN: true })),
    }),
  },
);

const conn: fc.Arbitrary<ConnChoice> = fc.oneof(
  shrinkAcross,
  { weight: 12, arbitrary: fc.constant('own' as const) },
  { weight: 1, arbitrary: fc.constantFrom('fresh' as const, 'other' as const, 'http' as const) },
);

const token: fc.Arbitrary<TokenChoice> = fc.oneof(
  shrinkAcross,
  { weight: 3, arbitrary: fc.constantFrom('none' as const, 'current' as const) },
  { weight: 1, arbitrary: fc.constantFrom('stale' as const, 'next' as const) },
  { weight: 1, arbitrary: fc.record({ literal: fc.oneof(shrinkAcross, fc.integer({ min: 1, max: 20 }), fc.constant(Number.MAX_SAFE_INTEGER)) }) },
);

const req: fc.Arbitrary<ReqChoice> = fc.oneof(
  shrinkAcross,
  { weight: 6, arbitrary: fc.constant('fresh' as const) },
  { weight: 2, arbitrary: fc.constant('none' as const) },
  { weight: 2, arbitrary: fc.record({ reuse: fc.nat(20) }) },
  { weight: 1, arbitrary: fc.record({ literal: awkwardString(1, requestIdLengthMax) }) },
);

const who = fc.nat(7);
const lease = fc.option(durationMs(1), { nil: null, freq: 3 });

const op: fc.Arbitrary<Op> = fc.oneof(
  shrinkAcross,
  { weight: 3, arbitrary: fc.record({ type: fc.constant('hello' as const), client: who, conn, ttlMs, graceMs: fc.oneof(shrinkAcross, fc.constant(0), durationMs(0)), implicit: fc.boolean(), resume: fc.constantFrom('none' as const, 'right' as const, 'wrong' as const) }) },
  { weight: 4, arbitrary: fc.record({ type: fc.constant('preempt' as const), client: who, conn, lock: who, leaseMs: lease, req }) },
  { weight: 5, arbitrary: fc.record({ type: fc.constant('acquire' as const), client: who, conn, lock: who, leaseMs: lease, timeoutMs: fc.option(durationMs(0), { nil: null, freq: 2 }), req }) },
  { weight: 4, arbitrary: fc.record({ type: fc.constant('release' as const), client: who, conn, lock: who, token, req }) },
  { weight: 3, arbitrary: fc.record({ type: fc.constant('append' as const), client: who, conn, lock: who, token, file: who, data: appendData, req }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('bye' as const), client: who, conn, req }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('touch' as const), touches: fc.array(fc.record({ client: who, conn }), { maxLength: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('disconnected' as const), client: who, conn }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('tick' as const) }) },
);

export function stateMachineCase(stepsMax = 60): fc.Arbitrary<StateMachineCase> {
  return fc.record({
    clients: fc.uniqueArray(anyName, { minLength: 1, maxLength: 4 }),
    locks: fc.uniqueArray(anyName, { minLength: 1, maxLength: 3 }),
    files: fc.uniqueArray(anyName, { minLength: 1, maxLength: 2 }),
    steps: fc.array(fc.record({ time: timeStep, op, implicit: fc.oneof(shrinkAcross, { weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }) }), { maxLength: stepsMax, size: 'max' }),
    snapshotAfter: fc.nat(),
  });
}

// ---- turning steps into commands ----

/** Resolves steps against the state, like a node turning requests into commands. */
class CommandBuilder {
  private at = 0;
  private counter = 0;
  private readonly conns = new Map<string, string>();
  private readonly reqs = new Map<string, string[]>();

  constructor(private readonly world: StateMachineCase) {}

  /** The commands for one step: the step's own, after an implicit hello when it asks for one. */
  build(state: LockState, step: Step): Command[] {
    const command = this.command(state, this.move(step.time), step.op);
    if (!step.implicit || !('client' in command) || command.type === 'hello' || command.type === 'disconnected') return [command];
    const session = state.sessions.get(command.client);
    if (session !== undefined && session.conn === command.conn) return [command];
    const hello: Command = {
      type: 'hello', at: command.at, client: command.client, conn: command.conn, ttlMs: 10_000, graceMs: 0, implicit: true,
      fresh: `secret${++this.counter}`,
    };
    return [hello, command];
  }

  private command(state: LockState, at: number, o: Op): Command {
    switch (o.type) {
      case 'tick': return { type: 'tick', at };
      case 'touch': return {
        type: 'touch', at, touches: o.touches.map((t) => {
          const client = this.client(t.client);
          return { client, conn: this.conn(client, t.conn) };
        }),
      };
      case 'disconnected': {
        const client = this.client(o.client);
        return { type: 'disconnected', at, client, conn: this.conn(client, o.conn) ?? 'http' };
      }
      case 'hello': {
        const client = this.client(o.client);
        const secret = state.sessions.get(client)?.resume;
        const resume = o.resume === 'right' ? secret : o.resume === 'wrong' ? `wrong${this.counter}` : undefined;
        return {
          type: 'hello', at, client, conn: this.conn(client, o.conn), ttlMs: o.ttlMs, graceMs: o.graceMs, implicit: o.implicit,
          fresh: `secret${++this.counter}`, ...(resume === undefined ? {} : { resume }),
        };
      }
      default:
        return this.fromClient(state, at, o);
    }
  }

  private fromClient(state: LockState, at: number, o: Exclude<Op, { type: 'tick' | 'touch' | 'disconnected' | 'hello' }>): Command {
    const client = this.client(o.client);
    const common = { at, client, conn: this.conn(client, o.conn), ...this.req(client, o.req) };
    switch (o.type) {
      case 'preempt':
        return { type: 'preempt', ...common, lock: this.lock(o.lock), ...(o.leaseMs === null ? {} : { leaseMs: o.leaseMs }) };
      case 'acquire':
        return {
          type: 'acquire', ...common, lock: this.lock(o.lock),
          ...(o.leaseMs === null ? {} : { leaseMs: o.leaseMs }), ...(o.timeoutMs === null ? {} : { timeoutMs: o.timeoutMs }),
        };
      case 'release': {
        const lock = this.lock(o.lock);
        const t = this.token(state, lock, o.token);
        return { type: 'release', ...common, lock, ...(t === undefined ? {} : { token: t }) };
      }
      case 'append': {
        const lock = this.lock(o.lock);
        return { type: 'append', ...common, lock, token: this.token(state, lock, o.token) ?? 1, file: this.name(this.world.files, o.file), data: o.data };
      }
      case 'bye':
        return { type: 'bye', ...common };
    }
  }

  /** Learns which connection a client's session moved to. */
  observe(command: Command, result: ApplyResult): void {
    if (command.type === 'hello' && result.answer?.ok === true && command.conn !== null) this.conns.set(command.client, command.conn);
  }

  private move(time: TimeStep): number {
    if (time.kind === 'forward') this.at += time.ms;
    else if (time.kind === 'back') this.at -= time.ms;
    else this.at = time.at;
    return this.at;
  }

  private name(pool: readonly string[], i: number): string {
    return pool[i % pool.length] as string;
  }

  private client(i: number): string {
    return this.name(this.world.clients, i);
  }

  private lock(i: number): string {
    return this.name(this.world.locks, i);
  }

  private conn(client: string, choice: ConnChoice): ConnId {
    const own = this.conns.get(client) ?? `n1/0/${client}`;
    switch (choice) {
      case 'own': return own;
      case 'fresh': return `n2/${++this.counter}/${client}`;
      case 'other': return `n9/9/${client}`;
      case 'http': return null;
    }
  }

  private token(state: LockState, lock: string, choice: TokenChoice): number | undefined {
    const current = state.locks.get(lock)?.token;
    if (choice === 'none') return undefined;
    if (choice === 'current') return current ?? 1;
    if (choice === 'stale') return Math.max(1, (current ?? 1) - 1);
    if (choice === 'next') return state.lastToken + 1;
    return choice.literal;
  }

  private req(client: string, choice: ReqChoice): { req?: string } {
    const used = this.reqs.get(client) ?? [];
    this.reqs.set(client, used);
    if (choice === 'none') return {};
    if (typeof choice === 'object' && 'reuse' in choice && used.length > 0) return { req: used[choice.reuse % used.length] as string };
    const fresh = typeof choice === 'object' && 'literal' in choice ? choice.literal : `q${++this.counter}`;
    used.push(fresh);
    return { req: fresh };
  }
}

// ---- the property ----

function fail(message: string): never {
  throw new AssertionError(message);
}

function checkAnswer(answer: Answer | null, where: string): void {
  if (answer === null) return;
  if (answer.ok) return;
  if (!(errorCodes as readonly string[]).includes(answer.error.code)) fail(`${where}: unknown error code ${answer.error.code}`);
  if (answer.error.code === 'internal') fail(`${where}: answered internal: ${answer.error.message}`);
}

/** A replica under test: its own state and index. */
class Copy {
  index = 0;
  constructor(readonly state: LockState, private readonly applyFn: ApplyFn) {
    this.index = state.appliedIndex;
  }

  run(command: Command): ApplyResult {
    // A fresh copy each time: apply must neither keep nor change the command it was given.
    return this.applyFn(this.state, ++this.index, structuredClone(command));
  }
}

/** Fencing: per lock, the token only grows and a new grant's token is above all earlier ones. */
class TokenWatch {
  private readonly seen = new Map<string, number>();
  private lastToken = 0;

  check(state: LockState, where: string): void {
    if (state.lastToken < this.lastToken) fail(`${where}: lastToken went down from ${this.lastToken} to ${state.lastToken}`);
    this.lastToken = state.lastToken;
    for (const [name, lock] of state.locks) {
      const before = this.seen.get(name) ?? 0;
      if (lock.token < before) fail(`${where}: lock ${JSON.stringify(name)} token went down from ${before} to ${lock.token}`);
      this.seen.set(name, lock.token);
    }
  }
}

function sameReads(world: StateMachineCase, a: LockState, b: LockState, where: string): void {
  for (const name of world.locks) {
    if (!isDeepStrictEqual(checkLock(a, name), checkLock(b, name))) fail(`${where}: check ${JSON.stringify(name)} differs between replicas`);
  }
  for (const name of world.files) {
    if (!isDeepStrictEqual(readFile(a, name), readFile(b, name))) fail(`${where}: read ${JSON.stringify(name)} differs between replicas`);
  }
}

/** One case: the replica under test, a second one, and (after the snapshot step) a restored one. */
class CaseRun {
  private readonly builder: CommandBuilder;
  private readonly first: Copy;
  private readonly others: Copy[];
  private readonly tokens = new TokenWatch();

  constructor(private readonly world: StateMachineCase, private readonly applyFn: ApplyFn) {
    this.builder = new CommandBuilder(world);
    this.first = new Copy(createLockState(), applyFn);
    this.others = [new Copy(createLockState(), applyFn)];
  }

  run(): void {
    const { world } = this;
    const snapshotAfter = world.steps.length === 0 ? -1 : world.snapshotAfter % world.steps.length;
    world.steps.forEach((step, i) => {
      for (const command of this.builder.build(this.first.state, step)) this.runCommand(command, `step ${i} (${command.type})`);
      if (i === snapshotAfter) this.restore(`step ${i}`);
    });
    sameReads(world, this.first.state, (this.others[0] as Copy).state, 'end');
    const text = encodeSnapshot(this.first.state);
    for (const other of this.others) {
      if (encodeSnapshot(other.state) !== text) fail(`end: ${this.nameOf(other)} holds a different state`);
    }
  }

  private runCommand(command: Command, where: string): void {
    const a = this.first.run(command);
    checkInvariants(this.first.state);
    checkAnswer(a.answer, where);
    for (const effect of a.effects) if (effect.kind === 'wait_ended') checkAnswer(effect.answer, `${where}, wait_ended effect`);
    this.tokens.check(this.first.state, where);
    for (const other of this.others) {
      const b = other.run(command);
      if (!isDeepStrictEqual(a, b)) {
        fail(`${where}: ${this.nameOf(other)} answered ${JSON.stringify(b).slice(0, 300)} instead of ${JSON.stringify(a).slice(0, 300)}`);
      }
    }
    this.builder.observe(command, a);
  }

  /** Snapshot round trip: the decoded copy encodes to the same text and runs alongside from now on. */
  private restore(where: string): void {
    const text = encodeSnapshot(this.first.state);
    const restored = new Copy(decodeSnapshot(text), this.applyFn);
    if (encodeSnapshot(restored.state) !== text) fail(`${where}: the decoded snapshot encodes differently`);
    this.others.push(restored);
  }

  private nameOf(copy: Copy): string {
    return copy === this.others[0] ? 'a second replica' : 'the replica restored from a snapshot';
  }
}

/** Runs one case; throws (an AssertionError, or whatever apply threw) on the first violation. */
export function runStateMachineCase(world: StateMachineCase, applyFn: ApplyFn = apply): void {
  new CaseRun(world, applyFn).run();
}

export function stateMachineProperty(applyFn: ApplyFn = apply, stepsMax = 60): fc.IProperty<[StateMachineCase]> {
  return fc.property(stateMachineCase(stepsMax), (world) => runStateMachineCase(world, applyFn));
}
