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

assert(requestResultsPerSessionMax >= 1024, 'PROTOCOL promises 1024 remembered results');
assert(sessionTtlMsMin < sessionTtlMsMax, 'ttl bounds are ordered');
assert(appendBytesMax <= frameBytesMax, 'an append must fit in one frame');
