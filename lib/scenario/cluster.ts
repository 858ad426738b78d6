// A cluster of real latchkey node processes for fault scenarios and tests, with one in-process
// LinkProxy per directed peer link (n1 dials n2 through the proxy n1->n2; PROTOCOL §1: the
// addresses in --peers are only where a node dials the others). Client ports are direct.
//
// Faults: kill -9 / restart (same id, client port, data dir and proxies), SIGTERM (a clean
// stop), SIGSTOP / SIGCONT, partitions (both directions of every link between groups), one-way
// cuts, link delays. Every action is recorded in `events` with a time from the clock passed in,
// for a report's timeline.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { LinkProxy } from './link-proxy';
import type { StatusInfo } from '../io/front-door';

export interface ClusterOptions {
  nodes: 3 | 5;
  /** Each node's data lives in dataRoot/<id>. */
  dataRoot: string;
  /** Extra server flags for every node, e.g. ['--election-timeout-ms', '300']. */
  args?: string[];
  /** Route every peer link through a LinkProxy (needed for partition, cutLink, delayLinks). */
  proxied: boolean;
  /** Milliseconds for `events[].atMs` (default: since startCluster was called). */
  clock?: () => number;
  /** How long a node may take to log `node_started` (default 10 s; past it, the start fails
   *  with an error marked `startTimedOut: true`). */
  startTimeoutMs?: number;
  /** How many times the whole start is tried when a client port was taken meanwhile (default 5). */
  attempts?: number;
}

export interface ClusterEvent {
  atMs: number;
  kind: string;
  detail: string;
}

/** What a node's `status` answers (PROTOCOL §3). */
export type NodeStatus = StatusInfo;

export interface LeaderInfo {
  id: string;
  term: number;
  port: number;
  /** The status of every node that answered in the round that agreed. */
  statuses: NodeStatus[];
}

export interface LeaderWaitOptions {
  /** Only a leader of at least this term counts (e.g. the old term + 1 after a partition). */
  minTerm?: number;
  /** Only these nodes are asked (default: every running, unpaused node). */
  among?: string[];
  /** A leader with one of these ids does not count. */
  not?: string[];
}

export type NodeState = 'running' | 'paused' | 'stopped';

export interface ClusterNode {
  readonly id: string;
  /** Client port (direct, also where the proxies towards this node forward to). */
  readonly port: number;
  /** The current (or last) process id. */
  pid: number;
  state: NodeState;
  readonly dataDir: string;
  /** How many processes were started for this node. */
  starts: number;
  /** How the last process ended (`code 0`, `signal SIGKILL`), or null if none has ended yet. */
  lastExit: string | null;
}

type Message = Record<string, unknown>;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const mainScript = path.resolve(__dirname, '../../../bin/main');
const stderrKeepBytes = 2 * 1024 * 1024;

// ---- a tiny NDJSON connection ----

