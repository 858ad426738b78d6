// How a simulated run fails, by kind, with the exit codes of TigerBeetle's VOPR
// (src/testing/cluster.zig): a crash is code that threw (an assertion in the replica, Raft or the
// state machine, or a disk write the real shell would refuse); liveness is a cluster that did not
// converge or a request that was never answered; correctness is a broken invariant or a client
// that saw something the contract forbids.

export type FailureKind = 'crash' | 'liveness' | 'correctness';

export const exitCodes: Record<FailureKind, number> = { crash: 127, liveness: 128, correctness: 129 };

export class SimFailure extends Error {
  override name = 'SimFailure';
  constructor(readonly kind: FailureKind, message: string) {
    super(message);
  }
}

export function correctness(message: string): never {
  throw new SimFailure('correctness', message);
}

export function liveness(message: string): never {
  throw new SimFailure('liveness', message);
}

/** A stream of randomness derived from the run's seed: each concern (network, faults, one node,
 *  one client) gets its own, so that adding a draw in one does not change the others. */
export function deriveSeed(seed: number, stream: number): number {
  // splitmix32-style mixing of (seed, stream).
  let z = (seed ^ Math.imul(stream + 1, 0x9e3779b9)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

const numberView = new Float64Array(1);
const bitsView = new Uint32Array(numberView.buffer);

/** A running 64-bit (two-lane FNV-1a) hash of the event trace: equal hashes, same run. */
export class TraceHash {
  private a = 0x811c9dc5;
  private b = 0x01000193 ^ 0x5bd1e995;

  add(text: string): void {
    let a = this.a;
    let b = this.b;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995) ^ (b >>> 15);
    }
    this.a = a >>> 0;
    this.b = b >>> 0;
  }

  /** Mixes a number by its exact bits (no string conversion: float printing is slow). */
  addNumber(value: number): void {
    numberView[0] = value;
    let a = this.a;
    let b = this.b;
    for (let i = 0; i < 2; i++) {
      const word = bitsView[i] as number;
      a = Math.imul(a ^ word, 0x01000193);
      b = Math.imul(b ^ word, 0x5bd1e995) ^ (b >>> 15);
    }
    this.a = a >>> 0;
    this.b = b >>> 0;
  }

  hex(): string {
    return this.a.toString(16).padStart(8, '0') + this.b.toString(16).padStart(8, '0');
  }
}
