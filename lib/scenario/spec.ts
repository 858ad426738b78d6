// A scenario is data: a JSON file in scenarios/, validated by this schema, with an error that
// names the file, the path inside it and the problem.
import Ajv from 'ajv';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

export const clientLoops = ['acquire-append-release', 'preempt-check-release'] as const;
export type ClientLoop = (typeof clientLoops)[number];

export interface ClientGroup {
  /** How many clients run this loop. */
  count: number;
  loop: ClientLoop;
  /** The lock they compete for (and, for appends, the guarded file of the same name). */
  lock: string;
  iterations: number;
  /** How long a client holds the lock, ms: [min, max]. */
  holdMs: [number, number];
  /** Pause between iterations, ms: [min, max]. */
  thinkMs: [number, number];
  /** acquire timeout_ms. */
  timeoutMs?: number;
}

export interface ScenarioSpec {
  name: string;
  description: string;
  cluster: { nodes: number; sessionTtlMs?: number };
  clients: ClientGroup[];
  /** Seconds the whole scenario may take before it is declared failed. */
  timeLimitS: number;
}

const range = { type: 'array', items: { type: 'integer', minimum: 0, maximum: 60000 }, minItems: 2, maxItems: 2 };
const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'description', 'cluster', 'clients', 'timeLimitS'],
  properties: {
    $schema: { type: 'string' },
    name: { type: 'string', pattern: '^[a-z0-9-]{1,64}$' },
    description: { type: 'string' },
    cluster: {
      type: 'object', additionalProperties: false, required: ['nodes'],
      properties: { nodes: { type: 'integer', minimum: 1, maximum: 7 }, sessionTtlMs: { type: 'integer', minimum: 100 } },
    },
    clients: {
      type: 'array', minItems: 1,
      items: {
        type: 'object', additionalProperties: false, required: ['count', 'loop', 'lock', 'iterations', 'holdMs', 'thinkMs'],
        properties: {
          count: { type: 'integer', minimum: 1, maximum: 256 },
          loop: { enum: clientLoops },
          lock: { type: 'string', pattern: '^[A-Za-z0-9._:/-]{1,256}$' },
          iterations: { type: 'integer', minimum: 1, maximum: 100000 },
          holdMs: range,
          thinkMs: range,
          timeoutMs: { type: 'integer', minimum: 0 },
        },
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
    const extra = e?.keyword === 'additionalProperties' ? ` '${String((e.params as { additionalProperty: string }).additionalProperty)}'` : '';
    throw new ScenarioError(`${file}: ${where}: ${e?.message ?? 'invalid'}${extra}`);
  }
  return value as unknown as ScenarioSpec;
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
