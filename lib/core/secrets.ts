// Comparing secrets (auth tokens, resume tokens, the cluster secret) without leaking how much
// of a guess was right through the time the comparison takes. Both sides are hashed first so
// the comparison is over equal lengths and a wrong length is not revealed either.
import { createHash, timingSafeEqual } from 'node:crypto';

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** True when `presented` equals `expected`, in time independent of where they differ. */
export function sameSecret(presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected));
}
