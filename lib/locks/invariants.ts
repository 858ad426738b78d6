// checkInvariants(state): the rules that hold between any two applies (TIGER_STYLE "assert
// invariants"; STYLE §6.6). Tests and the simulator run it after every apply; it throws an
// AssertionError naming the first rule that does not hold. It only reads the state, and it stays
// pure like the rest of lib/locks (no node:*): byte lengths come from utf8.ts, not Buffer.
import { AssertionError } from '../core/assert';
import { requestResultsPerSessionMax } from '../core/limits';
import type { Deadline } from './deadline-heap';
import type { GuardedFile, LockEntry, LockState, Session } from './state';
import { utf8ByteLength } from './utf8';

function check(condition: boolean, message: string): void {
  if (!condition) throw new AssertionError(`invariant: ${message}`);
}

export function checkInvariants(state: LockState): void {
  const deadlines = deadlineKeys(state.deadlines.entries());
  check(state.lastToken >= 0, `lastToken ${state.lastToken} is negative`);
  for (const [name, lock] of state.locks) checkLock(state, name, lock, deadlines);
  for (const [client, session] of state.sessions) checkSession(state, client, session, deadlines);
  let fileBytes = 0;
  for (const [name, file] of state.files) {
    checkFile(name, file);
    fileBytes += file.sizeBytes;
  }
  check(state.fileBytes === fileBytes, `fileBytes ${state.fileBytes} but the files hold ${fileBytes}`);
}

/** One string per heap entry that identifies the instance it belongs to, so that "this session,
 *  grant or waiter has a live deadline" is a set lookup. */
function deadlineKeys(entries: readonly Deadline[]): Set<string> {
  const keys = new Set<string>();
  for (const entry of entries) keys.add(deadlineKey(entry.kind, entry.key, entry.lock, entry.serial, entry.at));
  return keys;
}

function deadlineKey(kind: Deadline['kind'], key: string, lock: string, serial: number, at: number): string {
  return `${kind}\u0000${key}\u0000${lock}\u0000${serial}\u0000${at}`;
}

function checkLock(state: LockState, name: string, lock: LockEntry, deadlines: Set<string>): void {
  check(lock.name === name, `lock ${name} is stored under the name ${lock.name}`);
  // A free lock is forgotten (it never has waiters while free), so every stored lock is held.
  check(lock.owner !== null, `lock ${name} is free but still stored`);
  const owner = lock.owner as string;
  const session = state.sessions.get(owner);
  check(session !== undefined, `lock ${name} is owned by ${owner}, who has no session`);
  check((session as Session).locks.has(name), `lock ${name} is owned by ${owner}, whose session does not list it`);
  check(lock.token >= 1, `lock ${name} has token ${lock.token}`);
  check(lock.token <= state.lastToken, `lock ${name} has token ${lock.token} above lastToken ${state.lastToken}`);
  if (lock.leaseUntil !== null) {
    check(lock.leaseUntil >= lock.grantedAt, `lock ${name} has leaseUntil ${lock.leaseUntil} before grantedAt ${lock.grantedAt}`);
    // Without its heap entry a lease would never fire and the lock would be held forever.
    check(deadlines.has(deadlineKey('lease', name, name, lock.token, lock.leaseUntil)), `lock ${name} has a lease with no deadline`);
  }
  check(lock.waiters === null || lock.waiters.length > 0, `lock ${name} keeps an empty queue`);
  check((lock.waiters?.length ?? 0) === (lock.waiters?.toArray().length ?? 0), `lock ${name} counts its waiters wrong`);
  for (const waiter of lock.waiters?.toArray() ?? []) {
    check(waiter.client !== owner, `lock ${name}: its owner ${owner} also waits for it`);
    const waiting = state.sessions.get(waiter.client);
    check(waiting !== undefined, `lock ${name}: waiter ${waiter.client} has no session`);
    check((waiting as Session).waits.has(name), `lock ${name}: waiter ${waiter.client}'s session does not list the wait`);
    if (waiter.deadline !== null) {
      check(deadlines.has(deadlineKey('waiter', waiter.client, name, waiter.seq, waiter.deadline)), `lock ${name}: waiter ${waiter.client} has a timeout with no deadline`);
    }
  }
}

function checkSession(state: LockState, client: string, session: Session, deadlines: Set<string>): void {
  check(session.client === client, `session ${client} is stored under the client ${session.client}`);
  for (const name of session.locks) {
    const lock = state.locks.get(name);
    check(lock !== undefined && lock.owner === client, `session ${client} lists ${name}, which it does not own`);
  }
  for (const name of session.waits) {
    const lock = state.locks.get(name);
    check(lock !== undefined && lock.waiters?.get(client) !== undefined, `session ${client} lists a wait on ${name}, which has no such waiter`);
  }
  // A session with no live deadline would never expire, and its locks would be held forever.
  check(session.queuedAt !== null, `session ${client} has no live deadline`);
  const at = session.queuedAt as number;
  check(deadlines.has(deadlineKey('session', client, '', session.serial, at)), `session ${client} has queuedAt ${at} but no such heap entry`);
  check(session.results.size <= requestResultsPerSessionMax, `session ${client} remembers ${session.results.size} results`);
  check(session.connected === (session.disconnectedAt === null), `session ${client}: connected and disconnectedAt disagree`);
}

function checkFile(name: string, file: GuardedFile): void {
  const bytes = utf8ByteLength(file.chunks.join(''));
  check(file.sizeBytes === bytes, `file ${name} has sizeBytes ${file.sizeBytes} but holds ${bytes} bytes`);
}
