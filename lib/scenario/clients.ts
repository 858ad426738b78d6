// Simulated clients for scenarios: each runs one loop of spec.ts against the cluster and records
// every operation in the shared History (invoke time, answer time, result), which is all the
// checker sees.
import { LockClient } from '../client/client';
import type { Lock } from '../client/lock';
import { Prng } from '../core/prng';
import { LatchkeyError } from '../protocol/errors';
import { NdjsonConnection } from './cluster';
import type { History, HistoryOp } from './history';
import type { ClientGroup } from './spec';

export interface ClientContext {
  name: string;
  group: ClientGroup;
  /** host:port of every node to use, the preferred one first. */
  servers: string[];
  history: History;
  rng: Prng;
  /** Set when the run is over: loops stop at their next step. */
  stopped: () => boolean;
  /** Progress callback (ops done). */
  onOp: () => void;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function codeOf(err: unknown): string {
  return err instanceof LatchkeyError ? err.code : 'client_error';
}

function between(rng: Prng, range: [number, number]): number {
  return rng.int(range[0], range[1]);
}

function markLost(op: HistoryOp, lock: Lock, history: History): void {
  if (op.lost === true) return;
  op.lost = true;
  op.lostMs = history.elapsedMs();
  op.lostReason = lock.lostReason ?? 'unknown';
}

/** Records the loss of a grant on its history op when the lock handle's signal aborts. */
function watchLoss(lock: Lock, op: HistoryOp, history: History): void {
  lock.signal.addEventListener('abort', () => markLost(op, lock, history), { once: true });
}

async function take(ctx: ClientContext, client: LockClient, blocking: boolean, leaseMs?: number): Promise<{ lock: Lock; op: HistoryOp } | null> {
  const { group, history, name } = ctx;
  const op = history.invoke(name, blocking ? 'acquire' : 'preempt', group.lock);
  try {
    const options = { ...(group.timeoutMs === undefined ? {} : { timeoutMs: group.timeoutMs }), ...(leaseMs === undefined ? {} : { leaseMs }) };
    const lock = blocking ? await client.acquire(group.lock, options) : await client.preempt(group.lock, leaseMs === undefined ? {} : { leaseMs });
    history.complete(op, { ok: true, token: lock.token });
    watchLoss(lock, op, history);
    return { lock, op };
  } catch (err) {
    history.complete(op, { ok: false, code: codeOf(err) });
    return null;
  } finally {
    ctx.onOp();
  }
}

async function append(ctx: ClientContext, client: LockClient, lock: Lock, data: string): Promise<boolean> {
  const op = ctx.history.invoke(ctx.name, 'append', ctx.group.lock, { token: lock.token, data, file: ctx.group.lock });
  try {
    await client.append(lock, data);
    ctx.history.complete(op, { ok: true });
    return true;
  } catch (err) {
    ctx.history.complete(op, { ok: false, code: codeOf(err) });
    return false;
  } finally {
    ctx.onOp();
  }
}

async function release(ctx: ClientContext, lock: Lock): Promise<void> {
  const op = ctx.history.invoke(ctx.name, 'release', ctx.group.lock, { token: lock.token });
  try {
    await lock.release();
    ctx.history.complete(op, { ok: true });
  } catch (err) {
    ctx.history.complete(op, { ok: false, code: codeOf(err) });
  } finally {
    ctx.onOp();
  }
}

async function checkOwner(ctx: ClientContext, client: LockClient): Promise<void> {
  const op = ctx.history.invoke(ctx.name, 'check', ctx.group.lock);
  try {
    const state = await client.check(ctx.group.lock);
    ctx.history.complete(op, { ok: true, owner: state.owner, ...(state.token === null ? {} : { token: state.token }) });
  } catch (err) {
    ctx.history.complete(op, { ok: false, code: codeOf(err) });
  } finally {
    ctx.onOp();
  }
}

/** The loops that use LockClient, as an application would. */
async function runWithLockClient(ctx: ClientContext): Promise<void> {
  const { group, rng } = ctx;
  const client = new LockClient({
    servers: ctx.servers, clientId: ctx.name, requestTimeoutMs: group.requestTimeoutMs ?? 5000,
    ...(group.ttlMs === undefined ? {} : { ttlMs: group.ttlMs }),
  });
  try {
    for (let i = 0; i < group.iterations && !ctx.stopped(); i++) {
      const blocking = group.loop !== 'preempt-check-release';
      const leaseMs = group.loop === 'lease-overrun' ? group.leaseMs : undefined;
      const got = await take(ctx, client, blocking, leaseMs);
      if (got !== null) {
        const { lock } = got;
        if (group.loop === 'preempt-check-release') await checkOwner(ctx, client);
        else if (group.loop === 'acquire-append-release') await append(ctx, client, lock, `${ctx.name}#${i}@${lock.token}\n`);
        if (group.loop === 'lease-overrun') {
          // Hold past the lease, then try to write with the old token: the file must refuse it.
          await sleep((group.leaseMs ?? 0) + between(rng, group.holdMs));
          // Reading the signal makes the handle look at its own clock (the lease is over).
          if (lock.signal.aborted) markLost(got.op, lock, ctx.history);
          await append(ctx, client, lock, `${ctx.name}#${i}@${lock.token}-late\n`);
        } else {
          await sleep(between(rng, group.holdMs));
        }
        await release(ctx, lock);
      }
      await sleep(between(rng, group.thinkMs));
    }
  } finally {
    await client.close().catch(() => undefined);
  }
}

/**
 * hold-then-crash and hold-then-silent speak raw NDJSON: LockClient would keep its session
 * alive and say bye, which is exactly what these clients must not do.
 */
async function runRaw(ctx: ClientContext): Promise<void> {
  const { group, history, name, rng } = ctx;
  for (let i = 0; i < group.iterations && !ctx.stopped(); i++) {
    const [host, port] = (ctx.servers[0] as string).split(':') as [string, string];
    let conn: NdjsonConnection;
    try {
      conn = await NdjsonConnection.connect(Number(port), host);
    } catch {
      await sleep(100);
      continue;
    }
    const clientId = `${name}-${i}`;
    try {
      await conn.request({ action: 'hello', client_id: clientId, ...(group.ttlMs === undefined ? {} : { ttl_ms: group.ttlMs }) }, 5000);
      const op = history.invoke(clientId, 'acquire', group.lock);
      const answer = await conn.request({ action: 'acquire', lock_name: group.lock, client_id: clientId, request_id: `${clientId}-a` }, 30000);
      ctx.onOp();
      if (answer['ok'] !== true) {
        history.complete(op, { ok: false, code: String((answer['error'] as { code?: string } | undefined)?.code) });
        continue;
      }
      const token = answer['token'] as number;
      history.complete(op, { ok: true, token });
      const data = `${clientId}@${token}\n`;
      const app = history.invoke(clientId, 'append', group.lock, { token, data, file: group.lock });
      const appended = await conn.request({ action: 'append', file: group.lock, data, lock_name: group.lock, token, client_id: clientId, request_id: `${clientId}-w` }, 10000);
      history.complete(app, appended['ok'] === true ? { ok: true } : { ok: false, code: String((appended['error'] as { code?: string } | undefined)?.code) });
      ctx.onOp();
      await sleep(between(rng, group.holdMs));
      if (group.loop === 'hold-then-crash') {
        // Gone without a bye: the node sees the connection close and ends the session.
        conn.close();
        op.lost = true;
        op.lostMs = history.elapsedMs();
        op.lostReason = 'crashed';
      } else {
        // Silent: no keepalive, no request. The session expires after its ttl; wait for `lost`.
        const deadline = Date.now() + (group.ttlMs ?? 10000) * 3;
        while (Date.now() < deadline && !ctx.stopped()) {
          const lost = conn.unsolicited.find((m) => m['event'] === 'lost' && m['token'] === token);
          if (lost !== undefined) {
            op.lost = true;
            op.lostMs = history.elapsedMs();
            op.lostReason = String(lost['reason']);
            break;
          }
          await sleep(20);
        }
        conn.close();
      }
    } catch {
      conn.close();
    }
    await sleep(between(rng, group.thinkMs));
  }
}

export function runClient(ctx: ClientContext): Promise<void> {
  return ctx.group.loop === 'hold-then-crash' || ctx.group.loop === 'hold-then-silent' ? runRaw(ctx) : runWithLockClient(ctx);
}
