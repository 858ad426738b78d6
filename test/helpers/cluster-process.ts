// An N-node latchkey cluster of real processes (`node bin/main server ...`) on loopback, for
// end-to-end tests: free ports picked up front (bind port 0, close, pass the number; the whole
// start is retried on EADDRINUSE), one temporary data directory per node, and helpers to find
// the leader, kill -9, stop, restart, pause (SIGSTOP) and resume (SIGCONT) single nodes.
//
// Every cluster started here is remembered, so `stopAllClusters()` in an after hook kills every
// process and removes every directory even when a test failed half way.
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

/** The repository root, seen from the compiled dist/test/helpers. */
const repoRoot = path.resolve(__dirname, '../../..');
const mainScript = path.join(repoRoot, 'bin', 'main');

export interface NodeStatus {
  node: string;
  role: 'leader' | 'follower' | 'candidate';
  term: number;
  leader: string | null;
  commit_index: number;
  members: string[];
}

export interface ClusterOptions {
  /** Number of nodes (default 3); ids are n1..nN. */
  size?: number;
  /** Extra flags for every node, e.g. ['--session-ttl-ms', '20000']. */
  args?: string[];
  heartbeatMs?: number;
  electionTimeoutMs?: number;
  /** How long one node may take to log `node_started` (default 30 s: on a loaded machine just
   *  loading the code can take several seconds). */
  startTimeoutMs?: number;
  /** Wait for a leader agreed by a majority before returning (default true). */
  waitLeader?: boolean;
  /** How many times the whole start is tried when a port is taken (default 5; a node that did
   *  not start in time is retried once). */
  attempts?: number;
}

interface Incarnation {
  proc: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  paused: boolean;
}

export class ClusterNode {
  /** Every line the node's processes wrote on stderr, across restarts. */
  private stderrText = '';
  private current: Incarnation | undefined;
  /** How many processes were started for this node. */
  starts = 0;

