// The JSON schemas of every client request (PROTOCOL.md §3), in one place. The server, the
// LockClient and the scenario runner all validate with these, so they cannot drift apart.
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import { durationMsMax, nameLengthMax, requestIdLengthMax, sessionTtlMsMax, sessionTtlMsMin } from '../core/limits';

export const actions = [
  'hello', 'preempt', 'acquire', 'release', 'check', 'keepalive', 'append', 'read', 'status', 'bye',
] as const;
export type Action = (typeof actions)[number];

const id = { type: ['number', 'string'] };
const name = { type: 'string', pattern: '^[A-Za-z0-9._:/-]{1,256}$', maxLength: nameLengthMax };
const clientId = { type: 'string', minLength: 1, maxLength: 128 };
const requestId = { type: 'string', minLength: 1, maxLength: requestIdLengthMax };
const duration = { type: 'integer', minimum: 0, maximum: durationMsMax };
const token = { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER };

function request(action: Action, required: string[], fields: Record<string, object>): object {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['id', 'action', ...required],
    properties: { id, action: { const: action }, ...fields },
  };
}

/** One schema per action, keyed by action. */
export const requestSchemas: Record<Action, object> = {
  hello: request('hello', ['client_id'], {
    client_id: clientId,
    ttl_ms: { type: 'integer', minimum: sessionTtlMsMin, maximum: sessionTtlMsMax },
    grace_ms: duration,
    auth: { type: 'string', maxLength: 4096 },
    resume_token: { type: 'string', minLength: 1, maxLength: 128 },
  }),
  preempt: request('preempt', ['lock_name', 'client_id'], {
    lock_name: name, client_id: clientId, lease_ms: { ...duration, minimum: 1 }, request_id: requestId,
  }),
  acquire: request('acquire', ['lock_name', 'client_id'], {
    lock_name: name, client_id: clientId, timeout_ms: duration, lease_ms: { ...duration, minimum: 1 },
    request_id: requestId,
  }),
  release: request('release', ['lock_name', 'client_id'], {
    lock_name: name, client_id: clientId, token, request_id: requestId,
  }),
  check: request('check', ['lock_name'], { lock_name: name, stale_ok: { type: 'boolean' } }),
  keepalive: request('keepalive', ['client_id'], { client_id: clientId }),
  append: request('append', ['file', 'data', 'lock_name', 'token', 'client_id'], {
    file: name, data: { type: 'string' }, lock_name: name, token, client_id: clientId, request_id: requestId,
  }),
  read: request('read', ['file'], { file: name, stale_ok: { type: 'boolean' } }),
  status: request('status', [], {}),
  bye: request('bye', ['client_id'], { client_id: clientId, request_id: requestId }),
};

// ---- typed requests (wire field names, snake_case, as in PROTOCOL.md) ----

export type RequestId = number | string;
interface Base { id: RequestId }
export interface HelloRequest extends Base { action: 'hello'; client_id: string; ttl_ms?: number; grace_ms?: number; auth?: string; resume_token?: string }
export interface PreemptRequest extends Base { action: 'preempt'; lock_name: string; client_id: string; lease_ms?: number; request_id?: string }
export interface AcquireRequest extends Base { action: 'acquire'; lock_name: string; client_id: string; timeout_ms?: number; lease_ms?: number; request_id?: string }
export interface ReleaseRequest extends Base { action: 'release'; lock_name: string; client_id: string; token?: number; request_id?: string }
export interface CheckRequest extends Base { action: 'check'; lock_name: string; stale_ok?: boolean }
export interface KeepaliveRequest extends Base { action: 'keepalive'; client_id: string }
export interface AppendRequest extends Base { action: 'append'; file: string; data: string; lock_name: string; token: number; client_id: string; request_id?: string }
export interface ReadRequest extends Base { action: 'read'; file: string; stale_ok?: boolean }
export interface StatusRequest extends Base { action: 'status' }
export interface ByeRequest extends Base { action: 'bye'; client_id: string; request_id?: string }

export type Request =
  | HelloRequest | PreemptRequest | AcquireRequest | ReleaseRequest | CheckRequest
  | KeepaliveRequest | AppendRequest | ReadRequest | StatusRequest | ByeRequest;

export type ValidationResult =
  | { ok: true; request: Request }
  | { ok: false; id: RequestId | null; message: string };

const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true });
const validators = new Map<string, ValidateFunction>();
for (const action of actions) validators.set(action, ajv.compile(requestSchemas[action]));

/** PROTOCOL §3: a name with an empty, `.` or `..` segment between slashes never escapes the
 *  data directory. The character set is the schema's job; this is the part a regex says badly. */
export function nameSegmentProblem(value: string): string | null {
  for (const segment of value.split('/')) {
    if (segment === '') return 'has an empty segment';
    if (segment === '.' || segment === '..') return `has a '${segment}' segment`;
  }
  return null;
}

function describe(error: ErrorObject): string {
  const where = error.instancePath ? error.instancePath.slice(1).replace(/\//g, '.') : 'request';
  switch (error.keyword) {
    case 'additionalProperties':
      return `unknown field '${String((error.params as { additionalProperty: string }).additionalProperty)}'`;
    case 'required':
      return `missing field '${String((error.params as { missingProperty: string }).missingProperty)}'`;
    case 'pattern':
      return `${where} must match ${String((error.params as { pattern: string }).pattern)}`;
    default:
      return `${where} ${error.message ?? 'is invalid'}`;
  }
}

/** Validates one parsed message: its id, its action, its schema, and its names. */
export function validateRequest(message: unknown): ValidationResult {
  if (typeof message !== 'object' || message === null || Array.isArray(message)) {
    return { ok: false, id: null, message: 'a request must be a JSON object' };
  }
  const raw = message as Record<string, unknown>;
  const rawId = raw['id'];
  const idOk = (typeof rawId === 'number' && Number.isFinite(rawId)) || typeof rawId === 'string';
  const replyId = idOk ? (rawId as RequestId) : null;
  if (!idOk) return { ok: false, id: null, message: "missing or invalid field 'id' (a number or a string)" };
  const action = raw['action'];
  if (typeof action !== 'string') return { ok: false, id: replyId, message: "missing field 'action'" };
  const validate = validators.get(action);
  if (validate === undefined) {
    return { ok: false, id: replyId, message: `unknown action '${action.slice(0, 64)}' (one of ${actions.join(', ')})` };
  }
  if (!validate(message)) {
    const first = validate.errors?.[0];
    return { ok: false, id: replyId, message: first ? describe(first) : 'invalid request' };
  }
  for (const field of ['lock_name', 'file'] as const) {
    const value = raw[field];
    if (typeof value === 'string') {
      const problem = nameSegmentProblem(value);
      if (problem !== null) return { ok: false, id: replyId, message: `${field} ${problem}` };
    }
  }
  return { ok: true, request: message as Request };
}
