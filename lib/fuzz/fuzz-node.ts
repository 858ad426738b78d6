// A real latchkey node run in this process for the live fuzz targets: a single-member cluster on
// 127.0.0.1 port 0 with a temporary data directory. Around it, the checks every live case ends
// with: the node did not crash (no uncaught exception, no error logged, still serving), and a
// fresh, well-behaved client can still take and give back a lock promptly, with a token larger
// than the last probe's (fencing holds across everything the fuzzer did).
import * as fc from 'fast-check';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LatchkeyNode } from '../io/node';
import { createLogger } from '../io/logger';
import { TokenLedger } from './live-lines';
import { WireSocket, type Message } from './wire';

/** How long a well-behaved request may take before the node counts as unavailable. */
export const probeTimeoutMs = 3000;

export class FuzzNode {
  /** Everything logged at warn or above, parsed. */
  readonly warnings: Message[] = [];
  /** Uncaught exceptions and unhandled rejections seen while the node ran. */
  readonly crashes: string[] = [];
  private node: LatchkeyNode | undefined;
  private dataDir = '';
  private probe = new AvailabilityProbe();
  /** Every token seen for every lock on this node, across cases (see TokenLedger). */
  ledger = new TokenLedger();
  /** The case that ran last, and whether its node's breakage was reported already. */
  private lastCase: unknown = null;
  private reported = false;
  private readonly onCrash = (error: unknown): void => {
    this.crashes.push(error instanceof Error ? `${error.name}: ${error.message}\n${error.stack ?? ''}` : String(error));
  };

  get port(): number {
    const port = this.node?.addresses.client?.port;
    if (port === undefined) throw new Error('the fuzz node is not running');
    return port;
  }

  async start(): Promise<void> {
    this.dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'latchkey-fuzz-'));
    const logger = createLogger('warn', { node: 'n1' }, (line) => this.warnings.push(JSON.parse(line) as Message));
    this.node = new LatchkeyNode({
      id: 'n1',
      listen: { host: '127.0.0.1', port: 0 },
      peers: new Map([['n1', { host: '127.0.0.1', port: 0 }]]),
      dataDir: this.dataDir,
      // The fuzzer tests the protocol, not the disk: no fsync keeps a case fast.
      fsync: 'never',
      heartbeatMs: 50,
      electionTimeoutMs: 300,
      sessionTtlMs: 10_000,
      logger,
    });
    process.on('uncaughtException', this.onCrash);
    process.on('unhandledRejection', this.onCrash);
    await this.node.start();
    this.probe = new AvailabilityProbe();
    this.ledger = new TokenLedger();
  }

  async stop(): Promise<void> {
    const node = this.node;
    this.node = undefined;
    try {
      await node?.stop();
    } finally {
      process.off('uncaughtException', this.onCrash);
      process.off('unhandledRejection', this.onCrash);
      if (this.dataDir !== '') await fs.rm(this.dataDir, { recursive: true, force: true });
      this.dataDir = '';
    }
  }

  /** A node that crashed or stopped serving is replaced, so that later cases (and shrinking)
   *  start from a working one. A node that broke after the last case passed its checks (in the
   *  background, later than the checks looked) is not replaced silently: that is a failure, of
   *  the case before, which the error names. */
  async ensureHealthy(): Promise<void> {
    if (this.node !== undefined && this.node.serving && !this.broken()) return;
    if (this.node !== undefined && !this.reported) {
      this.reported = true;
      const what = this.crashes[0] ?? JSON.stringify(this.errors()[0] ?? 'it stopped serving').slice(0, 1000);
      throw new Error(`the node broke after the previous case passed its checks: ${what}; that case was ${fc.stringify(this.lastCase).slice(0, 2000)}`);
    }
    await this.stop();
    this.crashes.length = 0;
    this.warnings.length = 0;
    this.reported = false;
    await this.start();
  }

  /** True once the node crashed or logged an error: answers may never come. */
  broken(): boolean {
    return this.crashes.length > 0 || this.errors().length > 0;
  }

  /** Runs one case (`value` names it in a later report), then checks the node's health. A case
   *  that fails because the node broke under it reports the breakage, not its symptom. */
  async runCase(value: unknown, body: () => Promise<unknown>): Promise<void> {
    await this.ensureHealthy();
    this.lastCase = value;
    try {
      await body();
    } catch (error) {
      if (this.broken()) this.throwIfBroken();
      throw error;
    }
    await this.checkHealth();
  }

  errors(): Message[] {
    return this.warnings.filter((w) => w['level'] === 'error');
  }

  /** Throws unless the node is alive, logged no error and serves a fresh client promptly. */
  async checkHealth(): Promise<void> {
    this.throwIfBroken();
    await this.probe.run(this.port);
    // What a case set off in the background (a file written after an append) fails a turn of
    // the event loop later.
    await new Promise((resolve) => setTimeout(resolve, 0));
    this.throwIfBroken();
  }

  private throwIfBroken(): void {
    const fault = this.crashes.length > 0 ? `the node crashed: ${this.crashes[0]}`
      : this.errors().length > 0 ? `the node logged an error: ${JSON.stringify(this.errors()[0]).slice(0, 1000)}`
        : this.node === undefined || !this.node.serving ? 'the node stopped serving' : null;
    if (fault === null) return;
    this.reported = true;
    throw new Error(fault);
  }
}

