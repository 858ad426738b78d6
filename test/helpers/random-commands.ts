// A seeded random command stream for the lock state machine, shared by tests that replay random
// logs (adapted from the generator in test/locks/state-machine.test.ts). It looks at the state to
// pick real tokens, resume secrets and connections often enough that grants, hand-offs and
// expiries actually happen.
import type { Prng } from '../../lib/core/prng';
import type { Command, ConnId } from '../../lib/locks/commands';
import type { ApplyResult } from '../../lib/locks/state-machine';
import type { LockState } from '../../lib/locks/state';

export const clientNames = ['c0', 'c1', 'c2', 'c3'];
export const lockNames = ['L0', 'L1', 'L2'];
export const fileNames = ['f0', 'f1'];
export const appendData = ['a', 'é', '😀', 'xyz', '', '中文'];

/** Drops undefined fields, so that commands look like the ones a node builds from JSON. */
export function defined<T extends Record<string, unknown>>(fields: T): Partial<T> {
  const out: Partial<T> = {};
  for (const key of Object.keys(fields) as (keyof T)[]) {
    if (fields[key] !== undefined) out[key] = fields[key];
  }
  return out;
}

export class CommandGenerator {
  private at = 0;
  private counter = 0;
  private readonly conns = new Map<string, string>();
  private readonly reqs = new Map<string, string[]>();

  constructor(private readonly prng: Prng) {}

  /** The cluster time the next command is stamped with, before its random step. */
  get time(): number {
    return this.at;
  }

  /** Moves the generator's clock forward by `ms` (a quiet stretch: sessions, leases and waiter
   *  timeouts come due), and returns a tick stamped there. */
  jump(ms: number): Command {
    this.at += ms;
    return { type: 'tick', at: this.at };
  }

  next(state: LockState): Command {
    const prng = this.prng;
    this.at += prng.int(0, 60);
    // Now and then a command stamped in the past (a new leader whose clock starts behind).
    const at = prng.chance(0.05) ? Math.max(0, this.at - prng.int(1, 300)) : this.at;
    const client = prng.pick(clientNames);
    const roll = prng.next();
    if (roll < 0.12) return this.hello(state, at, client);
    if (roll < 0.45) return this.take(at, client);
    if (roll < 0.6) return this.release(state, at, client);
    if (roll < 0.72) return this.append(state, at, client);
    if (roll < 0.75) return { type: 'bye', at, client, conn: this.connFor(client), ...this.req(client) };
    if (roll < 0.88) {
      return { type: 'touch', at, touches: clientNames.filter(() => prng.chance(0.5)).map((c) => ({ client: c, conn: this.conn(c) })) };
    }
    if (roll < 0.93) return { type: 'disconnected', at, client, conn: this.conn(client) };
    return { type: 'tick', at };
  }

  /** Learns which connection a client's session now lives on. */
  observe(command: Command, result: ApplyResult): void {
    if (command.type === 'hello' && result.answer?.ok === true && command.conn !== null) this.conns.set(command.client, command.conn);
  }

  private hello(state: LockState, at: number, client: string): Command {
    const prng = this.prng;
    const session = state.sessions.get(client);
    const fresh = `s${++this.counter}`;
    const base = {
      type: 'hello' as const, at, client, fresh,
      ttlMs: prng.int(100, 2000), graceMs: prng.pick([0, 0, 200, 1000]), implicit: prng.chance(0.3),
    };
    const how = prng.next();
    if (how < 0.4 || session === undefined) return { ...base, conn: prng.chance(0.8) ? this.conn(client) : this.newConn(client) };
    if (how < 0.7) return { ...base, conn: this.newConn(client), resume: session.resume };
    if (how < 0.85) return { ...base, conn: this.newConn(client), resume: 'wrong' };
    return { ...base, conn: this.newConn(client) };
  }

  private take(at: number, client: string): Command {
    const prng = this.prng;
    const lock = prng.pick(lockNames);
    const leaseMs = prng.chance(0.3) ? prng.int(1, 1500) : undefined;
    const common = { at, client, conn: this.connFor(client), lock, ...this.req(client), ...defined({ leaseMs }) };
    if (prng.chance(0.3)) return { type: 'preempt', ...common };
    const timeoutMs = prng.pick([undefined, undefined, 0, prng.int(1, 1500)]);
    return { type: 'acquire', ...common, ...defined({ timeoutMs }) };
  }

  private release(state: LockState, at: number, client: string): Command {
    const prng = this.prng;
    const lock = prng.pick(lockNames);
    const current = state.locks.get(lock)?.token;
    const token = prng.pick([undefined, current, prng.int(1, state.lastToken + 1)]);
    return { type: 'release', at, client, conn: this.connFor(client), lock, ...this.req(client), ...defined({ token }) };
  }

  private append(state: LockState, at: number, client: string): Command {
    const prng = this.prng;
    const lock = prng.pick(lockNames);
    const current = state.locks.get(lock)?.token;
    const token = current !== undefined && prng.chance(0.7) ? current : prng.int(1, state.lastToken + 1);
    return {
      type: 'append', at, client, conn: this.connFor(client), lock, token,
      file: prng.pick(fileNames), data: prng.pick(appendData), ...this.req(client),
    };
  }

  /** A fresh request_id mostly; sometimes one used before (a retry, or a reuse); sometimes none. */
  private req(client: string): { req?: string } {
    const prng = this.prng;
    const used = this.reqs.get(client) ?? [];
    this.reqs.set(client, used);
    const roll = prng.next();
    if (roll < 0.15) return {};
    if (roll < 0.35 && used.length > 0) return { req: prng.pick(used) };
    const req = `q${++this.counter}`;
    used.push(req);
    return { req };
  }

  private conn(client: string): string {
    return this.conns.get(client) ?? `n1/0/${client}`;
  }

  private connFor(client: string): ConnId {
    return this.prng.chance(0.05) ? `n9/9/${client}` : this.conn(client);
  }

  private newConn(client: string): string {
    return `n${this.prng.int(1, 3)}/${++this.counter}/${client}`;
  }
}

/** Everything in the state as plain data, independent of snapshot.ts (file contents joined, since
 *  readFile compacts chunks; wait queues as their live waiters). */
export function dump(state: LockState): unknown {
  return {
    now: state.now,
    appliedIndex: state.appliedIndex,
    lastToken: state.lastToken,
    seq: state.seq,
    sessions: [...state.sessions].map(([client, session]) => [client, {
      ...session, locks: [...session.locks], waits: [...session.waits], results: [...session.results],
    }]),
    locks: [...state.locks].map(([name, lock]) => [name, { ...lock, waiters: lock.waiters?.toArray() ?? [] }]),
    files: [...state.files].map(([name, file]) => [name, { data: file.chunks.join(''), sizeBytes: file.sizeBytes }]),
    deadlines: [...state.deadlines.entries()],
    fileBytes: state.fileBytes,
    limits: { ...state.limits },
  };
}
