// A scenario is data: a JSON file in scenarios/, validated by this schema, with an error that
// names the file, the path inside it and the problem.
import Ajv from 'ajv';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

/**
 * What a simulated client does, over and over (`iterations` times):
 * - acquire-append-release: blocking acquire, append a unique line with the token, hold, release.
 * - preempt-check-release: try-lock; the holder checks it is the owner, holds, releases.
 * - hold-then-crash: acquire, append, then drop the connection without bye (a crash): the
 *   session ends and the lock goes to the next waiter.
 * - hold-then-silent: acquire, then send nothing more (no keepalive): the session expires after
 *   its ttl, the lock goes to the next waiter, and the client is told `lost`.
 * - lease-overrun: acquire with lease_ms, hold past the lease, then append with the old token:
 *   the guarded file must refuse it (stale_token / not_owner).
 */
export const clientLoops = [
  'acquire-append-release', 'preempt-check-release', 'hold-then-crash', 'hold-then-silent', 'lease-overrun',
] as const;
export type ClientLoop = (typeof clientLoops)[number];

export interface ClientGroup {
  count: number;
  loop: ClientLoop;
  /** The lock they compete for (and, for appends, the guarded file of the same name). */
  lock: string;
  iterations: number;
  /** How long a client holds the lock, ms: [min, max]. */
  holdMs: [number, number];
  /** Pause between iterations, ms: [min, max]. */
  thinkMs: [number, number];
  /** Which node the client talks to: the leader, a follower (clients cycle through the
   *  followers in id order, so the first one is on the follower a fault's 'follower' target
   *  picks), any (round robin), or a node by id. */
  node?: 'leader' | 'follower' | 'any' | string;
  /** With failover (default) the client knows every node and moves on when its node fails. */
  failover?: boolean;
  /** Start this long after the run begins. */
  startMs?: number;
  timeoutMs?: number;
  leaseMs?: number;
  ttlMs?: number;
  /** LockClient's budget for one request (default 5000): lower it to see `unavailable` surface
   *  instead of being retried away. */
  requestTimeoutMs?: number;
}

export const faultActions = ['kill', 'restart', 'pause', 'resume', 'isolate', 'heal', 'kill-all', 'restart-all'] as const;
export type FaultAction = (typeof faultActions)[number];

export interface Fault {
  atMs: number;
  action: FaultAction;
  /** 'leader', 'follower', a node id, or 'last' (the node the previous fault acted on). */
  target?: string;
}

export interface Expectations {
  /** At least this many leader changes were seen. */
  leaderChangesMin?: number;
  /** Error codes that must have been seen at least so often (e.g. a minority's unavailable). */
  codesMin?: Record<string, number>;
  /** Lost events (session or lease expiry) that must have been seen at least. */
  lostMin?: number;
  /** Grants that must have happened at least (liveness). */
  grantsMin?: number;
}

export interface ScenarioSpec {
  name: string;
  description: string;
  cluster: { nodes: 3 | 5; sessionTtlMs?: number; heartbeatMs?: number; electionTimeoutMs?: number; snapshotEvery?: number };
  clients: ClientGroup[];
  faults: Fault[];
  expect: Expectations;
  /** Seconds the whole scenario may take before it is declared failed. */
  timeLimitS: number;
}

