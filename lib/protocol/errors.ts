// One error module with stable codes (PROTOCOL.md §5). Tests assert on `code`, never on the
// message text.

export const errorCodes = [
  'bad_request',
  'frame_too_large',
  'lock_held',
  'not_owner',
  'stale_token',
  'timeout',
  'client_mismatch',
  'unauthorized',
  'unavailable',
  'limit_exceeded',
  'shutting_down',
  'internal',
] as const;

export type ErrorCode = (typeof errorCodes)[number];

/** The error body as it travels on the wire. `owner` rides along with `lock_held`. */
export interface WireError {
  code: ErrorCode;
  message: string;
  owner?: string;
}

export class LatchkeyError extends Error {
  override name = 'LatchkeyError';
  readonly code: ErrorCode;
  /** With `lock_held`: who holds the lock. */
  readonly owner: string | undefined;

  constructor(code: ErrorCode, message: string, owner?: string) {
    super(message);
    this.code = code;
    this.owner = owner;
  }

  toWire(): WireError {
    const wire: WireError = { code: this.code, message: this.message };
    if (this.owner !== undefined) wire.owner = this.owner;
    return wire;
  }

  static fromWire(wire: WireError): LatchkeyError {
    const code = (errorCodes as readonly string[]).includes(wire.code) ? wire.code : 'internal';
    return new LatchkeyError(code, wire.message, wire.owner);
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (errorCodes as readonly string[]).includes(value);
}