/** One client connection speaking raw NDJSON: `request` sends with a fresh id and waits. */
export class NdjsonConnection {
  private buffer = '';
  private nextId = 1;
  private readonly waiting = new Map<unknown, { resolve: (m: Message) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  /** Pushed events and answers nobody waited for. */
  readonly unsolicited: Message[] = [];
  private closedError: Error | null = null;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closedError = new Error('connection closed');
      for (const [id, w] of this.waiting) {
        clearTimeout(w.timer);
        w.reject(new Error(`connection closed before the answer to ${String(id)}`));
      }
      this.waiting.clear();
    });
  }

  static connect(port: number, host = '127.0.0.1', timeoutMs = 2000): Promise<NdjsonConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to ${host}:${port} timed out`));
      }, timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new NdjsonConnection(socket));
      });
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    for (;;) {
      const nl = this.buffer.indexOf('\n');
      if (nl < 0) return;
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      if (line.length === 0) continue;
      let message: Message;
      try {
        message = JSON.parse(line) as Message;
      } catch {
        message = { unparsable: line };
      }
      const w = 'id' in message ? this.waiting.get(message['id']) : undefined;
      if (w === undefined) {
        if (this.unsolicited.length < 1000) this.unsolicited.push(message);
        continue;
      }
      this.waiting.delete(message['id']);
      clearTimeout(w.timer);
      w.resolve(message);
    }
  }

  /** Sends `body` with a fresh numeric id; resolves with the answer, rejects on timeout/close. */
  request(body: Message, timeoutMs = 5000): Promise<Message> {
    if (this.closedError !== null) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`no answer to ${JSON.stringify(body)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
      this.socket.write(`${JSON.stringify({ ...body, id })}\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** One request on a fresh connection, closed afterwards. */
export async function requestOnce(port: number, body: Message, timeoutMs = 5000): Promise<Message> {
  const conn = await NdjsonConnection.connect(port, '127.0.0.1', Math.min(timeoutMs, 2000));
  try {
    return await conn.request(body, timeoutMs);
  } finally {
    conn.close();
  }
}

// ---- ports ----

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

function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

// ---- one node ----

class NodeHandle implements ClusterNode {
  pid = 0;
  state: NodeState = 'stopped';
  starts = 0;
  lastExit: string | null = null;
  private proc: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private stderrText = '';

  constructor(readonly id: string, readonly port: number, readonly dataDir: string, private readonly onExit: (node: NodeHandle, how: string, expected: boolean) => void) {}

  /** Whether the current exit was asked for (kill/stop), so an unexpected crash is visible. */
  private expectExit = false;

  stderr(): string {
    return this.stderrText;
  }

  /** Spawns and resolves once `node_started` was logged (with the port it reported). */
  async spawn(peers: string, args: string[], startTimeoutMs: number): Promise<void> {
    if (this.state !== 'stopped') throw new Error(`node ${this.id} is already running`);
    await fs.mkdir(this.dataDir, { recursive: true });
    this.starts++;
    this.appendStderr(`---- start #${this.starts} of ${this.id} ----\n`);
    const proc = spawn(process.execPath, [
      mainScript, 'server', '--id', this.id, '--listen', `127.0.0.1:${this.port}`, '--peers', peers, '--data', this.dataDir, ...args,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc = proc;
    this.pid = proc.pid ?? 0;
    this.state = 'running';
    this.expectExit = false;
    this.exited = new Promise<void>((resolve) => {
      proc.once('exit', (code, signal) => {
        if (this.proc === proc) {
          this.state = 'stopped';
          this.lastExit = signal !== null ? `signal ${signal}` : `code ${code}`;
          this.onExit(this, this.lastExit, this.expectExit);
        }
        resolve();
      });
    });
    proc.on('error', () => undefined);
    let own = '';
    proc.stderr?.setEncoding('utf8');
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
        const err = new Error(`node ${this.id} did not log node_started within ${startTimeoutMs} ms:\n${own.slice(-4000)}`);
        (err as Error & { startTimedOut?: boolean }).startTimedOut = true;
        finish(err);
      }, startTimeoutMs);
      proc.stderr?.on('data', (chunk: string) => {
        this.appendStderr(chunk);
        if (done) return;
        own += chunk;
        if (own.includes('"event":"node_started"')) finish();
      });
      void this.exited.then(() => {
        const err = new Error(`node ${this.id} exited before node_started:\n${own.slice(-4000)}`);
        (err as Error & { addressInUse?: boolean }).addressInUse = /EADDRINUSE/.test(own);
        finish(err);
      });
    }).catch(async (err: unknown) => {
      await this.kill();
      throw err;
    });
  }

  private appendStderr(text: string): void {
    this.stderrText += text;
    if (this.stderrText.length > stderrKeepBytes * 2) this.stderrText = this.stderrText.slice(-stderrKeepBytes);
  }

  async kill(): Promise<void> {
    const proc = this.proc;
    if (proc === null || this.state === 'stopped') return;
    this.expectExit = true;
    proc.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM (and SIGCONT if paused, so it can act on it); SIGKILL if it has not exited after
   *  `killAfterMs`. Resolves once it exited. */
  async terminate(killAfterMs: number): Promise<void> {
    const proc = this.proc;
    if (proc === null || this.state === 'stopped') return;
    this.expectExit = true;
    proc.kill('SIGTERM');
    if (this.state === 'paused') {
      proc.kill('SIGCONT');
      this.state = 'running';
    }
    const timer = setTimeout(() => proc.kill('SIGKILL'), killAfterMs);
    await this.exited;
    clearTimeout(timer);
  }

  pause(): void {
    if (this.state !== 'running' || this.proc === null) throw new Error(`node ${this.id} is ${this.state}, cannot pause`);
    this.proc.kill('SIGSTOP');
    this.state = 'paused';
  }

  resume(): void {
    if (this.state !== 'paused' || this.proc === null) throw new Error(`node ${this.id} is ${this.state}, cannot resume`);
    this.proc.kill('SIGCONT');
    this.state = 'running';
  }
}

