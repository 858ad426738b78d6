// Issue 5, item 5: every bound refuses what it must with limit_exceeded (or closes what it
// must), and never affects other clients.
import * as net from 'node:net';
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { nodeForSuite } from '../helpers/node-process';
import { connectRaw, errorOf, rawClientPool, sleep, waitFor, type RawClient } from '../helpers/raw-client';

function closedWithin(socket: net.Socket, ms: number): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

describe('security: limits', function () {
  this.timeout(60000);

  describe('bounds of one node (connections, pending requests, idle connections)', () => {
    const node = nodeForSuite({ args: ['--max-connections', '4', '--max-pending-per-connection', '2', '--idle-timeout-ms', '400'] });
    const raw = rawClientPool(() => node().port);
    const sockets: net.Socket[] = [];

    afterEach(() => {
      for (const s of sockets.splice(0)) s.destroy();
    });

    async function bound(): Promise<RawClient> {
      const c = await raw();
      expect(await c.request({ action: 'hello', client_id: randomUUID() })).to.include({ ok: true });
      return c;
    }

    it('answers one client connection past --max-connections with limit_exceeded and closes it; the others are served', async () => {
      const held = [await bound(), await bound(), await bound(), await bound()];
      const extra = await connectRaw(node().port);
      extra.send({ id: 1, action: 'status' });
      const refusal = await extra.next();
      expect(refusal).to.include({ id: null, ok: false });
      expect(errorOf(refusal).code).to.equal('limit_exceeded');
      await extra.closed;
      for (const c of held) expect(await c.request({ action: 'status' })).to.include({ ok: true });
      held[0]?.close();
      await sleep(100);
      const again = await raw();
      expect(await again.request({ action: 'status' })).to.include({ ok: true });
    });

    it('answers requests past --max-pending-per-connection with limit_exceeded; answered ones make room', async () => {
      const owner = await bound();
      const ownerId = (owner.received()[0] as { client_id: string }).client_id;
      const [a, b, c] = [`pend-${randomUUID()}`, `pend-${randomUUID()}`, `pend-${randomUUID()}`];
      for (const lock of [a, b]) {
        expect(await owner.request({ action: 'preempt', lock_name: lock, client_id: ownerId })).to.include({ ok: true });
      }
      const waiter = await bound();
      const waiterId = (waiter.received()[0] as { client_id: string }).client_id;
      const first = waiter.request({ action: 'acquire', lock_name: a, client_id: waiterId });
      const second = waiter.request({ action: 'acquire', lock_name: b, client_id: waiterId });
      const third = await waiter.request({ action: 'acquire', lock_name: c, client_id: waiterId });
      expect(errorOf(third).code).to.equal('limit_exceeded');
      expect(errorOf(third).message).to.match(/2 requests on this connection/);
      expect(await owner.request({ action: 'release', lock_name: a, client_id: ownerId })).to.include({ ok: true });
      expect(await first).to.include({ ok: true, owner: waiterId });
      expect(await waiter.request({ action: 'acquire', lock_name: c, client_id: waiterId })).to.include({ ok: true });
      expect(await owner.request({ action: 'release', lock_name: b, client_id: ownerId })).to.include({ ok: true });
      expect(await second).to.include({ ok: true });
    });

    it('closes a connection with no session after --idle-timeout-ms, and one that never sends a line; keeps a session\'s', async () => {
      const quiet = await raw();
      expect(await quiet.request({ action: 'status' })).to.include({ ok: true });
      const silent = net.connect(node().port, '127.0.0.1');
      sockets.push(silent);
      const session = await bound();
      expect(await closedWithin(quiet.socket, 5000)).to.equal(true);
      expect(await closedWithin(silent, 5000)).to.equal(true);
      expect(session.isClosed).to.equal(false);
      expect(await session.request({ action: 'status' })).to.include({ ok: true });
    });
  });

  describe('backpressure', () => {
    const node = nodeForSuite();

    /** A file of `parts` appends of `part`, written under its own lock by a new connection. */
    async function bigFile(part: string, parts: number): Promise<{ owner: RawClient; file: string }> {
      const owner = await connectRaw(node().port);
      const ownerId = randomUUID();
      const file = `big-${randomUUID()}`;
      const granted = await owner.request({ action: 'preempt', lock_name: file, client_id: ownerId });
      expect(granted).to.include({ ok: true });
      for (let i = 0; i < parts; i++) {
        const appended = await owner.request({ action: 'append', file, data: part, lock_name: file, token: granted['token'], client_id: ownerId });
        expect(appended).to.include({ ok: true });
      }
      return { owner, file };
    }

    /** `count` pipelined reads of `file`, a line each, ids 1 to count. */
    function pipelinedReads(file: string, count: number): string[] {
      const lines: string[] = [];
      for (let i = 1; i <= count; i++) lines.push(`{"id":${i},"action":"read","file":"${file}"}\n`);
      return lines;
    }

    it('stops reading a client that does not read its answers, serves others meanwhile, and loses nothing', async () => {
      const hostile = net.connect(node().port, '127.0.0.1');
      await new Promise((resolve) => hostile.once('connect', resolve));
      hostile.pause(); // never read, for now
      const requests = 200_000;
      const line = (i: number): string => `{"id":${i},"action":"check","lock_name":"bp","stale_ok":true}\n`;
      const chunk: string[] = [];
      for (let i = 1; i <= requests; i++) chunk.push(line(i));
      hostile.write(chunk.join(''));
      // Wait until the node stops taking our bytes (no change for a second), or 15 s.
      for (let last = -1, same = 0, waited = 0; same < 4 && waited < 15000; waited += 250) {
        await sleep(250);
        same = hostile.writableLength === last ? same + 1 : 0;
        last = hostile.writableLength;
      }
      // The node stopped reading: most of what we wrote is still queued on our side. (Without
      // backpressure it would have read everything and buffered the answers itself.)
      expect(hostile.writableLength, 'bytes the node left unread').to.be.above(2 * 1024 * 1024);
      const other = await connectRaw(node().port);
      const started = Date.now();
      expect(await other.request({ action: 'status' }, 10000)).to.include({ ok: true });
      expect(Date.now() - started).to.be.below(5000);
      other.close();
      // Now read: every request gets its answer.
      let answers = 0;
      let buffered = '';
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${answers} of ${requests} answers`)), 25000);
        hostile.setEncoding('utf8');
        hostile.on('data', (text: string) => {
          buffered += text;
          const lines = buffered.split('\n');
          buffered = lines.pop() ?? '';
          answers += lines.length;
          if (answers >= requests) {
            clearTimeout(timer);
            resolve();
          }
        });
        hostile.resume();
      });
      expect(answers).to.equal(requests);
      hostile.destroy();
    });

    it('cuts off a client that pipelines reads of a large file and never reads, and stays up', async () => {
      // 4096 reads of a 1 MiB file answered in one turn are 4 GiB of answers: the node must cut
      // the client off as its queue passes the bound, not build them all (and fall over).
      const part = 'x'.repeat(60000);
      const { owner, file } = await bigFile(part, Math.ceil((1024 * 1024) / part.length));
      const hostile = net.connect(node().port, '127.0.0.1');
      await new Promise((resolve) => hostile.once('connect', resolve));
      hostile.pause(); // never read
      hostile.on('error', () => undefined);
      hostile.write(pipelinedReads(file, 4096).join(''));
      expect(await closedWithin(hostile, 15000), 'the node cut the client off').to.equal(true);
      expect(node().exited, 'the node is still running').to.equal(false);
      expect(await owner.request({ action: 'status' }, 10000)).to.include({ ok: true });
      expect(node().logs().some((entry) => entry['event'] === 'client_cut_off')).to.equal(true);
      owner.close();
    });

    it('delivers every answer to a client that pipelines many large reads and reads them', async () => {
      // Answers are encoded as the client takes them, a megabyte ahead: all of them must still
      // arrive, in order, whether the socket asks for more with 'drain' or took everything.
      const { owner, file } = await bigFile('y'.repeat(50000), 6);
      owner.close();
      const reader = net.connect(node().port, '127.0.0.1');
      await new Promise((resolve) => reader.once('connect', resolve));
      const reads = 300;
      const lines = pipelinedReads(file, reads);
      lines.push(`{"id":"last","action":"status"}\n`);
      reader.write(lines.join(''));
      const ids: unknown[] = [];
      let buffered = '';
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${ids.length} answers`)), 30000);
        reader.setEncoding('utf8');
        reader.on('data', (text: string) => {
          buffered += text;
          const parts = buffered.split('\n');
          buffered = parts.pop() ?? '';
          for (const line of parts) {
            const answer = JSON.parse(line) as { id: unknown; ok: boolean; data?: string };
            expect(answer.ok).to.equal(true);
            if (answer.id !== 'last') expect(answer.data?.length).to.equal(300000);
            ids.push(answer.id);
          }
          if (ids.length === reads + 1) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      expect(ids.filter((id) => id !== 'last').sort((a, b) => Number(a) - Number(b))).to.deep.equal(Array.from({ length: reads }, (_, i) => i + 1));
      reader.destroy();
    });
  });

  describe('silent connections', () => {
    const sockets: net.Socket[] = [];
    after(() => {
      for (const s of sockets.splice(0)) s.destroy();
    });
    const node = nodeForSuite();

    it('serves a new client while more than 1024 connections stay silent, closing the oldest silent ones', async () => {
      // Sockets that have not sent a line are bounded at 1024 (they may still turn out to be
      // peers); past that the oldest makes room, so silence cannot lock newcomers out.
      const closed: boolean[] = [];
      for (let batch = 0; batch < 11; batch++) {
        await Promise.all(Array.from({ length: 100 }, () => new Promise<void>((resolve) => {
          const i = closed.push(false) - 1;
          const s = net.connect(node().port, '127.0.0.1');
          sockets.push(s);
          s.on('error', () => undefined);
          s.once('connect', () => resolve());
          s.once('close', () => {
            closed[i] = true;
            resolve();
          });
        })));
      }
      const client = await connectRaw(node().port);
      expect(await client.request({ action: 'status' }, 5000)).to.include({ ok: true });
      client.close();
      await waitFor(async () => closed.filter(Boolean).length, (n) => n >= 1100 - 1024, 5000);
      expect(closed.slice(0, 50).every(Boolean), 'the oldest silent sockets were closed').to.equal(true);
      expect(closed.slice(-50).some(Boolean), 'the newest silent sockets stay').to.equal(false);
    });
  });

  describe('bounds of the replicated state, over the wire', () => {
    const node = nodeForSuite({
      args: ['--max-waiters-per-lock', '1', '--max-file-bytes', '8', '--max-sessions', '3', '--max-locks-per-session', '2'],
    });
    const raw = rawClientPool(() => node().port);

    it('answers limit_exceeded for waiters, file bytes, sessions and locks per session, and nothing changes', async () => {
      const [a, b, c] = [await raw(), await raw(), await raw()];
      const ids = [randomUUID(), randomUUID(), randomUUID()] as const;
      const lock = `lim-${randomUUID()}`;
      const take = await a.request({ action: 'preempt', lock_name: lock, client_id: ids[0] });
      const token = take['token'] as number;
      const queued = b.request({ action: 'acquire', lock_name: lock, client_id: ids[1] });
      await sleep(200);
      const refused = await c.request({ action: 'acquire', lock_name: lock, client_id: ids[2] });
      expect(errorOf(refused)).to.include({ code: 'limit_exceeded' });
      expect(await a.request({ action: 'check', lock_name: lock })).to.include({ waiters: 1 });
      const big = await a.request({ action: 'append', lock_name: lock, client_id: ids[0], token, file: lock, data: '123456789' });
      expect(errorOf(big).code).to.equal('limit_exceeded');
      expect(await a.request({ action: 'read', file: lock })).to.include({ data: '' });
      const d = await raw();
      const fourth = await d.request({ action: 'hello', client_id: randomUUID() });
      expect(errorOf(fourth)).to.include({ code: 'limit_exceeded' });
      expect(await a.request({ action: 'preempt', lock_name: `${lock}-2`, client_id: ids[0] })).to.include({ ok: true });
      const third = await a.request({ action: 'preempt', lock_name: `${lock}-3`, client_id: ids[0] });
      expect(errorOf(third).message).to.match(/holds or waits for 2 locks/);
      expect(await a.request({ action: 'release', lock_name: lock, client_id: ids[0] })).to.include({ ok: true });
      expect(await queued).to.include({ ok: true, owner: ids[1] });
    });
  });
});
