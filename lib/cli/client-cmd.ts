// `node bin/main client --server HOST:PORT[,...] [LOCK READ|WRITE [VALUE] [HOLD_SECONDS]]`
// (PROTOCOL §1): a one-shot take-use-release, or, with no positionals, an interactive shell that
// also works line by line from a pipe. The auth token comes from a file or the environment,
// never from the command line, where `ps` would show it to every user of the machine.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { LatchkeyError } from '../protocol/errors';
import { LockClient, parseAddress } from '../client/client';
import type { Lock } from '../client/lock';
import { FlagError, parseFlags } from './args';

/** Where the command reads and writes; tests pass streams, the CLI passes the process's. */
export interface ClientIo {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  /** stdin is a terminal: show the prompt, keep history, let Ctrl-C cancel a blocking command. */
  terminal: boolean;
}

const flagSpec = { server: 'string', 'auth-token-file': 'string', 'tls-ca': 'string', help: 'boolean' } as const;

const usage = `usage: node bin/main client --server HOST:PORT[,HOST:PORT...] [--auth-token-file F]
         [--tls-ca F] [LOCK READ|WRITE [VALUE] [HOLD_SECONDS]]
  With no LOCK: an interactive shell (type help). The auth token may also come from
  the environment variable LATCHKEY_AUTH_TOKEN. With --tls-ca the client speaks TLS and
  trusts the nodes' certificates signed by that CA (PEM file).
`;

const help = `commands:
  preempt L               take L only if it is free
  acquire L [timeout_ms]  wait for L (Ctrl-C gives up)
  release L               release L
  check L                 who holds L, with which token, how many wait
  write FILE DATA         append DATA and a newline to FILE, under the lock named FILE you hold
  read FILE               the contents of FILE, as a JSON string
  status                  the node's view of the cluster
  help                    this list
  exit                    say bye (releasing every lock) and leave
`;

/** Exit codes: 0 done, 1 the operation failed, 2 the command line is wrong. */
export async function runClient(argv: string[], io: ClientIo = processIo()): Promise<number> {
  let setup: { client: LockClient; positionals: string[] } | 'help';
  try {
    setup = await prepare(argv, io);
  } catch (err) {
    io.stderr.write(`error: ${errorText(err)}\n${usage}`);
    return 2;
  }
  if (setup === 'help') {
    io.stdout.write(usage);
    return 0;
  }
  const { client, positionals } = setup;
  try {
    if (positionals.length === 0) return await runShell(client, io);
    return await runOneShot(client, positionals, io);
  } finally {
    await client.close();
  }
}

function processIo(): ClientIo {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env, terminal: process.stdin.isTTY === true };
}

async function prepare(argv: string[], io: ClientIo): Promise<{ client: LockClient; positionals: string[] } | 'help'> {
  let parsed;
  try {
    parsed = parseFlags(argv, flagSpec);
  } catch (err) {
    if (err instanceof FlagError && /^--(auth-)?token$/.test(err.flag)) {
      throw new FlagError(err.flag, 'a token is never taken on the command line: use --auth-token-file F or LATCHKEY_AUTH_TOKEN');
    }
    throw err;
  }
  const { flags, positionals } = parsed;
  if (flags.help === true) return 'help';
  if (flags.server === undefined) throw new FlagError('--server', '--server is required');
  const servers = flags.server.split(',');
  for (const server of servers) {
    if (parseAddress(server) === null) throw new FlagError('--server', `--server must be HOST:PORT[,HOST:PORT...], got '${server}'`);
  }
  if (positionals.length > 0) checkOneShotArgs(positionals);
  const authToken = await readAuthToken(flags['auth-token-file'], io.env);
  const ca = flags['tls-ca'] === undefined ? undefined : await readFlagFile('--tls-ca', flags['tls-ca']);
  const client = new LockClient({
    servers,
    ...(authToken === undefined ? {} : { authToken }),
    ...(ca === undefined ? {} : { tls: { ca } }),
  });
  return { client, positionals };
}

async function readFlagFile(flag: string, file: string): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    throw new FlagError(flag, `${flag}: cannot read ${file}: ${(err as Error).message}`);
  }
}

async function readAuthToken(file: string | undefined, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (file !== undefined) {
    const token = (await readFlagFile('--auth-token-file', file)).toString('utf8').trim();
    if (token === '') throw new FlagError('--auth-token-file', `--auth-token-file: ${file} is empty`);
    return token;
  }
  const token = env['LATCHKEY_AUTH_TOKEN']?.trim();
  return token === undefined || token === '' ? undefined : token;
}

// ---------------------------------------------------------------- one-shot

interface OneShot {
  lockName: string;
  mode: 'READ' | 'WRITE';
  value: string;
  holdMs: number;
}

