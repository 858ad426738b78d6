// Every bound in one place (TigerStyle: "put a limit on everything"), with the relations
// between them asserted at load time.
import { assert } from './assert';

/** PROTOCOL §2: a line longer than this is `frame_too_large` and the connection closes. */
export const frameBytesMax = 65536;
/** PROTOCOL §3: lock and file names. */
export const nameLengthMax = 256;
/** PROTOCOL §4: request_id is 1..64 characters. */
export const requestIdLengthMax = 64;
/** PROTOCOL §4: the answers to at least each session's latest 1024 requests are remembered. */
export const requestResultsPerSessionMax = 1024;
/** Session ttl bounds: below the floor a client cannot keep up; above the ceiling a dead
 *  client would hold its locks for over a day. */
export const sessionTtlMsMin = 100;
export const sessionTtlMsMax = 24 * 60 * 60 * 1000;
/** grace_ms and lease_ms and timeout_ms share the ttl ceiling. */
export const durationMsMax = sessionTtlMsMax;
/** Largest single append: it has to fit in one frame anyway. */
export const appendBytesMax = frameBytesMax;
/** Commands written in one group commit; bounds the size of one write. */
export const commandsPerFlushMax = 4096;

/**
 * Bounds the replicated lock table enforces (issue 5). Every replica must refuse the same
 * requests, so these travel in the log: a new leader commits its configured values as a
 * `limits` entry and from then on every replica applies them. A request past one of them is
 * `limit_exceeded`, and nothing else about the state changes.
 */
export interface StateLimits {
  /** Live sessions in the cluster. */
  sessions: number;
  /** Locks held or waited for, in the cluster. */
  locks: number;
  /** Locks one session holds or waits for. */
  locksPerSession: number;
  /** Queued acquires on one lock. */
  waitersPerLock: number;
  /** Guarded files. */
  files: number;
  /** Bytes of one guarded file. */
  fileBytes: number;
  /** Bytes of all guarded files together. */
  totalFileBytes: number;
}

/** Defaults sized for the 100,000-lock benchmark with room to spare, while keeping the whole
 *  state (held in memory and in every snapshot) to a few hundred MiB at worst. */
export const defaultStateLimits: Readonly<StateLimits> = Object.freeze({
  sessions: 100_000,
  locks: 1_000_000,
  locksPerSession: 100_000,
  waitersPerLock: 10_000,
  files: 100_000,
  fileBytes: 16 * 1024 * 1024,
  totalFileBytes: 256 * 1024 * 1024,
});

/** Bounds each node enforces on its own connections (not replicated). */
export interface ConnectionLimits {
  /** Client connections open at once; one more is answered limit_exceeded and closed. */
  connections: number;
  /** Requests on one connection not answered yet; more are answered limit_exceeded. */
  pendingPerConnection: number;
  /** Answer bytes queued for a connection that does not read them; past this the node stops
   *  reading its requests until the client catches up (backpressure). */
  outputBytesMax: number;
  /** A connection without a session and with no request for this long is closed. */
  idleMs: number;
}

export const defaultConnectionLimits: Readonly<ConnectionLimits> = Object.freeze({
  connections: 10_000,
  pendingPerConnection: 4096,
  outputBytesMax: 1024 * 1024,
  idleMs: 30_000,
});

assert(defaultStateLimits.fileBytes <= defaultStateLimits.totalFileBytes, 'one file fits in the total');
assert(requestResultsPerSessionMax >= 1024, 'PROTOCOL promises 1024 remembered results');
assert(sessionTtlMsMin < sessionTtlMsMax, 'ttl bounds are ordered');
assert(appendBytesMax <= frameBytesMax, 'an append must fit in one frame');