const range = { type: 'array', items: { type: 'integer', minimum: 0, maximum: 60000 }, minItems: 2, maxItems: 2 };
const positive = { type: 'integer', minimum: 1 };
const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'description', 'cluster', 'clients', 'faults', 'expect', 'timeLimitS'],
  properties: {
    $schema: { type: 'string' },
    name: { type: 'string', pattern: '^[a-z0-9-]{1,64}$' },
    description: { type: 'string' },
    cluster: {
      type: 'object', additionalProperties: false, required: ['nodes'],
      properties: {
        nodes: { enum: [3, 5] },
        sessionTtlMs: { type: 'integer', minimum: 100 },
        heartbeatMs: positive,
        electionTimeoutMs: positive,
        snapshotEvery: positive,
      },
    },
    clients: {
      type: 'array', minItems: 1,
      items: {
        type: 'object', additionalProperties: false, required: ['count', 'loop', 'lock', 'iterations', 'holdMs', 'thinkMs'],
        properties: {
          count: { type: 'integer', minimum: 1, maximum: 64 },
          loop: { enum: clientLoops },
          lock: { type: 'string', pattern: '^[A-Za-z0-9._:/-]{1,256}$' },
          iterations: { type: 'integer', minimum: 1, maximum: 10000 },
          holdMs: range,
          thinkMs: range,
          node: { type: 'string', pattern: '^(leader|follower|any|n[1-5])$' },
          failover: { type: 'boolean' },
          startMs: { type: 'integer', minimum: 0 },
          timeoutMs: { type: 'integer', minimum: 0 },
          leaseMs: positive,
          ttlMs: { type: 'integer', minimum: 100 },
          requestTimeoutMs: { type: 'integer', minimum: 100 },
        },
      },
    },
    faults: {
      type: 'array',
      items: {
        type: 'object', additionalProperties: false, required: ['atMs', 'action'],
        properties: {
          atMs: { type: 'integer', minimum: 0 },
          action: { enum: faultActions },
          target: { type: 'string', pattern: '^(leader|follower|last|n[1-5])$' },
        },
      },
    },
    expect: {
      type: 'object', additionalProperties: false,
      properties: {
        leaderChangesMin: { type: 'integer', minimum: 0 },
        codesMin: { type: 'object', additionalProperties: { type: 'integer', minimum: 0 } },
        lostMin: { type: 'integer', minimum: 0 },
        grantsMin: { type: 'integer', minimum: 0 },
      },
    },
    timeLimitS: { type: 'number', exclusiveMinimum: 0, maximum: 600 },
  },
};

const validate = new Ajv({ allErrors: false, strict: true }).compile(schema);

export class ScenarioError extends Error {
  override name = 'ScenarioError';
}

export function parseScenario(file: string, text: string): ScenarioSpec {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ScenarioError(`${file}: not valid JSON: ${(err as Error).message}`);
  }
  if (!validate(value)) {
    const e = validate.errors?.[0];
    const where = e?.instancePath === '' ? '(top level)' : e?.instancePath;
    const params = e?.params as Record<string, unknown> | undefined;
    const extra = e?.keyword === 'additionalProperties' ? ` '${String(params?.['additionalProperty'])}'`
      : e?.keyword === 'enum' ? ` (one of ${JSON.stringify(params?.['allowedValues'])})` : '';
    throw new ScenarioError(`${file}: ${where}: ${e?.message ?? 'invalid'}${extra}`);
  }
  const spec = value as unknown as ScenarioSpec;
  for (const [i, group] of spec.clients.entries()) {
    if (group.holdMs[0] > group.holdMs[1]) throw new ScenarioError(`${file}: /clients/${i}/holdMs: min is above max`);
    if (group.thinkMs[0] > group.thinkMs[1]) throw new ScenarioError(`${file}: /clients/${i}/thinkMs: min is above max`);
    if (group.loop === 'lease-overrun' && group.leaseMs === undefined) {
      throw new ScenarioError(`${file}: /clients/${i}: the lease-overrun loop needs leaseMs`);
    }
  }
  return spec;
}

export const scenariosDir = path.resolve(__dirname, '../../../scenarios');

export async function listScenarios(dir: string = scenariosDir): Promise<string[]> {
  const names = await fs.readdir(dir);
  return names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5)).sort();
}

/** NAME (a file in scenarios/) or a path to a file. */
export async function loadScenario(nameOrFile: string, dir: string = scenariosDir): Promise<ScenarioSpec> {
  const file = nameOrFile.endsWith('.json') || nameOrFile.includes('/') ? path.resolve(nameOrFile) : path.join(dir, `${nameOrFile}.json`);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    const known = await listScenarios(dir);
    throw new ScenarioError(`unknown scenario '${nameOrFile}'; known: ${known.join(', ')}`);
  }
  return parseScenario(file, text);
}
