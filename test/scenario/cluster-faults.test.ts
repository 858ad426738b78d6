// Fault injection against a real 3-node cluster whose peer links all go through LinkProxy
// (lib/scenario/cluster.ts): partitions, kill -9 and restart, SIGSTOP/SIGCONT, one-way cuts.
// Requests are raw NDJSON on the nodes' (direct) client ports.
//
// The steps share one cluster but each starts from a healed, fully running cluster with an agreed
// leader, so one failing step does not take the others down with it.
import { expect } from 'chai';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NdjsonConnection, newClientId, requestOnce, startCluster, type Cluster, type NodeStatus } from '../../lib/scenario/cluster';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

type Message = Record<string, unknown>;

function errorCode(answer: Message): string | undefined {
  return (answer['error'] as { code?: string } | undefined)?.code;
}

function brief(statuses: NodeStatus[]): string {
  return statuses.map((s) => `${s.node}:${s.role}/t${s.term}/L=${s.leader}/c${s.commit_index}`).join(' ');
}

describe('cluster faults (3 nodes, proxied peer links)', function () {
  this.timeout(60000);
  const t0 = Date.now();
  const electionTimeoutMs = 500;
  let root = '';
  let cluster: Cluster | undefined;
  /** Observations worth reading in the output even when every assertion holds. */
  const notes: string[] = [];
  /** Set by the partition step for the heal step. */
  let partitioned: { old: string; neu: string; term: number } | undefined;
  const note = (text: string): void => {
    notes.push(`[+${Date.now() - t0} ms] ${text}`);
  };

  function c(): Cluster {
    if (cluster === undefined) throw new Error('cluster did not start');
    return cluster;
  }

  /** Polls until every running node names the same leader in the same term (and it leads). */
  async function allAgree(timeoutMs = 10000): Promise<NodeStatus[]> {
    const deadline = Date.now() + timeoutMs;
    let last: NodeStatus[] = [];
    for (;;) {
      const running = c().nodes.filter((n) => n.state === 'running').map((n) => n.id);
      last = await c().statuses(500);
      const first = last[0];
      if (first !== undefined && last.length === running.length && first.leader !== null
        && last.every((s) => s.leader === first.leader && s.term === first.term)
        && last.some((s) => s.node === first.leader && s.role === 'leader')) {
        return last;
      }
      if (Date.now() >= deadline) throw new Error(`nodes did not agree on a leader within ${timeoutMs} ms: ${brief(last)}`);
      await sleep(100);
    }
  }

  /** Takes `lock` on the node at `port`, appends `data` to the file of the same name, lets go. */
  async function guardedWrite(port: number, lock: string, data: string, timeoutMs = 8000): Promise<{ token: number; size: number }> {
    const conn = await NdjsonConnection.connect(port);
    try {
      const clientId = newClientId();
      const taken = await conn.request({ action: 'preempt', lock_name: lock, client_id: clientId }, timeoutMs);
      expect(taken, `preempt ${lock}`).to.include({ ok: true });
      const token = taken['token'] as number;
      const appended = await conn.request({ action: 'append', file: lock, data, lock_name: lock, token, client_id: clientId }, timeoutMs);
      expect(appended, `append ${lock}`).to.include({ ok: true });
      await conn.request({ action: 'bye', client_id: clientId }, timeoutMs).catch(() => undefined);
      return { token, size: appended['size'] as number };
    } finally {
      conn.close();
    }
  }

  /** Polls a stale_ok read on node `id` until it shows `data` (followers may lag a little). */
  async function eventuallyReads(id: string, file: string, data: string, timeoutMs = 8000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: Message = {};
    for (;;) {
      last = await requestOnce(c().node(id).port, { action: 'read', file, stale_ok: true }, 1000).catch((err: Error) => ({ error: err.message }));
      if (last['ok'] === true && last['data'] === data) return;
      if (Date.now() >= deadline) throw new Error(`${id} did not read ${JSON.stringify(data)} from ${file} within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
      await sleep(100);
    }
  }

  /** Back to a healed, fully running cluster with an agreed leader. */
  async function settle(): Promise<NodeStatus[]> {
    const cl = c();
    cl.heal();
    for (const n of cl.nodes) {
      if (n.state === 'paused') cl.resume(n.id);
      if (n.state === 'stopped') await cl.restart(n.id);
    }
    return allAgree(15000);
  }

  before(async function () {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'latchkey-faults-'));
    cluster = await startCluster({
      nodes: 3, dataRoot: root, proxied: true, clock: () => Date.now() - t0,
      // A little above the default 300 ms: the proxies run in this (mocha) process, so a stall of
      // this process on a loaded machine looks like a network stall to every node at once.
      args: ['--heartbeat-ms', '50', '--election-timeout-ms', String(electionTimeoutMs)],
    });
  });

  /** Each node's role changes (from its `role_changed` log lines), the last `limit` of them. */
  function roleChanges(cl: Cluster, limit: number): string {
    return cl.ids.map((id) => {
      const roles = cl.logs(id, 'role_changed').slice(-limit)
        .map((m) => `  ${String(m['ts'])} ${String(m['role'])} t${String(m['term'])} L=${String(m['leader'])}`);
      return `---- ${id} role changes ----\n${roles.join('\n')}`;
    }).join('\n');
  }

  afterEach(function () {
    if (cluster === undefined || this.currentTest?.state !== 'failed') return;
    process.stdout.write(`\n---- events ----\n${cluster.events.map((e) => `${e.atMs} ${e.kind} ${e.detail}`).join('\n')}\n${roleChanges(cluster, 15)}\n`);
  });

  after(async function () {
    this.timeout(20000);
    if (cluster !== undefined) {
      await cluster.stop();
      await cluster.stop(); // twice is safe
      process.stdout.write(`\n---- timeline ----\n${cluster.events.map((e) => `${String(e.atMs).padStart(6)} ms  ${e.kind.padEnd(10)} ${e.detail}`).join('\n')}\n`);
      if (notes.length > 0) process.stdout.write(`---- observations ----\n${notes.join('\n')}\n`);
      if (process.env['LATCHKEY_TEST_VERBOSE'] !== undefined) process.stdout.write(`${roleChanges(cluster, 1000)}\n`);
    }
    if (root !== '') await fs.rm(root, { recursive: true, force: true });
  });

  it('elects one leader that every node agrees on', async function () {
    const leader = await c().leader(10000);
    expect(leader.term).to.be.greaterThan(0);
    const statuses = await allAgree(10000);
    expect(statuses).to.have.length(3);
    for (const s of statuses) expect(s.members).to.have.members(['n1', 'n2', 'n3']);
    // Peer links really go through the proxies.
    const forwarded = c().ids.flatMap((a) => c().ids.filter((b) => b !== a).map((b) => c().proxy(a, b).stats()));
    expect(forwarded.every((s) => s.accepted > 0 && s.bytesForward > 0), JSON.stringify(forwarded)).to.equal(true);
    await guardedWrite(leader.port, 'start', 'hello\n');
  });

  it('a leader partitioned away cannot commit; the majority elects a new leader with a higher term', async () => {
    await settle();
    const old = await c().leader(10000);
    const others = c().ids.filter((id) => id !== old.id);
    c().partition([[old.id], others]);
    const cutAt = Date.now();

    // Sent at once, while the old leader may still think it leads.
    const oldClient = newClientId();
    const preemptOnOld = requestOnce(old.port, { action: 'preempt', lock_name: 'part-a', client_id: oldClient }, 15000)
      .then((answer) => ({ answer, afterMs: Date.now() - cutAt }), (err: Error) => ({ answer: { transport: err.message } as Message, afterMs: Date.now() - cutAt }));
    const checkOnOld = requestOnce(old.port, { action: 'check', lock_name: 'part-a' }, 15000)
      .then((answer) => ({ answer, afterMs: Date.now() - cutAt }), (err: Error) => ({ answer: { transport: err.message } as Message, afterMs: Date.now() - cutAt }));

    const neu = await c().leader(10000, { among: others, minTerm: old.term + 1 });
    expect(neu.id).to.not.equal(old.id);
    expect(neu.term).to.be.greaterThan(old.term);
    note(`partition: ${old.id} (term ${old.term}) cut off; ${neu.id} elected in term ${neu.term} after ${Date.now() - cutAt} ms`);

    // The majority side commits.
    await guardedWrite(neu.port, 'part-b', 'majority\n');

    // The old leader's side does not.
    const pre = await preemptOnOld;
    const chk = await checkOnOld;
    note(`preempt sent to isolated ${old.id}: ${JSON.stringify(pre.answer)} after ${pre.afterMs} ms`);
    note(`linearizable check sent to isolated ${old.id}: ${JSON.stringify(chk.answer)} after ${chk.afterMs} ms`);
    expect(pre.answer['ok'], 'a preempt on the isolated old leader must not succeed').to.not.equal(true);
    if (pre.answer['ok'] === false) {
      expect(errorCode(pre.answer)).to.equal('unavailable');
      expect(pre.afterMs).to.be.lessThan(11000);
    }
    expect(chk.answer['ok'], 'a linearizable check on the isolated old leader must not succeed').to.not.equal(true);

    // Check-quorum: the isolated leader stops calling itself leader.
    const deadline = Date.now() + 5000;
    let oldStatus = await c().status(old.id);
    while (oldStatus.role === 'leader' && Date.now() < deadline) {
      await sleep(100);
      oldStatus = await c().status(old.id);
    }
    note(`isolated ${old.id} after ${Date.now() - cutAt} ms: role ${oldStatus.role}, term ${oldStatus.term}, leader ${oldStatus.leader}`);
    expect(oldStatus.role, `isolated old leader ${old.id} still says it leads`).to.not.equal('leader');
    partitioned = { old: old.id, neu: neu.id, term: neu.term };
  });

  it('after healing the partition there is one leader that every node (the old leader too) agrees on', async () => {
    const stash = partitioned;
    const before = await c().statuses();
    c().heal();
    const healedAt = Date.now();
    const statuses = await allAgree(15000);
    expect(statuses).to.have.length(3);
    const term = statuses[0]?.term ?? 0;
    note(`heal: all agree after ${Date.now() - healedAt} ms: ${brief(statuses)} (before heal: ${brief(before)})`);
    if (stash !== undefined && (statuses[0]?.leader !== stash.neu || term !== stash.term)) {
      note(`heal changed the leader or term: ${stash.neu}/t${stash.term} -> ${statuses[0]?.leader}/t${term}`);
    }
    // Stable, not flapping: the same leader and term for the next second.
    for (let i = 0; i < 5; i++) {
      await sleep(200);
      const again = await allAgree(5000);
      expect(again[0]?.leader, 'leader changed after heal').to.equal(statuses[0]?.leader);
      expect(again[0]?.term, 'term changed after heal').to.equal(term);
    }
    // What the majority committed reaches every node, the old leader included.
    for (const id of c().ids) await eventuallyReads(id, 'part-b', 'majority\n');
    // What the old leader was asked for alone is not (or only ever via a proper commit) in the table.
    const leaderPort = c().node(statuses[0]?.leader as string).port;
    const partA = await requestOnce(leaderPort, { action: 'check', lock_name: 'part-a' }, 5000);
    note(`check part-a after heal: ${JSON.stringify(partA)}`);
    expect(partA['ok']).to.equal(true);
  });

  it('a killed follower does not stop the cluster; restarted with the same port and data it catches up', async function () {
    await settle();
    const leader = await c().leader(10000);
    const follower = c().ids.find((id) => id !== leader.id) as string;
    const { port, pid } = c().node(follower);
    await c().kill(follower);
    expect(c().node(follower).state).to.equal('stopped');
    await guardedWrite(leader.port, 'while-down', 'one follower down\n');
    const still = await c().leader(10000);
    expect(still.id, 'the leader should survive a follower crash').to.equal(leader.id);
    await c().restart(follower);
    expect(c().node(follower).port).to.equal(port);
    expect(c().node(follower).pid).to.not.equal(pid);
    const statuses = await allAgree(15000);
    expect(statuses.find((s) => s.node === follower)?.leader).to.equal(leader.id);
    await eventuallyReads(follower, 'while-down', 'one follower down\n');
    await eventuallyReads(follower, 'part-b', 'majority\n');
  });

  it('a paused leader is replaced; resumed, it steps down and follows the new leader', async function () {
    await settle();
    const old = await c().leader(10000);
    const others = c().ids.filter((id) => id !== old.id);
    c().pause(old.id);
    const pausedAt = Date.now();
    const neu = await c().leader(10000, { among: others, minTerm: old.term + 1 });
    note(`pause: ${old.id} (term ${old.term}) stopped; ${neu.id} elected in term ${neu.term} after ${Date.now() - pausedAt} ms`);
    expect(neu.id).to.not.equal(old.id);
    await guardedWrite(neu.port, 'while-paused', 'leader paused\n');
    c().resume(old.id);
    const resumedAt = Date.now();
    // What the old leader says right after SIGCONT, before it heard anyone.
    const first = await c().status(old.id, 2000).catch((err: Error) => err.message);
    note(`${old.id} right after resume: ${typeof first === 'string' ? first : brief([first])}`);
    const deadline = Date.now() + 8000;
    let s = await c().status(old.id, 2000);
    while (!(s.role === 'follower' && s.leader === neu.id) && Date.now() < deadline) {
      await sleep(100);
      s = await c().status(old.id, 2000);
    }
    note(`${old.id} ${Date.now() - resumedAt} ms after resume: ${brief([s])}`);
    expect(s.role, `${old.id} after resume`).to.equal('follower');
    expect(s.leader).to.equal(neu.id);
    expect(s.term).to.be.at.least(neu.term);
    const statuses = await allAgree(10000);
    expect(statuses[0]?.leader).to.equal(neu.id);
    await eventuallyReads(old.id, 'while-paused', 'leader paused\n');
  });

  it('an asymmetric cut (leader -> one follower only) leaves the leader in place and the cluster writable', async function () {
    await settle();
    const leader = await c().leader(10000);
    const [f, g] = c().ids.filter((id) => id !== leader.id) as [string, string];

    // 1. The leader's messages no longer reach f; f's still reach the leader.
    c().cutLink(leader.id, f);
    await sleep(6 * electionTimeoutMs); // several election timeouts for f
    const during = await c().statuses();
    note(`cut ${leader.id}->${f} for ${6 * electionTimeoutMs} ms: ${brief(during)}`);
    const now = await c().leader(5000, { among: [leader.id, g] });
    expect(now.id, 'leader changed under a one-way cut').to.equal(leader.id);
    expect(now.term, 'term changed under a one-way cut').to.equal(leader.term);
    await guardedWrite(leader.port, 'asym-1', 'leader->f cut\n');
    const fStatus = during.find((s) => s.node === f);
    expect(fStatus?.role, `${f} cannot hear any leader`).to.not.equal('leader');
    // A request sent to f: it knows no leader, so it cannot forward.
    const viaF = await requestOnce(c().node(f).port, { action: 'preempt', lock_name: 'asym-f', client_id: newClientId() }, 12000)
      .catch((err: Error) => ({ transport: err.message } as Message));
    note(`preempt sent to ${f} (cut from the leader's messages): ${JSON.stringify(viaF)}`);

    // 2. The other direction: f hears the leader, but its answers and forwards do not arrive.
    c().healLink(leader.id, f);
    c().cutLink(f, leader.id);
    await sleep(6 * electionTimeoutMs);
    const during2 = await c().statuses();
    note(`cut ${f}->${leader.id} for ${6 * electionTimeoutMs} ms: ${brief(during2)}`);
    const now2 = await c().leader(5000, { among: [leader.id, g] });
    expect(now2.id, 'leader changed under a one-way cut').to.equal(leader.id);
    expect(now2.term, 'term changed under a one-way cut').to.equal(leader.term);
    await guardedWrite(leader.port, 'asym-2', 'f->leader cut\n');
    const viaF2Start = Date.now();
    const viaF2 = await requestOnce(c().node(f).port, { action: 'preempt', lock_name: 'asym-f2', client_id: newClientId() }, 12000)
      .catch((err: Error) => ({ transport: err.message } as Message));
    note(`preempt sent to ${f} (its messages to the leader cut): ${JSON.stringify(viaF2)} after ${Date.now() - viaF2Start} ms`);

    // 3. Healed: everyone agrees and f has everything.
    c().heal();
    const statuses = await allAgree(15000);
    note(`after healing the one-way cuts: ${brief(statuses)}`);
    for (const [file, data] of [['asym-1', 'leader->f cut\n'], ['asym-2', 'f->leader cut\n']] as const) await eventuallyReads(f, file, data);
  });
});