// ---- the cluster ----

export class Cluster {
  readonly ids: string[];
  readonly events: ClusterEvent[] = [];
  private readonly handles = new Map<string, NodeHandle>();
  /** `${from}->${to}` -> proxy (empty when not proxied). */
  private readonly proxies = new Map<string, LinkProxy>();
  private readonly clock: () => number;
  private readonly args: string[];
  private readonly startTimeoutMs: number;
  private stopped = false;
  private stopping: Promise<void> | null = null;

  /** @internal use startCluster */
  constructor(readonly options: ClusterOptions, ports: number[], clock: () => number) {
    this.clock = clock;
    this.args = options.args ?? [];
    this.startTimeoutMs = options.startTimeoutMs ?? 10000;
    this.ids = Array.from({ length: options.nodes }, (_, i) => `n${i + 1}`);
    this.ids.forEach((id, i) => {
      this.handles.set(id, new NodeHandle(id, ports[i] as number, path.join(options.dataRoot, id), (node, how, expected) => {
        if (!expected) this.record('crash', `${node.id} pid ${node.pid} exited unexpectedly (${how})`);
      }));
    });
  }

  /** The nodes (live objects: pid and state follow restarts). */
  get nodes(): ClusterNode[] {
    return [...this.handles.values()];
  }

  node(id: string): ClusterNode {
    return this.handle(id);
  }

  get proxied(): boolean {
    return this.options.proxied;
  }

  /** The proxy carrying `from`'s messages to `to`. */
  proxy(from: string, to: string): LinkProxy {
    this.requireProxied('proxy');
    const p = this.proxies.get(`${from}->${to}`);
    if (p === undefined) throw new Error(`no link ${from}->${to}`);
    return p;
  }

  /** `--peers` for node `id`: its own client port, and the proxies of its outbound links. */
  peersFor(id: string): string {
    return this.ids.map((other) => {
      const port = other === id || !this.options.proxied ? this.handle(other).port : this.proxy(id, other).port;
      return `${other}=127.0.0.1:${port}`;
    }).join(',');
  }

  /** Every line node `id` wrote on stderr, across restarts (the last few MiB). */
  stderr(id: string): string {
    return this.handle(id).stderr();
  }

  /** The last `lines` lines node `id` wrote on stderr. */
  tail(id: string, lines = 40): string {
    return this.stderr(id).replace(/\n$/, '').split('\n').slice(-lines).join('\n');
  }

  /** The last `lines` lines of every node's stderr, one block per node (for failure output). */
  logTails(lines = 20): string {
    return this.ids.map((id) => `== ${id} ==\n${this.tail(id, lines)}`).join('\n');
  }

  /** Parsed JSON log lines of node `id`, optionally only those of one `event`. */
  logs(id: string, event?: string): Message[] {
    return this.stderr(id).split('\n').flatMap((line) => {
      if (!line.startsWith('{')) return [];
      try {
        const m = JSON.parse(line) as Message;
        return event === undefined || m['event'] === event ? [m] : [];
      } catch {
        return [];
      }
    });
  }

  record(kind: string, detail: string): void {
    this.events.push({ atMs: this.clock(), kind, detail });
  }

  /** @internal */
  async setUp(): Promise<void> {
    if (this.options.proxied) {
      for (const from of this.ids) {
        for (const to of this.ids) {
          if (from === to) continue;
          const proxy = new LinkProxy({ target: { host: '127.0.0.1', port: this.handle(to).port }, name: `${from}->${to}` });
          this.proxies.set(`${from}->${to}`, proxy);
          await proxy.listen();
        }
      }
    }
    await Promise.all(this.ids.map((id) => this.handle(id).spawn(this.peersFor(id), this.args, this.startTimeoutMs)));
    this.record('start', this.ids.map((id) => `${id} pid ${this.handle(id).pid} port ${this.handle(id).port}`).join(', ')
      + (this.options.proxied ? ' (peer links proxied)' : ''));
  }

