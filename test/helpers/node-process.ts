// Spawns a real latchkey node (`node bin/main server ...`) for end-to-end tests, with port 0 and
// a temporary data directory, and reads the real ports from its `node_started` log line.
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

/** The repository root, seen from the compiled dist/test/helpers. */
export const repoRoot = path.resolve(__dirname, '../../..');

export interface StartNodeOptions {
  /** Data directory; a fresh temporary one when absent. */
  dataDir?: string;
  /** Also serve HTTP on a free port. */
  http?: boolean;
  /** Extra server flags, e.g. ['--session-ttl-ms', '500']. */
  args?: string[];
  /** Node id (default n1). */
  id?: string;
  /** How long to wait for `node_started` and, then, for leadership (default 10 s). */
  startTimeoutMs?: number;
  /** After `node_started`, wait until `status` says role leader (default true: a single node
   *  elects itself, and tests want a node that serves). */
  waitLeader?: boolean;
}

export interface NodeProcess {
  port: number;
  httpPort?: number;
  dataDir: string;
  proc: ChildProcess;
  /** Everything the node wrote on stderr so far. */
  stderr(): string;
  /** Parsed JSON log lines so far (lines that are not JSON are skipped). */
  logs(): Array<Record<string, unknown>>;
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, then waits for the exit (SIGKILL after `timeoutMs`, default 5 s). */
  stop(timeoutMs?: number): Promise<void>;
  /** Resolves with the exit code and signal once the process exited. */
  waitExit(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly exited: boolean;
}

const running = new Set<NodeProcess>();
/** Temporary data directories this helper made (not the ones a test passed in). */
const createdDirs = new Set<string>();

/** Kills (SIGKILL) every node started by this helper that is still running. For after hooks. */
export async function killAllNodeProcesses(): Promise<void> {
  await Promise.all([...running].map(async (node) => {
    node.kill('SIGKILL');
    await node.waitExit();
  }));
}

/** Kills every node still running, then removes the data directories this helper created. */
export async function cleanupNodeProcesses(): Promise<void> {
  await killAllNodeProcesses();
  for (const dir of [...createdDirs]) {
    createdDirs.delete(dir);
    await fs.rm(dir, { recursive: true, force: true });
  }
}

export async function makeTempDir(prefix = 'latchkey-e2e-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

function tail(text: string, lines = 30): string {
  return text.split('\n').slice(-lines).join('\n');
}

export async function startNodeProcess(options: StartNodeOptions = {}): Promise<NodeProcess> {
  let dataDir = options.dataDir;
  if (dataDir === undefined) {
    dataDir = await makeTempDir();
    createdDirs.add(dataDir);
  }
  const id = options.id ?? 'n1';
  const argv = [
    path.join(repoRoot, 'bin', 'main'), 'server',
    '--id', id, '--listen', '127.0.0.1:0', '--peers', `${id}=127.0.0.1:0`, '--data', dataDir,
    ...(options.http === true ? ['--http', '127.0.0.1:0'] : []),
    ...(options.args ?? []),
  ];
  const proc = spawn(process.execPath, argv, { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderrText = '';
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitPromise = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
  });
  proc.stderr?.setEncoding('utf8');

  const started = new Promise<{ port: number; httpPort?: number }>((resolve, reject) => {
    let scanned = 0;
    const timeoutMs = options.startTimeoutMs ?? 10000;
    const timer = setTimeout(() => {
      reject(new Error(`node did not log node_started within ${timeoutMs} ms; stderr tail:\n${tail(stderrText)}`));
    }, timeoutMs);
    proc.stderr?.on('data', (chunk: string) => {
      stderrText += chunk;
      for (;;) {
        const nl = stderrText.indexOf('\n', scanned);
        if (nl < 0) break;
        const line = stderrText.slice(scanned, nl);
        scanned = nl + 1;
        let parsed: Record<string, unknown>;
        try {
          parsed = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        if (parsed['event'] === 'node_started') {
          clearTimeout(timer);
          const listen = parsed['listen'] as { port: number };
          const http = parsed['http'] as { port: number } | undefined;
          resolve({ port: listen.port, ...(http === undefined ? {} : { httpPort: http.port }) });
        }
      }
    });
    void exitPromise.then((info) => {
      clearTimeout(timer);
      reject(new Error(`node exited (code ${info.code}, signal ${info.signal}) before node_started; stderr tail:\n${tail(stderrText)}`));
    });
  });

  const node: NodeProcess = {
    port: 0,
    dataDir,
    proc,
    stderr: () => stderrText,
    logs: () => stderrText.split('\n').flatMap((line) => {
      try {
        const parsed = JSON.parse(line) as unknown;
        return typeof parsed === 'object' && parsed !== null ? [parsed as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    }),
    kill: (signal: NodeJS.Signals = 'SIGKILL') => {
      if (exitInfo === undefined) proc.kill(signal);
    },
    stop: async (timeoutMs = 5000) => {
      if (exitInfo !== undefined) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      await exitPromise;
      clearTimeout(timer);
    },
    waitExit: () => exitPromise,
    get exited() {
      return exitInfo !== undefined;
    },
  };
  running.add(node);
  void exitPromise.then(() => running.delete(node));
  try {
    const ports = await started;
    node.port = ports.port;
    if (ports.httpPort !== undefined) node.httpPort = ports.httpPort;
  } catch (err) {
    node.kill('SIGKILL');
    await exitPromise;
    throw err;
  }
  if (options.waitLeader !== false) {
    try {
      await waitForLeader(node.port, options.startTimeoutMs ?? 10000);
    } catch (err) {
      node.kill('SIGKILL');
      await exitPromise;
      throw new Error(`${(err as Error).message}; stderr tail:\n${tail(stderrText)}`);
    }
  }
  return node;
}

/** Polls `status` over one raw connection until the node reports itself leader. */
async function waitForLeader(port: number, timeoutMs: number): Promise<void> {
  const socket = net.connect({ port, host: '127.0.0.1' });
  socket.setEncoding('utf8');
  socket.on('error', () => undefined);
  const until = Date.now() + timeoutMs;
  let last = '';
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    let buffer = '';
    let seq = 0;
    let waiting: ((line: string) => void) | undefined;
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      let nl = buffer.indexOf('\n');
      while (nl >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        waiting?.(line);
        nl = buffer.indexOf('\n');
      }
    });
    while (Date.now() < until) {
      const id = `leader-probe-${++seq}`;
      const line = await new Promise<string>((resolve) => {
        const timer = setTimeout(() => resolve(''), 500);
        waiting = (l) => {
          let parsed: { id?: unknown } = {};
          try {
            parsed = JSON.parse(l) as { id?: unknown };
          } catch {
            return;
          }
          if (parsed.id !== id) return;
          clearTimeout(timer);
          resolve(l);
        };
        socket.write(`${JSON.stringify({ id, action: 'status' })}\n`);
      });
      last = line;
      try {
        const status = JSON.parse(line) as { ok?: boolean; role?: string };
        if (status.ok === true && status.role === 'leader') return;
      } catch {
        // no answer in time: ask again
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`node did not become leader within ${timeoutMs} ms (last status ${last || 'none'})`);
  } finally {
    socket.destroy();
  }
}

/** For a mocha `describe`: starts one node (with `options`) before its tests, stops it and cleans
 *  up after them, and returns a getter for it (the node exists only once `before` ran). */
export function nodeForSuite(options: StartNodeOptions = {}): () => NodeProcess {
  let node: NodeProcess | undefined;
  before(async () => {
    node = await startNodeProcess(options);
  });
  after(async () => {
    await node?.stop();
    await cleanupNodeProcesses();
  });
  return () => {
    if (node === undefined) throw new Error('the suite node has not started (call it inside a test or hook)');
    return node;
  };
}
