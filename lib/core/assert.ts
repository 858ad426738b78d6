// Assertions are part of the design (TigerStyle): they are always on, and a failed one means
// the code is wrong, not the input. Bad input is answered with a LatchkeyError instead.

export class AssertionError extends Error {
  override name = 'AssertionError';
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}

/** Exhaustiveness check for `switch` over a discriminated union. */
export function unreachable(value: never): never {
  throw new AssertionError(`unreachable: ${JSON.stringify(value)}`);
}