  // ---- status and leaders ----

  /** `status` of one node (rejects if it does not answer in time). */
  async status(id: string, timeoutMs = 1000): Promise<NodeStatus> {
    const answer = await requestOnce(this.handle(id).port, { action: 'status' }, timeoutMs);
    if (answer['ok'] !== true) throw new Error(`status of ${id}: ${JSON.stringify(answer)}`);
    return answer as unknown as NodeStatus;
  }

  /** Status of every running, unpaused node that answers (others are left out). */
  async statuses(timeoutMs = 1000, among?: string[]): Promise<NodeStatus[]> {
    const ids = (among ?? this.ids).filter((id) => this.handle(id).state === 'running');
    const answers = await Promise.all(ids.map((id) => this.status(id, timeoutMs).catch(() => null)));
    return answers.filter((s): s is NodeStatus => s !== null);
  }

  /**
   * Polls `status` until a majority of the whole cluster names the same leader in the same term
   * and that leader itself (if asked) says it leads in that term.
   */
  async leader(timeoutMs = 10000, wait: LeaderWaitOptions = {}): Promise<LeaderInfo> {
    const deadline = Date.now() + timeoutMs;
    const need = majority(this.ids.length);
    let last: NodeStatus[] = [];
    for (;;) {
      last = await this.statuses(500, wait.among);
      const votes = new Map<string, number>();
      for (const s of last) {
        if (s.leader === null) continue;
        const key = `${s.leader}@${s.term}`;
        votes.set(key, (votes.get(key) ?? 0) + 1);
      }
      for (const [key, count] of votes) {
        if (count < need) continue;
        const [id, termText] = key.split('@') as [string, string];
        const term = Number(termText);
        const self = last.find((s) => s.node === id);
        if (self === undefined || self.role !== 'leader' || self.term !== term) continue;
        if (wait.minTerm !== undefined && term < wait.minTerm) continue;
        if (wait.not?.includes(id)) continue;
        this.record('leader', `${id} leads in term ${term} (${count}/${this.ids.length} agree)`);
        return { id, term, port: this.handle(id).port, statuses: last };
      }
      if (Date.now() >= deadline) {
        throw new Error(`no leader agreed by ${need} nodes within ${timeoutMs} ms${wait.minTerm === undefined ? '' : ` (term >= ${wait.minTerm})`}; last statuses: ${JSON.stringify(last.map(({ node, role, term, leader, commit_index }) => ({ node, role, term, leader, commit_index })))}`);
      }
      await sleep(100);
    }
  }

  // ---- processes ----

  async kill(id: string): Promise<void> {
    const node = this.handle(id);
    const pid = node.pid;
    await node.kill();
    this.record('kill', `${id} pid ${pid} SIGKILL`);
  }

  /** SIGTERM (a clean stop) and wait for the exit; SIGKILL after `killAfterMs` (default 5 s). */
  async terminate(id: string, killAfterMs = 5000): Promise<void> {
    const node = this.handle(id);
    const pid = node.pid;
    if (node.state === 'stopped') return;
    await node.terminate(killAfterMs);
    this.record('terminate', `${id} pid ${pid} SIGTERM, exited (${node.lastExit ?? 'unknown'})`);
  }

  /** Starts `id` again with the same client port, data dir and proxies (kills it first if it runs). */
  async restart(id: string): Promise<void> {
    const node = this.handle(id);
    if (node.state !== 'stopped') await this.kill(id);
    let lastError: unknown;
    for (let attempt = 1; attempt <= 10; attempt++) {
      try {
        await node.spawn(this.peersFor(id), this.args, this.startTimeoutMs);
        this.record('restart', `${id} pid ${node.pid} port ${node.port}`);
        return;
      } catch (err) {
        lastError = err;
        if (!(err as { addressInUse?: boolean }).addressInUse) break;
        await sleep(200 * attempt);
      }
    }
    throw lastError;
  }

  pause(id: string): void {
    this.handle(id).pause();
    this.record('pause', `${id} pid ${this.handle(id).pid} SIGSTOP`);
  }

  resume(id: string): void {
    this.handle(id).resume();
    this.record('resume', `${id} pid ${this.handle(id).pid} SIGCONT`);
  }