  constructor(readonly id: string, readonly port: number, readonly dataDir: string) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.current?.proc.pid;
  }

  /** The process is running (possibly paused). */
  get running(): boolean {
    return this.current !== undefined && this.current.exitInfo === undefined;
  }

  get paused(): boolean {
    return this.running && (this.current as Incarnation).paused;
  }

  stderr(): string {
    return this.stderrText;
  }

  /** Parsed JSON log lines of every incarnation so far. */
  logs(): Array<Record<string, unknown>> {
    return this.stderrText.split('\n').flatMap((line) => {
      if (!line.startsWith('{')) return [];
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }

  tail(lines = 40): string {
    return this.stderrText.split('\n').slice(-lines).join('\n');
  }

  /** Spawns the process and resolves once it logged `node_started`. */
  async spawn(peers: string, args: string[], startTimeoutMs: number): Promise<void> {
    if (this.running) throw new Error(`node ${this.id} is already running`);
    this.starts++;
    this.stderrText += `---- start #${this.starts} of ${this.id} ----\n`;
    const proc = spawn(process.execPath, [
      mainScript, 'server', '--id', this.id, '--listen', this.address, '--peers', peers, '--data', this.dataDir, ...args,
    ], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
    const incarnation: Incarnation = {
      proc,
      exitInfo: undefined,
      paused: false,
      exited: new Promise((resolve) => {
        proc.once('exit', (code, signal) => {
          incarnation.exitInfo = { code, signal };
          resolve(incarnation.exitInfo);
        });
      }),
    };
    this.current = incarnation;
    proc.stderr?.setEncoding('utf8');
    let own = '';
    await new Promise<void>((resolve, reject) => {
      let done = false;
      const finish = (err?: Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err === undefined) resolve();
        else reject(err);
      };
      const timer = setTimeout(() => {
        const err = new Error(`node ${this.id} did not log node_started within ${startTimeoutMs} ms; stderr:\n${own.slice(-4000)}`);
        (err as Error & { startTimedOut?: boolean }).startTimedOut = true;
        finish(err);
      }, startTimeoutMs);
      proc.stderr?.on('data', (chunk: string) => {
        this.stderrText += chunk;
        own += chunk;
        if (!done && own.includes('"event":"node_started"')) finish();
      });
      void incarnation.exited.then((info) => {
        const inUse = /EADDRINUSE/.test(own);
        const err = new Error(`node ${this.id} exited (code ${info.code}, signal ${info.signal}) before node_started; stderr:\n${own.slice(-4000)}`);
        (err as Error & { addressInUse?: boolean }).addressInUse = inUse;
        finish(err);
      });
    }).catch(async (err: unknown) => {
      await this.signalAndWait('SIGKILL');
      throw err;
    });
  }

  /** Sends `signal` (SIGCONT first if paused, so it can act on it) and waits for the exit. */
  async signalAndWait(signal: NodeJS.Signals, killAfterMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
    const inc = this.current;
    if (inc === undefined) return undefined;
    if (inc.exitInfo !== undefined) return inc.exitInfo;
    inc.proc.kill(signal);
    if (inc.paused && signal !== 'SIGKILL') {
      inc.proc.kill('SIGCONT');
      inc.paused = false;
    }
    let timer: NodeJS.Timeout | undefined;
    if (killAfterMs !== undefined) timer = setTimeout(() => inc.proc.kill('SIGKILL'), killAfterMs);
    const info = await inc.exited;
    if (timer !== undefined) clearTimeout(timer);
    return info;
  }

  pause(): void {
    const inc = this.current;
    if (inc === undefined || inc.exitInfo !== undefined) throw new Error(`node ${this.id} is not running`);
    inc.proc.kill('SIGSTOP');
    inc.paused = true;
  }

  resume(): void {
    const inc = this.current;
    if (inc === undefined || inc.exitInfo !== undefined) throw new Error(`node ${this.id} is not running`);
    inc.proc.kill('SIGCONT');
    inc.paused = false;
  }
}

const live = new Set<ProcessCluster>();

/** Kills every process of every cluster started here and removes their directories. */
export async function stopAllClusters(): Promise<void> {
  await Promise.all([...live].map((cluster) => cluster.stopAll()));
}

/** Ports that were free a moment ago (all bound at once, so they are distinct). */
export async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      servers.push(server);
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

export class ProcessCluster {
  readonly nodes = new Map<string, ClusterNode>();
  private readonly args: string[];
  private readonly startTimeoutMs: number;
  private readonly root: string;
  private stopped = false;

  private constructor(root: string, ids: string[], ports: number[], args: string[], startTimeoutMs: number) {
    this.root = root;
    this.args = args;
    this.startTimeoutMs = startTimeoutMs;
    ids.forEach((id, i) => this.nodes.set(id, new ClusterNode(id, ports[i] as number, path.join(root, id))));
  }

  /** Starts the cluster; with `waitLeader` (default) resolves once a leader is agreed. */
  static async start(options: ClusterOptions = {}): Promise<ProcessCluster> {
    const size = options.size ?? 3;
    const ids = Array.from({ length: size }, (_, i) => `n${i + 1}`);
    const args = [
      '--heartbeat-ms', String(options.heartbeatMs ?? 50),
      '--election-timeout-ms', String(options.electionTimeoutMs ?? 300),
      ...(options.args ?? []),
    ];
    const attempts = options.attempts ?? 5;
    let timeouts = 0;
    let lastError: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const root = await fs.mkdtemp(path.join(os.tmpdir(), 'latchkey-cluster-'));
      const cluster = new ProcessCluster(root, ids, await freePorts(size), args, options.startTimeoutMs ?? 30000);
      live.add(cluster);
      try {
        await Promise.all([...cluster.nodes.values()].map((node) => cluster.spawnNode(node)));
        if (options.waitLeader !== false) await cluster.leader();
        return cluster;
      } catch (err) {
        lastError = err;
        await cluster.stopAll();
        const e = err as { addressInUse?: boolean; startTimedOut?: boolean };
        if (e.startTimedOut === true && timeouts++ === 0) continue;
        if (e.addressInUse !== true) throw err;
      }
    }
    throw lastError;
  }

  get ids(): string[] {
    return [...this.nodes.keys()];
  }

  get peersFlag(): string {
    return [...this.nodes.values()].map((n) => `${n.id}=${n.address}`).join(',');
  }

  node(id: string): ClusterNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  port(id: string): number {
    return this.node(id).port;
  }

  /** HOST:PORT of the given nodes (default: all), in that order, for LockClient. */
  servers(ids: string[] = this.ids): string[] {
    return ids.map((id) => this.node(id).address);
  }

  /** Ids of the nodes other than `ids`. */
  others(...ids: string[]): string[] {
    return this.ids.filter((id) => !ids.includes(id));
  }

  private async spawnNode(node: ClusterNode): Promise<void> {
    await node.spawn(this.peersFlag, this.args, this.startTimeoutMs);
  }

  /** One `status` over a fresh connection; null if the node does not answer in time. */
  async status(id: string, timeoutMs = 500): Promise<NodeStatus | null> {
    const node = this.node(id);
    if (!node.running) return null;
    return statusAt(node.port, timeoutMs);
  }

  /** Status of every node (null for those that do not answer). */
  async statuses(timeoutMs = 500): Promise<Map<string, NodeStatus | null>> {
    const list = await Promise.all(this.ids.map(async (id) => [id, await this.status(id, timeoutMs)] as const));
    return new Map(list);
  }

  /**
   * Polls `status` on every node until one reports itself leader and a majority of the cluster
   * (it included) reports that same leader in that same term. `exclude` leaves nodes out of the
   * candidates (e.g. a paused old leader that still believes it leads).
   */
  async leader(options: { timeoutMs?: number; exclude?: string[] } = {}): Promise<{ id: string; term: number; status: NodeStatus }> {
    const timeoutMs = options.timeoutMs ?? 10000;
    const exclude = options.exclude ?? [];
    const need = Math.floor(this.nodes.size / 2) + 1;
    const until = Date.now() + timeoutMs;
    let last = new Map<string, NodeStatus | null>();
    for (;;) {
      last = await this.statuses(300);
      for (const [id, status] of last) {
        if (status === null || status.role !== 'leader' || exclude.includes(id)) continue;
        let agree = 0;
        for (const other of last.values()) {
          if (other !== null && other.leader === id && other.term === status.term) agree++;
        }
        if (agree >= need) return { id, term: status.term, status };
      }
      if (Date.now() > until) {
        const seen = [...last].map(([id, s]) => `${id}: ${s === null ? 'no answer' : `${s.role} term ${s.term} leader ${s.leader}`}`).join('; ');
        throw new Error(`no leader agreed by ${need} nodes within ${timeoutMs} ms (${seen})`);
      }
      await sleep(50);
    }
  }

  /** SIGKILL and wait for the exit. */
  async kill(id: string): Promise<void> {
    await this.node(id).signalAndWait('SIGKILL');
  }

  /** SIGTERM and wait for the exit (SIGKILL after `timeoutMs`, default 5 s). */
  async stop(id: string, timeoutMs = 5000): Promise<void> {
    await this.node(id).signalAndWait('SIGTERM', timeoutMs);
  }

  /** Starts the node again with the same id, port and data directory (after kill or stop).
   *  Retries a few times if the port is still taken. */
  async restart(id: string): Promise<void> {
    const node = this.node(id);
    if (node.running) throw new Error(`node ${id} is still running`);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.spawnNode(node);
        return;
      } catch (err) {
        if (!(err as { addressInUse?: boolean }).addressInUse || attempt >= 10) throw err;
        await sleep(200);
      }
    }
  }

  /** SIGSTOP. */
  pause(id: string): void {
    this.node(id).pause();
  }

  /** SIGCONT. */
  resume(id: string): void {
    this.node(id).resume();
  }

  /** Kills every process (resuming none: SIGKILL works on a stopped process) and removes the
   *  data directories. Safe to call twice. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((node) => node.signalAndWait('SIGKILL')));
    if (!this.stopped) {
      this.stopped = true;
      await fs.rm(this.root, { recursive: true, force: true });
    }
    live.delete(this);
  }

  /** The last lines of every node's stderr, for failure messages. */
  logTails(lines = 20): string {
    return [...this.nodes.values()].map((n) => `== ${n.id} ==\n${n.tail(lines)}`).join('\n');
  }
}

/** One `status` request on a fresh connection to `port`; null on no answer within timeoutMs. */
export function statusAt(port: number, timeoutMs = 500): Promise<NodeStatus | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let buffer = '';
    let done = false;
    const finish = (value: NodeStatus | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('error', () => finish(null));
    socket.on('close', () => finish(null));
    socket.on('connect', () => socket.write(`${JSON.stringify({ id: 'status-probe', action: 'status' })}\n`));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const nl = buffer.indexOf('\n');
      if (nl < 0) return;
      try {
        const answer = JSON.parse(buffer.slice(0, nl)) as NodeStatus & { ok?: boolean };
        finish(answer.ok === true ? answer : null);
      } catch {
        finish(null);
      }
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
