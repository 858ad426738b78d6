// Starts a latchkey node as a real process (`node bin/main server ...`) and learns its ports
// from the `node_started` log line, so scenarios (and tests) can use port 0.
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

export interface NodeProcessOptions {
  id: string;
  dataDir: string;
  /** Extra server flags, e.g. ['--session-ttl-ms', '2000']. */
  args?: string[];
  listenPort?: number;
  startTimeoutMs?: number;
}

export interface NodeProcess {
  id: string;
  port: number;
  pid: number;
  proc: ChildProcess;
  stderrTail(): string;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<void>;
}

const mainScript = path.resolve(__dirname, '../../../bin/main');

export function startNodeProcess(options: NodeProcessOptions): Promise<NodeProcess> {
  const port = options.listenPort ?? 0;
  const address = `127.0.0.1:${port}`;
  const proc = spawn(process.execPath, [
    mainScript, 'server', '--id', options.id, '--listen', address, '--peers', `${options.id}=${address}`,
    '--data', options.dataDir, ...(options.args ?? []),
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let tail = '';
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`node ${options.id} did not start in time:\n${tail}`));
    }, options.startTimeoutMs ?? 10000);
    let started = false;
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (chunk: string) => {
      tail = (tail + chunk).slice(-8192);
      if (started) return;
      for (const line of tail.split('\n')) {
        if (!line.includes('"node_started"')) continue;
        const parsed = JSON.parse(line) as { listen: { port: number } };
        started = true;
        clearTimeout(timer);
        const signal = (sig: NodeJS.Signals) => async (): Promise<void> => {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill(sig);
          await exited;
        };
        resolve({
          id: options.id, port: parsed.listen.port, pid: proc.pid ?? 0, proc,
          stderrTail: () => tail, stop: signal('SIGTERM'), kill: signal('SIGKILL'),
        });
        return;
      }
    });
    proc.once('exit', (code) => {
      if (!started) {
        clearTimeout(timer);
        reject(new Error(`node ${options.id} exited with ${code} before starting:\n${tail}`));
      }
    });
  });
}