  // ---- links ----

  /**
   * Sets the topology: every link between nodes of different groups is cut (both directions),
   * every link inside a group is healed. A node named in no group is alone in its own group.
   */
  partition(groups: string[][]): void {
    this.requireProxied('partition');
    const groupOf = new Map<string, number>();
    groups.forEach((group, g) => {
      for (const id of group) {
        this.handle(id);
        if (groupOf.has(id)) throw new Error(`partition names ${id} twice`);
        groupOf.set(id, g);
      }
    });
    let lone = groups.length;
    for (const id of this.ids) if (!groupOf.has(id)) groupOf.set(id, lone++);
    for (const [key, proxy] of this.proxies) {
      const [from, to] = key.split('->') as [string, string];
      if (groupOf.get(from) === groupOf.get(to)) proxy.heal();
      else proxy.cut();
    }
    const described = [...new Set(groupOf.values())].map((g) => `[${this.ids.filter((id) => groupOf.get(id) === g).join(',')}]`);
    this.record('partition', described.join(' | '));
  }

  /** Cuts `id` off from every other node, both directions. */
  isolate(id: string): void {
    this.requireProxied('isolate');
    this.handle(id);
    for (const [key, proxy] of this.proxies) {
      const [from, to] = key.split('->') as [string, string];
      if (from === id || to === id) proxy.cut();
    }
    this.record('isolate', id);
  }

  /** Cuts only the link carrying `from`'s messages to `to` (an asymmetric fault). */
  cutLink(from: string, to: string): void {
    this.proxy(from, to).cut();
    this.record('cut_link', `${from}->${to}`);
  }

  healLink(from: string, to: string): void {
    this.proxy(from, to).heal();
    this.record('heal_link', `${from}->${to}`);
  }

  /** Heals every link (delays stay; `delayLinks(0)` removes them). */
  heal(): void {
    this.requireProxied('heal');
    for (const proxy of this.proxies.values()) proxy.heal();
    this.record('heal', 'all links');
  }

  /** Adds `ms` of latency to every link (or only the given `[from, to]` links), both directions. */
  delayLinks(ms: number, links?: Array<[string, string]>): void {
    this.requireProxied('delayLinks');
    const targets = links === undefined ? [...this.proxies.values()] : links.map(([a, b]) => this.proxy(a, b));
    for (const proxy of targets) proxy.delay(ms);
    this.record('delay', `${ms} ms on ${links === undefined ? 'all links' : links.map(([a, b]) => `${a}->${b}`).join(', ')}`);
  }

  /** Kills every node and closes every proxy. Safe to call twice (and concurrently). */
  stop(): Promise<void> {
    if (this.stopping !== null) return this.stopping;
    this.stopping = (async () => {
      await Promise.all([...this.handles.values()].map((node) => node.kill().catch(() => undefined)));
      await Promise.all([...this.proxies.values()].map((proxy) => proxy.close().catch(() => undefined)));
      if (!this.stopped) this.record('stop', 'all nodes killed, proxies closed');
      this.stopped = true;
    })();
    return this.stopping;
  }

  // ---- helpers ----

  private handle(id: string): NodeHandle {
    const node = this.handles.get(id);
    if (node === undefined) throw new Error(`no node ${id} (nodes: ${this.ids.join(', ')})`);
    return node;
  }

  private requireProxied(what: string): void {
    if (!this.options.proxied) throw new Error(`${what} needs a cluster started with proxied: true`);
  }
}

/**
 * Starts `nodes` real node processes (ids n1..nN) with client ports picked up front; with
 * `proxied`, every node's --peers entry for another node is the proxy of that outbound link.
 * Retries the whole start on EADDRINUSE.
 */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const t0 = performance.now();
  const clock = options.clock ?? ((): number => Math.round(performance.now() - t0));
  const attempts = options.attempts ?? 5;
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const cluster = new Cluster(options, await freePorts(options.nodes), clock);
    try {
      await cluster.setUp();
      return cluster;
    } catch (err) {
      lastError = err;
      await cluster.stop();
      if (!(err as { addressInUse?: boolean }).addressInUse) throw err;
    }
  }
  throw lastError;
}

/** A fresh client id (for raw requests that need one). */
export function newClientId(): string {
  return randomUUID();
}