/** `LOCK READ [HOLD_SECONDS]`, `LOCK READ VALUE HOLD_SECONDS` (VALUE unused) or `LOCK WRITE VALUE [HOLD_SECONDS]`. */
function checkOneShotArgs(positionals: string[]): OneShot {
  const [lockName, modeArg, ...rest] = positionals as [string, string | undefined, ...string[]];
  const mode = modeArg?.toUpperCase();
  if (mode !== 'READ' && mode !== 'WRITE') throw new FlagError('LOCK', `expected LOCK READ|WRITE [VALUE] [HOLD_SECONDS], got '${positionals.join(' ')}'`);
  if (rest.length > 2) throw new FlagError('LOCK', `too many arguments: '${rest.slice(2).join(' ')}'`);
  if (mode === 'WRITE' && rest.length === 0) throw new FlagError('LOCK', 'WRITE needs a VALUE');
  const holdArg = mode === 'READ' && rest.length === 1 ? rest[0] : rest[1];
  const holdSeconds = holdArg === undefined ? 0 : Number(holdArg);
  if (holdArg !== undefined && (holdArg.trim() === '' || !Number.isFinite(holdSeconds) || holdSeconds < 0)) {
    throw new FlagError('LOCK', `HOLD_SECONDS must be a number of seconds, got '${holdArg}'`);
  }
  return { lockName, mode, value: mode === 'WRITE' ? (rest[0] as string) : '', holdMs: Math.round(holdSeconds * 1000) };
}

async function runOneShot(client: LockClient, positionals: string[], io: ClientIo): Promise<number> {
  const { lockName, mode, value, holdMs } = checkOneShotArgs(positionals);
  const say = (line: string): void => { io.stdout.write(`${line}\n`); };
  let lock: Lock | null = null;
  try {
    say(`REQUESTING lock for resource: ${lockName}`);
    lock = await client.acquire(lockName);
    say(`LOCKED ${lockName}`);
    if (mode === 'WRITE') {
      await client.append(lock, `${value}\n`);
      say(`WROTE '${value}' to ${lockName}`);
    } else {
      const data = await client.read(lockName);
      io.stdout.write(`READ from ${lockName}: ${data}${data.endsWith('\n') ? '' : '\n'}`);
    }
    await hold(holdMs, lock.signal);
    await lock.release();
    say(`UNLOCKED ${lockName}`);
    return 0;
  } catch (err) {
    io.stderr.write(`error: ${errorText(err)}\n`);
    return 1;
  } finally {
    if (lock !== null && !lock.released) await lock.release().catch(() => undefined);
  }
}

/** Waits `ms`, or rejects with the loss if the lock is lost meanwhile. */
function hold(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = (): void => { clearTimeout(timer); reject(signal.reason); };
    const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve(); }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

// ---------------------------------------------------------------- interactive

async function runShell(client: LockClient, io: ClientIo): Promise<number> {
  const historyFile = io.terminal ? historyPath(io.env) : null;
  const rl = readline.createInterface({
    input: io.stdin,
    output: io.terminal ? io.stdout : undefined,
    terminal: io.terminal,
    prompt: 'latchkey> ',
    historySize: 1000,
    history: historyFile === null ? [] : await loadHistory(historyFile),
  });
  const shell = new Shell(client, (line) => io.stdout.write(`${line}\n`));
  // Ctrl-C cancels a blocking command; at an idle prompt it leaves, like `exit`.
  rl.on('SIGINT', () => {
    if (!shell.cancel()) rl.close();
  });
  if (io.terminal) {
    io.stdout.write(`latchkey client ${client.clientId}; type help for commands\n`);
    rl.prompt();
  }
  // Lines are taken one at a time, in order: a blocking acquire holds back the lines after it,
  // exactly as if they had been typed after it returned.
  for await (const line of rl) {
    if (historyFile !== null && line.trim() !== '') await fs.appendFile(historyFile, `${line}\n`).catch(() => undefined);
    if ((await shell.run(line)) === 'exit') break;
    if (io.terminal) rl.prompt();
  }
  rl.close();
  shell.leave();
  return 0;
}

function historyPath(env: NodeJS.ProcessEnv): string {
  return env['LATCHKEY_HISTORY_FILE'] ?? path.join(os.homedir(), '.latchkey_history');
}

async function loadHistory(file: string): Promise<string[]> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  // readline wants the newest entry first.
  return text.split('\n').filter((line) => line.trim() !== '').slice(-1000).reverse();
}

const commands = new Set(['preempt', 'acquire', 'release', 'check', 'write', 'read', 'status', 'help', 'exit', 'quit']);

/** The shell's commands, each answered with one line (help excepted). */
class Shell {
  private readonly client: LockClient;
  private readonly say: (line: string) => void;
  /** Locks taken in this shell, by name: `write` and `release` act on them. */
  private readonly held = new Map<string, Lock>();
  private running: AbortController | null = null;
  /** Set when the shell ends: the bye that follows ends every hold, which is no news. */
  private leaving = false;