/** A well-behaved client, fresh each time: the node must serve it promptly after anything the
 *  fuzzer did, and hand it tokens that keep growing (one lock, probed again and again). */
export class AvailabilityProbe {
  private probeSeq = 0;
  private lastProbeToken = 0;
  private lastCommitIndex = 0;
  private fileBytes: number | null = null;

  /** status, preempt, check, append and release from a fresh connection, each within probeTimeoutMs. */
  async run(port: number): Promise<void> {
    const socket = await WireSocket.connect(port);
    try {
      const client = `fuzz-probe-${++this.probeSeq}`;
      const lock = 'fuzz-probe';
      const status = await this.expectOk(socket, { action: 'status' });
      this.checkStatus(status);
      const grant = await this.expectOk(socket, { action: 'preempt', lock_name: lock, client_id: client });
      const token = grant['token'];
      if (grant['owner'] !== client || typeof token !== 'number' || token <= this.lastProbeToken) {
        throw new Error(`availability probe: preempt answered ${JSON.stringify(grant)} (the last probe had token ${this.lastProbeToken})`);
      }
      this.lastProbeToken = token;
      const check = await this.expectOk(socket, { action: 'check', lock_name: lock });
      if (check['owner'] !== client || check['token'] !== token) throw new Error(`availability probe: check answered ${JSON.stringify(check)}`);
      const append = await this.expectOk(socket, { action: 'append', file: lock, data: '.', lock_name: lock, client_id: client, token });
      if (typeof append['size'] !== 'number' || (this.fileBytes !== null && append['size'] !== this.fileBytes + 1)) {
        throw new Error(`availability probe: append answered ${JSON.stringify(append)} (the file had ${this.fileBytes} bytes)`);
      }
      this.fileBytes = append['size'];
      await this.expectOk(socket, { action: 'release', lock_name: lock, client_id: client, token });
    } finally {
      socket.destroy();
    }
  }

  private checkStatus(status: Message): void {
    const commit = status['commit_index'];
    const sane = status['node'] === 'n1' && status['role'] === 'leader' && status['leader'] === 'n1'
      && typeof status['term'] === 'number' && status['term'] >= 1 && typeof commit === 'number' && commit >= this.lastCommitIndex;
    if (!sane) throw new Error(`availability probe: status answered ${JSON.stringify(status)} (last commit_index ${this.lastCommitIndex})`);
    this.lastCommitIndex = commit as number;
  }

  private async expectOk(socket: WireSocket, fields: Message): Promise<Message> {
    const answer = await socket.request(fields, probeTimeoutMs);
    if (answer === null) throw new Error(`availability probe: no answer to ${JSON.stringify(fields)} within ${probeTimeoutMs} ms`);
    if (answer['ok'] !== true) throw new Error(`availability probe: ${JSON.stringify(fields)} answered ${JSON.stringify(answer)}`);
    return answer;
  }
}
