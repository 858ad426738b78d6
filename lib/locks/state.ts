// The replicated state: sessions, locks, guarded files and deadlines. Every replica that
// applies the same log holds the same state (DESIGN §1). Only state-machine.ts changes it.
import { defaultStateLimits, type StateLimits } from '../core/limits';
import type { Answer } from '../protocol/answers';
import type { ConnId } from './commands';
import { DeadlineHeap } from './deadline-heap';
import { WaitQueue, type Waiter } from './wait-queue';

/** A remembered answer for one request_id; `answer` is null while an acquire still waits. */
export interface CachedAnswer {
  fingerprint: string;
  answer: Answer | null;
}

export interface Session {
  client: string;
  /** Distinguishes this session from an earlier one of the same client id. */
  serial: number;
  conn: ConnId;
  /** False after its connection closed and it lives on for `graceMs`. */
  connected: boolean;
  ttlMs: number;
  graceMs: number;
  /** The secret a new connection must present to take this session over. */
  resume: string;
  lastContactAt: number;
  disconnectedAt: number | null;
  /** The `at` of this session's live deadline-heap entry (the earliest; later ones are stale). */
  queuedAt: number | null;
  /** Locks it holds and locks it waits for. */
  locks: Set<string>;
  waits: Set<string>;
  /** request_id -> first answer, oldest first, at most requestResultsPerSessionMax. */
  results: Map<string, CachedAnswer>;
}

export interface LockEntry {
  name: string;
  /** Null while nobody holds it (it is then kept only if the lock has waiters, which it never
   *  has while free; a free lock is forgotten). */
  owner: string | null;
  token: number;
  grantedAt: number;
  /** Cluster time at which the grant is taken away by lease_ms, or null. */
  leaseUntil: number | null;
  /** Null while nobody waits: most held locks never have a waiter (issue 7: memory per lock). */
  waiters: WaitQueue | null;
}

export interface GuardedFile {
  chunks: string[];
  sizeBytes: number;
}

export interface LockState {
  /** Cluster time of the last applied command. */
  now: number;
  /** Index of the last applied log entry. */
  appliedIndex: number;
  /** The last fencing token handed out; every grant takes the next one (see state-machine.ts). */
  lastToken: number;
  /** Counter for deadline and waiter ordering; deterministic. */
  seq: number;
  sessions: Map<string, Session>;
  locks: Map<string, LockEntry>;
  files: Map<string, GuardedFile>;
  /** Bytes of all files together (bounded by limits.totalFileBytes). */
  fileBytes: number;
  deadlines: DeadlineHeap;
  /** The bounds in force (see StateLimits). */
  limits: StateLimits;
}

export function createLockState(): LockState {
  return {
    now: 0,
    appliedIndex: 0,
    lastToken: 0,
    seq: 0,
    sessions: new Map(),
    locks: new Map(),
    files: new Map(),
    fileBytes: 0,
    deadlines: new DeadlineHeap(),
    limits: { ...defaultStateLimits },
  };
}

// ---- reads: answered from the state without going through the log ----

export function checkLock(state: LockState, name: string): Answer {
  const lock = state.locks.get(name);
  if (lock === undefined || lock.owner === null) {
    return { ok: true, lock_name: name, owner: null, token: null, waiters: 0 };
  }
  return { ok: true, lock_name: name, owner: lock.owner, token: lock.token, waiters: lock.waiters?.length ?? 0 };
}

/** Queues `waiter` on the lock; the queue is made for its first waiter. */
export function pushWaiter(lock: LockEntry, waiter: Waiter): void {
  (lock.waiters ??= new WaitQueue()).push(waiter);
}

/** Takes `client` out of the lock's queue; the queue goes once it is empty. */
export function removeWaiter(lock: LockEntry, client: string): Waiter | undefined {
  const waiter = lock.waiters?.remove(client);
  if (lock.waiters?.length === 0) lock.waiters = null;
  return waiter;
}

/** Takes the first waiter out of the lock's queue; the queue goes once it is empty. */
export function shiftWaiter(lock: LockEntry): Waiter | undefined {
  const waiter = lock.waiters?.shift();
  if (lock.waiters?.length === 0) lock.waiters = null;
  return waiter;
}

export function readFile(state: LockState, name: string): Answer {
  const file = state.files.get(name);
  if (file === undefined) return { ok: true, file: name, data: '' };
  if (file.chunks.length > 1) file.chunks = [file.chunks.join('')];
  return { ok: true, file: name, data: file.chunks[0] ?? '' };
}

/** The earliest pending deadline, for the node to know when to propose a tick. */
export function nextDeadlineAt(state: LockState): number | null {
  return state.deadlines.peek()?.at ?? null;
}
