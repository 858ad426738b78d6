// Translation between gRPC and the contract, with no server in it: which RPC is which action,
// a decoded message -> the same validated request the other front doors build, an answer -> a
// reply message or a gRPC status. proto/latchkey.proto documents the choices.
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Answer } from '../protocol/answers';
import { isErrorCode, type ErrorCode, type WireError } from '../protocol/errors';
import { validateRequest, type AcquireRequest, type Action, type Request, type RequestId, type ValidationResult } from '../protocol/schemas';

/** The gRPC status of an error answer, by contract code (PROTOCOL §5; the table in the README
 *  and the .proto). Contract codes whose HTTP status is the same share a gRPC status. */
export const grpcStatusByCode: Readonly<Record<ErrorCode, grpc.status>> = {
  bad_request: grpc.status.INVALID_ARGUMENT,
  frame_too_large: grpc.status.RESOURCE_EXHAUSTED,
  unauthorized: grpc.status.UNAUTHENTICATED,
  not_owner: grpc.status.PERMISSION_DENIED,
  stale_token: grpc.status.PERMISSION_DENIED,
  lock_held: grpc.status.FAILED_PRECONDITION,
  client_mismatch: grpc.status.FAILED_PRECONDITION,
  timeout: grpc.status.DEADLINE_EXCEEDED,
  limit_exceeded: grpc.status.RESOURCE_EXHAUSTED,
  unavailable: grpc.status.UNAVAILABLE,
  shutting_down: grpc.status.UNAVAILABLE,
  internal: grpc.status.INTERNAL,
};

/** Trailing metadata keys of an error status. */
export const errorCodeKey = 'latchkey-error-code';
export const errorOwnerKey = 'latchkey-owner';
/** Request metadata that routes a unary call to its session stream (the stream's resume_token). */
export const sessionKey = 'latchkey-session';

/** The unary RPCs of service Locks and the action each one is. `Session` is the stream. */
export const unaryActions: Readonly<Record<string, Action>> = {
  Hello: 'hello',
  Preempt: 'preempt',
  Acquire: 'acquire',
  Release: 'release',
  Check: 'check',
  KeepAlive: 'keepalive',
  Append: 'append',
  Read: 'read',
  Status: 'status',
  Bye: 'bye',
};

/** How messages are decoded, for the server and for clients loading the same file: wire field
 *  names (snake_case), uint64 as numbers (tokens stay below 2^53; a larger one fails the
 *  schema), defaults for plain fields, and `optional` fields absent when unset. */
export const protoLoaderOptions: protoLoader.Options = {
  keepCase: true, longs: Number, enums: String, defaults: true, oneofs: false,
};

/**
 * proto/latchkey.proto, found from the compiled file (dist/lib/io -> three levels up) or from
 * the source (lib/io -> two levels up), so it is read in place and never copied into dist/.
 */
export function protoPath(): string {
  let dir = __dirname;
  for (let up = 0; up < 4; up++) {
    const candidate = path.join(dir, 'proto', 'latchkey.proto');
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  throw new Error(`proto/latchkey.proto not found above ${__dirname}`);
}

/** The service definition of latchkey.v1.Locks, loaded at run time (no protoc step). */
export function loadLocksService(): grpc.ServiceDefinition {
  const definition = protoLoader.loadSync(protoPath(), protoLoaderOptions);
  return definition['latchkey.v1.Locks'] as grpc.ServiceDefinition;
}

/** A decoded request message + its action -> the validated request the node takes, with the
 *  same `bad_request` messages as TCP and HTTP. Unset optional fields are simply absent. */
export function buildGrpcRequest(action: Action, message: unknown, id: RequestId): ValidationResult {
  const fields: Record<string, unknown> = {};
  if (typeof message === 'object' && message !== null) {
    for (const [name, value] of Object.entries(message)) if (value !== undefined && value !== null) fields[name] = value;
  }
  return validateRequest({ ...fields, id, action });
}

/** The reply message of a success answer: its fields less `ok` (null fields are left unset). */
export function replyOf(answer: Answer & { ok: true }): Record<string, unknown> {
  const { ok: _ok, ...fields } = answer;
  return fields;
}

/** The status a call ends with for an error answer: contract code in the message and the
 *  trailing metadata; the holder of a `lock_held` lock in `latchkey-owner`. */
export function errorStatus(error: WireError): grpc.StatusObject {
  const code: ErrorCode = isErrorCode(error.code) ? error.code : 'internal';
  const metadata = new grpc.Metadata();
  metadata.set(errorCodeKey, code);
  if (error.owner !== undefined) metadata.set(errorOwnerKey, error.owner);
  return { code: grpcStatusByCode[code], details: `${code}: ${error.message}`, metadata };
}

/** PROTOCOL §7 auth hook: `authorization: Bearer X` -> X (absent, or not a Bearer: undefined). */
export function bearerOf(metadata: grpc.Metadata): string | undefined {
  const values = metadata.get('authorization');
  if (values.length !== 1 || typeof values[0] !== 'string') return undefined;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(values[0]);
  return match === null ? undefined : match[1];
}

/** The one string value of a metadata key: undefined when absent, null when malformed (sent
 *  twice, or binary). */
export function singleValue(metadata: grpc.Metadata, key: string): string | undefined | null {
  const values = metadata.get(key);
  if (values.length === 0) return undefined;
  return values.length === 1 && typeof values[0] === 'string' ? values[0] : null;
}

/** Slack before the call's deadline: a tenth of the time left, at most this much. */
const deadlineSlackMsMax = 250;

/**
 * PROTOCOL §7 / issue 6: a deadline on Acquire bounds the wait like `timeout_ms` (the smaller
 * wins). The node gives up a little before the deadline so that its `timeout` answer, not the
 * client's own timer, ends the call. A deadline further off than the schema allows for
 * `timeout_ms` is left to cancellation alone.
 */
export function timeoutWithDeadline(timeoutMs: number | undefined, deadlineAtMs: number, nowMs: number, timeoutMsMax: number): number | undefined {
  if (!Number.isFinite(deadlineAtMs)) return timeoutMs;
  const leftMs = Math.max(0, deadlineAtMs - nowMs);
  const boundMs = Math.floor(leftMs - Math.min(deadlineSlackMsMax, leftMs / 10));
  if (boundMs > timeoutMsMax) return timeoutMs;
  return timeoutMs === undefined ? boundMs : Math.min(timeoutMs, boundMs);
}

/** The deadline of a call as ms since the epoch (Infinity when it has none). */
export function deadlineMs(deadline: grpc.Deadline): number {
  return deadline instanceof Date ? deadline.getTime() : deadline;
}

/** An Acquire without request_id: if its caller goes away, nobody can ever learn its grant
 *  (there is nothing to re-send), so the front door watches for the grant to give it back. */
export function isUnclaimableAcquire(request: Request): request is AcquireRequest {
  return request.action === 'acquire' && request.request_id === undefined;
}

/** The answer to an Acquire whose caller went away -> the release that gives back a grant
 *  nobody can learn of; null when there is nothing to give back. */
export function releaseOfAbandoned(request: Request, answer: Answer, id: RequestId): Request | null {
  if (!isUnclaimableAcquire(request) || !answer.ok) return null;
  const token = answer['token'];
  if (typeof token !== 'number') return null;
  return { id, action: 'release', client_id: request.client_id, lock_name: request.lock_name, token };
}
