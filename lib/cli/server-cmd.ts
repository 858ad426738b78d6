// `node bin/main server ...` and `node bin/main cluster ...` (PROTOCOL §1). Flags are checked in
// one place with one precise message per bad flag (STYLE §6.10).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createSecureContext } from 'node:tls';
import { parseArgs } from 'node:util';
import * as v8 from 'node:v8';
import {
  defaultConnectionLimits, defaultStateLimits, type ConnectionLimits, type StateLimits,
} from '../core/limits';
import type { FsyncMode } from '../io/disk-log';
import { createLogger, isLogLevel, type Logger } from '../io/logger';
import { LatchkeyNode, type NodeOptions } from '../io/node';

export class UsageError extends Error {
  override name = 'UsageError';
}

export interface HostPort { host: string; port: number }

export function parseHostPort(flag: string, value: string): HostPort {
  const at = value.lastIndexOf(':');
  const host = at > 0 ? value.slice(0, at).replace(/^\[(.*)\]$/, '$1') : '';
  const port = Number(value.slice(at + 1));
  if (at <= 0 || host === '' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`${flag} must be HOST:PORT (got '${value}')`);
  }
  return { host, port };
}

function parsePeers(value: string): Map<string, HostPort> {
  const peers = new Map<string, HostPort>();
  for (const item of value.split(',')) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`--peers must be ID=HOST:PORT,... (got '${item}')`);
    const id = item.slice(0, eq);
    if (peers.has(id)) throw new UsageError(`--peers names ${id} twice`);
    peers.set(id, parseHostPort(`--peers ${id}`, item.slice(eq + 1)));
  }
  return peers;
}

