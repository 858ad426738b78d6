// The shape of an answer as the contract defines it (PROTOCOL §3), minus the `id` that pairs it
// with a request on one connection. The state machine produces these directly, so the answer a
// retried request gets from the de-duplication cache is byte-for-byte the first one.
import type { ErrorCode, WireError } from './errors';

export type OkAnswer = { ok: true } & Record<string, unknown>;
export type ErrorAnswer = { ok: false; error: WireError };
export type Answer = OkAnswer | ErrorAnswer;

export function okAnswer(fields: Record<string, unknown>): OkAnswer {
  return { ok: true, ...fields };
}

export function errorAnswer(code: ErrorCode, message: string, owner?: string): ErrorAnswer {
  const error: WireError = { code, message };
  if (owner !== undefined) error.owner = owner;
  return { ok: false, error };
}
