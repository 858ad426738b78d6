// Peer authentication with a shared cluster secret (`--cluster-secret-file`): a mutual
// challenge-response on every peer connection, so that someone who merely reaches a node's port
// cannot pose as a member, vote, or inject log entries.
//
//   dialer   -> {"type":"peer_hello","from":A,"to":B,"nonce":Na}
//   acceptor -> {"type":"peer_challenge","nonce":Nb,"proof":HMAC(secret, accept, A, B, Na, Nb)}
//   dialer   -> {"type":"peer_proof","proof":HMAC(secret, dial, A, B, Na, Nb)}
//
// The acceptor proves itself first over the dialer's fresh nonce, so a dialer never sends its
// messages to an impostor; the dialer then proves itself over the acceptor's fresh nonce, so a
// recorded handshake cannot be replayed. Both proofs cover both nonces and both ids, and the two
// directions use different labels, so neither proof can be reflected back as the other.
// The secret authenticates the handshake only: without TLS, someone on the path could still
// read or hijack the stream afterwards (use --tls-* for that).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export type ProofRole = 'accept' | 'dial';

const labels: Record<ProofRole, string> = {
  accept: 'latchkey peer auth v1: acceptor',
  dial: 'latchkey peer auth v1: dialer',
};
const nonceBytes = 32;
const proofBytes = 32; // SHA-256

export interface Handshake {
  /** The dialer's node id. */
  from: string;
  /** The acceptor's node id. */
  to: string;
  dialerNonce: string;
  acceptorNonce: string;
}

/** A fresh random nonce, hex. */
export function newNonce(): string {
  return randomBytes(nonceBytes).toString('hex');
}

/** A nonce as the other side must send it: exactly `nonceBytes` bytes in lowercase hex. */
export function isNonce(value: unknown): value is string {
  return typeof value === 'string' && value.length === nonceBytes * 2 && /^[0-9a-f]+$/.test(value);
}

export function proof(secret: Buffer, role: ProofRole, handshake: Handshake): string {
  // JSON of an array is an unambiguous encoding of the fields (no field can run into the next).
  const fields = [labels[role], handshake.from, handshake.to, handshake.dialerNonce, handshake.acceptorNonce];
  return createHmac('sha256', secret).update(JSON.stringify(fields), 'utf8').digest('hex');
}

/** Whether `given` is the right proof, compared in constant time. */
export function proofMatches(secret: Buffer, role: ProofRole, handshake: Handshake, given: unknown): boolean {
  if (typeof given !== 'string' || given.length !== proofBytes * 2 || !/^[0-9a-f]+$/.test(given)) return false;
  const expected = Buffer.from(proof(secret, role, handshake), 'hex');
  return timingSafeEqual(expected, Buffer.from(given, 'hex'));
}