function positiveInt(flag: string, value: string | undefined, fallback: number, unit = 'milliseconds'): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${flag} must be a positive whole number of ${unit} (got '${value}')`);
  return n;
}

/** The bound flags (README "Limits"): flag -> the limit it sets and what it counts. */
const stateLimitFlags: ReadonlyArray<[string, keyof StateLimits, string]> = [
  ['max-sessions', 'sessions', 'sessions'],
  ['max-locks', 'locks', 'locks'],
  ['max-locks-per-session', 'locksPerSession', 'locks'],
  ['max-waiters-per-lock', 'waitersPerLock', 'waiters'],
  ['max-files', 'files', 'files'],
  ['max-file-bytes', 'fileBytes', 'bytes'],
  ['max-total-file-bytes', 'totalFileBytes', 'bytes'],
];
const connectionLimitFlags: ReadonlyArray<[string, keyof ConnectionLimits, string]> = [
  ['max-connections', 'connections', 'connections'],
  ['max-pending-per-connection', 'pendingPerConnection', 'requests'],
  ['max-output-bytes', 'outputBytesMax', 'bytes'],
  ['idle-timeout-ms', 'idleMs', 'milliseconds'],
];

function limitsFrom<T extends object>(values: FlagValues, flags: ReadonlyArray<[string, keyof T, string]>, defaults: Readonly<T>): T {
  const limits = { ...defaults } as T;
  for (const [flag, key, unit] of flags) {
    (limits as Record<keyof T, number>)[key] = positiveInt(`--${flag}`, values[flag] as string | undefined, defaults[key] as number, unit);
  }
  return limits;
}

/** A secret kept in a file (never on the command line, where `ps` shows it). Surrounding
 *  whitespace is not part of it, so an editor's trailing newline does no harm. */
function readSecretFile(flag: string, file: string): string {
  const secret = readFlagFile(flag, file).toString('utf8').trim();
  if (secret === '') throw new UsageError(`${flag}: ${file} is empty`);
  if (/\s/.test(secret)) throw new UsageError(`${flag}: ${file} must hold one token with no whitespace inside`);
  return secret;
}

const serverFlags: FlagSpec = {
  id: { type: 'string' },
  listen: { type: 'string' },
  peers: { type: 'string' },
  data: { type: 'string' },
  http: { type: 'string' },
  grpc: { type: 'string' },
  'heartbeat-ms': { type: 'string' },
  'election-timeout-ms': { type: 'string' },
  'session-ttl-ms': { type: 'string' },
  fsync: { type: 'string' },
  'read-path': { type: 'string' },
  'snapshot-every': { type: 'string' },
  gc: { type: 'string' },
  'log-level': { type: 'string' },
  'auth-token-file': { type: 'string' },
  'cluster-secret-file': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
  ...Object.fromEntries([...stateLimitFlags, ...connectionLimitFlags].map(([flag]) => [flag, { type: 'string' }])),
};

type FlagSpec = Record<string, { type: 'string' | 'boolean' }>;
type FlagValues = Record<string, string | boolean | undefined>;

function parse(argv: string[], options: FlagSpec): { values: FlagValues } {
  try {
    return { values: parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as FlagValues };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export type GcMode = 'lean' | 'v8';

/**
 * `--gc lean` (the default): V8's own defaults on a machine with much memory let the old
 * generation grow to 4x what is live before a full collection, and the young one from 2 to
 * 32 MB; at 100,000 held locks most of a node's resident memory was that room, not data
 * (issue 7). A lock server's live data is small and long-lived: the old generation grows by
 * half of what is live (Go's default, which etcd runs with, lets it grow by all of it), and the
 * young one keeps its initial size. `--gc v8` leaves V8's defaults. Both flags are read by V8
 * at each collection, so setting them before the node starts is enough.
 */
export function applyGcMode(mode: GcMode): void {
  if (mode !== 'lean') return;
  v8.setFlagsFromString('--heap-growing-percent=50');
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}

/** Timing, durability and logging flags shared by `server` and `cluster`. */
function commonOptions(values: FlagValues): Pick<NodeOptions, 'fsync' | 'heartbeatMs' | 'electionTimeoutMs' | 'sessionTtlMs' | 'readPath' | 'snapshotEveryEntries' | 'authToken' | 'limits' | 'connectionLimits'> & { logLevel: string; gc: GcMode } {
  const heartbeatMs = positiveInt('--heartbeat-ms', values['heartbeat-ms'] as string | undefined, 50);
  const electionTimeoutMs = positiveInt('--election-timeout-ms', values['election-timeout-ms'] as string | undefined, 300);
  const sessionTtlMs = positiveInt('--session-ttl-ms', values['session-ttl-ms'] as string | undefined, 10000);
  if (electionTimeoutMs <= heartbeatMs) throw new UsageError('--election-timeout-ms must be greater than --heartbeat-ms');
  if (sessionTtlMs < 100) throw new UsageError('--session-ttl-ms must be at least 100');
  const fsync = (values['fsync'] as string | undefined) ?? 'batch';
  if (fsync !== 'always' && fsync !== 'batch' && fsync !== 'never') throw new UsageError(`--fsync must be always, batch or never (got '${fsync}')`);
  const logLevel = (values['log-level'] as string | undefined) ?? 'info';
  if (!isLogLevel(logLevel)) throw new UsageError(`--log-level must be debug, info, warn, error or silent (got '${logLevel}')`);
  const readPath = (values['read-path'] as string | undefined) ?? 'index';
  if (readPath !== 'index' && readPath !== 'log') throw new UsageError(`--read-path must be index or log (got '${readPath}')`);
  const snapshotEveryEntries = positiveInt('--snapshot-every', values['snapshot-every'] as string | undefined, 20000);
  const gc = (values['gc'] as string | undefined) ?? 'lean';
  if (gc !== 'lean' && gc !== 'v8') throw new UsageError(`--gc must be lean or v8 (got '${gc}')`);
  const tokenFile = values['auth-token-file'] as string | undefined;
  return {
    fsync: fsync as FsyncMode, heartbeatMs, electionTimeoutMs, sessionTtlMs, readPath, snapshotEveryEntries, logLevel, gc,
    limits: limitsFrom(values, stateLimitFlags, defaultStateLimits),
    connectionLimits: limitsFrom(values, connectionLimitFlags, defaultConnectionLimits),
    ...(tokenFile === undefined ? {} : { authToken: readSecretFile('--auth-token-file', tokenFile) }),
  };
}

/** `--tls-*` and `--cluster-secret-file`, shared by `server` and `cluster`. The files are read
 *  now, so a missing or bad one stops the start-up with its flag named. */
function securityOptions(values: FlagValues): Pick<NodeOptions, 'tls' | 'clusterSecret'> {
  const tlsFlags = ['tls-cert', 'tls-key', 'tls-ca'] as const;
  const given = tlsFlags.filter((flag) => values[flag] !== undefined);
  if (given.length > 0 && given.length < tlsFlags.length) {
    const missing = tlsFlags.filter((flag) => values[flag] === undefined).map((flag) => `--${flag}`);
    throw new UsageError(`--tls-cert, --tls-key and --tls-ca go together: ${missing.join(' and ')} missing`);
  }
  const options: Pick<NodeOptions, 'tls' | 'clusterSecret'> = {};
  if (given.length > 0) {
    const [cert, key, ca] = tlsFlags.map((flag) => readFlagFile(`--${flag}`, values[flag] as string));
    try {
      // Fails now, not at the first connection, on a malformed PEM or a key that is not the cert's.
      createSecureContext({ cert, key, ca });
    } catch (err) {
      throw new UsageError(`--tls-cert/--tls-key/--tls-ca: ${(err as Error).message}`);
    }
    options.tls = { cert, key, ca };
  }
  if (values['cluster-secret-file'] !== undefined) {
    const file = values['cluster-secret-file'] as string;
    options.clusterSecret = Buffer.from(readSecretFile('--cluster-secret-file', file), 'utf8');
  }
  return options;
}

function readFlagFile(flag: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new UsageError(`${flag}: cannot read ${file}: ${(err as Error).message}`);
  }
}

export function parseServerArgs(argv: string[]): NodeOptions & { gc: GcMode } {
  const { values } = parse(argv, serverFlags);
  for (const flag of ['id', 'listen', 'peers', 'data'] as const) {
    if (values[flag] === undefined) throw new UsageError(`--${flag} is required`);
  }
  const id = values['id'] as string;
  const peers = parsePeers(values['peers'] as string);
  if (!peers.has(id)) throw new UsageError(`--peers must list this node (${id})`);
  const common = commonOptions(values);
  return {
    id,
    listen: parseHostPort('--listen', values['listen'] as string),
    peers,
    dataDir: path.resolve(values['data'] as string),
    ...(values['http'] === undefined ? {} : { http: parseHostPort('--http', values['http'] as string) }),
    ...(values['grpc'] === undefined ? {} : { grpc: parseHostPort('--grpc', values['grpc'] as string) }),
    ...common,
    ...securityOptions(values),
    logger: createLogger(common.logLevel as never, { node: id }),
  };
}

/** Runs a node until SIGTERM or SIGINT, then stops it cleanly. */
export async function runUntilSignal(nodes: LatchkeyNode[], logger: Logger): Promise<number> {
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      logger.info('signal', { signal });
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      resolve();
    };
    const onInt = (): void => stop('SIGINT');
    const onTerm = (): void => stop('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
  });
  await Promise.all(nodes.map((node) => node.stop()));
  return 0;
}

export async function runServer(argv: string[]): Promise<number> {
  const options = parseServerArgs(argv);
  applyGcMode(options.gc);
  const node = new LatchkeyNode(options);
  await node.start();
  return runUntilSignal([node], options.logger);
}

export async function runCluster(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    ...serverFlags, nodes: { type: 'string' }, 'base-port': { type: 'string' }, host: { type: 'string' },
    'http-base-port': { type: 'string' }, 'grpc-base-port': { type: 'string' },
  });
  const nodes = positiveInt('--nodes', values['nodes'] as string | undefined, 3);
  const basePort = positiveInt('--base-port', values['base-port'] as string | undefined, 7001);
  const host = (values['host'] as string | undefined) ?? '127.0.0.1';
  const dataDir = path.resolve((values['data'] as string | undefined) ?? path.join(os.tmpdir(), `latchkey-cluster-${basePort}`));
  if (nodes > 7) throw new UsageError('--nodes is at most 7');
  const common = commonOptions(values);
  applyGcMode(common.gc);
  const security = securityOptions(values);
  const logger = createLogger(common.logLevel as never, {});
  const httpBase = values['http-base-port'] === undefined ? null : positiveInt('--http-base-port', values['http-base-port'] as string, 8001);
  const grpcBase = values['grpc-base-port'] === undefined ? null : positiveInt('--grpc-base-port', values['grpc-base-port'] as string, 9001);
  if (values['grpc'] !== undefined) throw new UsageError('--grpc names one node\'s port; cluster takes --grpc-base-port');
  // N nodes in this one process, each on its own port and data dir, talking over real sockets.
  const peers = new Map<string, HostPort>();
  for (let i = 1; i <= nodes; i++) peers.set(`n${i}`, { host, port: basePort + i - 1 });
  const started: LatchkeyNode[] = [];
  for (const [id, address] of peers) {
    const index = Number(id.slice(1)) - 1;
    const node = new LatchkeyNode({
      id,
      listen: address,
      peers,
      dataDir: path.join(dataDir, id),
      ...(httpBase === null ? {} : { http: { host, port: httpBase + index } }),
      ...(grpcBase === null ? {} : { grpc: { host, port: grpcBase + index } }),
      ...common,
      ...security,
      logger: logger.child({ node: id }),
    });
    await node.start();
    started.push(node);
    const { client, http, grpc } = node.addresses;
    const extra = [http ? `http ${http.host}:${http.port}` : '', grpc ? `grpc ${grpc.host}:${grpc.port}` : ''].filter((x) => x !== '');
    process.stdout.write(`${id} listening on ${client?.host}:${client?.port}${extra.length > 0 ? ` (${extra.join(', ')})` : ''}, data ${path.join(dataDir, id)}\n`);
  }
  const servers = [...peers.values()].map((a) => `${a.host}:${a.port}`).join(',');
  const tlsCa = values['tls-ca'] === undefined ? '' : ` --tls-ca ${values['tls-ca'] as string}`;
  process.stdout.write(`try: node bin/main client --server ${servers}${tlsCa}\n`);
  return runUntilSignal(started, logger);
}