  constructor(client: LockClient, say: (line: string) => void) {
    this.client = client;
    this.say = say;
  }

  leave(): void {
    this.leaving = true;
  }

  /** Aborts the command in progress; false if there is none. */
  cancel(): boolean {
    if (this.running === null) return false;
    this.running.abort();
    return true;
  }

  async run(input: string): Promise<'exit' | void> {
    const line = input.trim();
    if (line === '') return;
    const [command = '', arg1, rest] = splitCommand(line);
    this.running = new AbortController();
    try {
      return await this.dispatch(command.toLowerCase(), arg1, rest, this.running.signal);
    } catch (err) {
      this.say(this.describe(err, command.toLowerCase(), arg1));
    } finally {
      this.running = null;
    }
  }

  private async dispatch(command: string, name: string | undefined, rest: string | undefined, signal: AbortSignal): Promise<'exit' | void> {
    const say = this.say;
    if (!commands.has(command)) return say(`unknown command '${command}' (try help)`);
    switch (command) {
      case 'exit':
      case 'quit':
        return 'exit';
      case 'help':
        this.say(help.trimEnd());
        return;
      case 'status': {
        const s = await this.client.status();
        say(`node=${s.node} role=${s.role} term=${s.term} leader=${s.leader ?? '-'} commit_index=${s.commitIndex} members=${s.members.join(',')}`);
        return;
      }
    }
    if (name === undefined) return say(`usage: ${usageOf(command)}`);
    switch (command) {
      case 'preempt':
        if (rest !== undefined) return say(`usage: ${usageOf(command)}`);
        return this.took(await this.client.preempt(name));
      case 'acquire': {
        const timeoutMs = rest === undefined ? undefined : Number(rest);
        if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs >= 0)) return say(`usage: ${usageOf(command)}`);
        return this.took(await this.client.acquire(name, timeoutMs === undefined ? { signal } : { timeoutMs, signal }));
      }
      case 'release': {
        const lock = this.held.get(name);
        if (lock === undefined) return say(`not_owner: ${name} is not held by this client`);
        await lock.release();
        this.held.delete(name);
        return say(`RELEASED ${name}`);
      }
      case 'check': {
        const state = await this.client.check(name);
        if (state.owner === null) return say(`${name}: free${state.waiters > 0 ? ` waiters=${state.waiters}` : ''}`);
        return say(`${name}: owner=${state.owner} token=${String(state.token)} waiters=${state.waiters}`);
      }
      case 'write': {
        if (rest === undefined) return say(`usage: ${usageOf(command)}`);
        const lock = this.held.get(name);
        if (lock === undefined) return say(`not_owner: you do not hold the lock ${name}; run 'acquire ${name}' first`);
        await this.client.append(lock, `${rest}\n`);
        return say(`WROTE '${rest}' to ${name}`);
      }
      case 'read':
        return say(`${name}: ${JSON.stringify(await this.client.read(name))}`);
    }
  }

  private took(lock: Lock): void {
    this.held.set(lock.name, lock);
    lock.signal.addEventListener('abort', () => {
      if (this.held.get(lock.name) === lock) this.held.delete(lock.name);
      if (!this.leaving) this.say(`LOST ${lock.name} token=${lock.token} (${lock.lostReason ?? 'unknown'})`);
    }, { once: true });
    this.say(`LOCKED ${lock.name} token=${lock.token}`);
  }

  private describe(err: unknown, command: string, name: string | undefined): string {
    if (err instanceof LatchkeyError) {
      if (err.code === 'lock_held' && name !== undefined) return `lock_held: ${name} is held by ${err.owner ?? 'another client'}`;
      if (err.name === 'AbortError') return `timeout: gave up on ${command} ${name ?? ''}`.trimEnd();
    }
    return errorText(err);
  }
}

/** `cmd`, `cmd ARG`, or `cmd ARG REST...` where REST keeps its inner spaces (DATA of write). */
function splitCommand(line: string): [string, string | undefined, string | undefined] {
  const match = /^(\S+)(?:\s+(\S+))?(?:\s+(.*))?$/.exec(line);
  if (match === null) return ['', undefined, undefined];
  return [match[1] as string, match[2], match[3]];
}

function usageOf(command: string): string {
  const line = help.split('\n').find((entry) => entry.trim().startsWith(`${command} `));
  return line === undefined ? command : (line.trim().split(/\s{2,}/)[0] as string);
}

function errorText(err: unknown): string {
  if (err instanceof LatchkeyError) return `${err.code}: ${err.message}`;
  if (err instanceof FlagError) return err.message;
  return err instanceof Error ? err.message : String(err);
}
