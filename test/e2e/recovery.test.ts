// Restart recovery of a real node process (PROTOCOL §1: "a node restarted with the same --id and
// --data recovers everything it had acknowledged"; "SIGKILL loses nothing acknowledged").
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { Prng } from '../../lib/core/prng';
import { cleanupNodeProcesses, killAllNodeProcesses, makeTempDir, startNodeProcess, type NodeProcess } from '../helpers/node-process';
import { connectRaw, errorOf, sleep, waitFor, type Message, type RawClient } from '../helpers/raw-client';

describe('e2e: restart recovery', function () {
  this.timeout(30000);
  const clients: RawClient[] = [];
  const dirs: string[] = [];

  async function connect(node: NodeProcess): Promise<RawClient> {
    const c = await connectRaw(node.port);
    clients.push(c);
    return c;
  }

  async function freshDir(): Promise<string> {
    const dir = await makeTempDir('latchkey-recovery-');
    dirs.push(dir);
    return dir;
  }

  async function ok(c: RawClient, req: Record<string, unknown>): Promise<Message> {
    const a = await c.request(req);
    expect(a['ok'], `${JSON.stringify(req)} -> ${JSON.stringify(a)}`).to.equal(true);
    return a;
  }

  /** check and read answers without the per-connection id, for before/after comparison. */
  async function snapshot(c: RawClient, locks: string[], files: string[]): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    for (const l of locks) {
      const { id: _id, ...rest } = await ok(c, { action: 'check', lock_name: l });
      out[`lock:${l}`] = rest;
    }
    for (const f of files) {
      const { id: _id, ...rest } = await ok(c, { action: 'read', file: f });
      out[`file:${f}`] = rest;
    }
    return out;
  }

  async function killHard(node: NodeProcess): Promise<void> {
    node.kill('SIGKILL');
    const exit = await node.waitExit();
    expect(exit.signal).to.equal('SIGKILL');
  }

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await killAllNodeProcesses();
  });

  after(async () => {
    await cleanupNodeProcesses();
    for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true });
  });

  it('(a) kill -9 and restart: check and read answer exactly as before; the next token is larger', async () => {
    const dir = await freshDir();
    const n1 = await startNodeProcess({ dataDir: dir });
    const a = await connect(n1);
    const b = await connect(n1);
    const ca = randomUUID();
    const cb = randomUUID();
    const locks = ['alpha', 'beta/one', 'gamma:2', 'released-lock', 'never-used'];
    const files = ['alpha', 'dir/nested/file', 'unicode', 'empty-never-written'];
    const tokens: number[] = [];
    const grant = async (c: RawClient, client: string, lock: string): Promise<number> => {
      const g = await ok(c, { action: 'preempt', lock_name: lock, client_id: client });
      tokens.push(g['token'] as number);
      return g['token'] as number;
    };
    const resume = (await ok(a, { action: 'hello', client_id: ca }))['resume_token'] as string;
    const tAlpha = await grant(a, ca, 'alpha');
    const tBeta = await grant(a, ca, 'beta/one');
    const tGamma = await grant(b, cb, 'gamma:2');
    await grant(b, cb, 'released-lock');
    await ok(b, { action: 'release', lock_name: 'released-lock', client_id: cb });
    // b waits on alpha, so alpha has one waiter at the crash.
    b.send({ id: 'wait-alpha', action: 'acquire', lock_name: 'alpha', client_id: cb });
    await waitFor(() => ok(a, { action: 'check', lock_name: 'alpha' }), (x) => x['waiters'] === 1);
    await ok(a, { action: 'append', file: 'alpha', data: 'first;', lock_name: 'alpha', client_id: ca, token: tAlpha });
    await ok(a, { action: 'append', file: 'alpha', data: 'second;', lock_name: 'alpha', client_id: ca, token: tAlpha });
    await ok(a, { action: 'append', file: 'dir/nested/file', data: 'nested', lock_name: 'beta/one', client_id: ca, token: tBeta });
    const u = await ok(b, { action: 'append', file: 'unicode', data: 'héllo ✓ 😀 \u0000 "q" \\ \n', lock_name: 'gamma:2', client_id: cb, token: tGamma });
    expect(u['size']).to.equal(Buffer.byteLength('héllo ✓ 😀 \u0000 "q" \\ \n'));
    const before = await snapshot(a, locks, files);
    expect(before['lock:alpha']).to.deep.equal({ ok: true, lock_name: 'alpha', owner: ca, token: tAlpha, waiters: 1 });
    expect(before['file:alpha']).to.deep.equal({ ok: true, file: 'alpha', data: 'first;second;' });
    const statusBefore = await ok(a, { action: 'status' });

    await killHard(n1);
    const n2 = await startNodeProcess({ dataDir: dir });
    const c = await connect(n2);
    const after = await snapshot(c, locks, files);
    expect(after).to.deep.equal(before);
    const statusAfter = await ok(c, { action: 'status' });
    expect(statusAfter['commit_index']).to.be.at.least(statusBefore['commit_index'] as number);

    const cc = randomUUID();
    const next = await ok(c, { action: 'preempt', lock_name: 'fresh-after-restart', client_id: cc });
    expect(next['token']).to.be.greaterThan(Math.max(...tokens));
    // The lock released before the crash is free and its next grant is larger too.
    const again = await ok(c, { action: 'preempt', lock_name: 'released-lock', client_id: cc });
    expect(again['token']).to.be.greaterThan(next['token'] as number);
    // Old sessions live on: not usable without their resume token, resumable with it.
    const steal = await c.request({ action: 'release', lock_name: 'alpha', client_id: ca });
    expect(errorOf(steal).code).to.equal('client_mismatch');
    const d = await connect(n2);
    expect(await ok(d, { action: 'hello', client_id: ca, resume_token: resume })).to.include({ client_id: ca, resume_token: resume });
    expect(await ok(d, { action: 'append', file: 'alpha', data: 'third;', lock_name: 'alpha', client_id: ca, token: tAlpha })).to.include({ size: 19 });
    await ok(d, { action: 'release', lock_name: 'alpha', client_id: ca, token: tAlpha });
    // The waiter queued before the crash is next in line.
    const handed = await ok(d, { action: 'check', lock_name: 'alpha' });
    expect(handed).to.include({ owner: cb, waiters: 0 });
    expect(handed['token']).to.be.greaterThan(again['token'] as number);
  });

  it('(e) deadlines survive a restart: a lease and a silent session still expire', async () => {
    const dir = await freshDir();
    const args = ['--session-ttl-ms', '800'];
    const n1 = await startNodeProcess({ dataDir: dir, args });
    const a = await connect(n1);
    const b = await connect(n1);
    const ca = randomUUID();
    const cb = randomUUID();
    const tLease = (await ok(a, { action: 'preempt', lock_name: 'leased', client_id: ca, lease_ms: 700 }))['token'] as number;
    const tHeld = (await ok(b, { action: 'preempt', lock_name: 'held', client_id: cb }))['token'] as number;
    await killHard(n1);
    const n2 = await startNodeProcess({ dataDir: dir, args });
    const c = await connect(n2);
    expect(await ok(c, { action: 'check', lock_name: 'leased' })).to.include({ owner: ca, token: tLease });
    expect(await ok(c, { action: 'check', lock_name: 'held' })).to.include({ owner: cb, token: tHeld });
    await waitFor(() => ok(c, { action: 'check', lock_name: 'leased' }), (x) => x['owner'] === null, 5000);
    await waitFor(() => ok(c, { action: 'check', lock_name: 'held' }), (x) => x['owner'] === null, 5000);
    const t = (await ok(c, { action: 'preempt', lock_name: 'held', client_id: randomUUID() }))['token'] as number;
    expect(t).to.be.greaterThan(Math.max(tLease, tHeld));
  });

  it('(b) kill -9 mid-load: every acknowledged append is in its file exactly once, in order; tokens keep increasing', async () => {
    const dir = await freshDir();
    const n1 = await startNodeProcess({ dataDir: dir });
    const lockNames = ['load-A', 'load-B'];
    const fileOf = (lock: string): string => `load/${lock}`;
    /** Acknowledged appends per file, in acknowledgement order. */
    const acked = new Map<string, string[]>(lockNames.map((l) => [fileOf(l), []]));
    /** Appends sent and not answered. */
    const inFlight = new Set<string>();
    /** Acknowledged grants per lock, in acknowledgement order. */
    const grants = new Map<string, number[]>(lockNames.map((l) => [l, []]));
    let stopping = false;
    const prng = new Prng(7);

    const worker = async (w: number): Promise<number> => {
      const c = await connect(n1);
      const client = `worker-${w}-${randomUUID()}`;
      let ops = 0;
      let seq = 0;
      try {
        while (!stopping) {
          const lock = prng.pick(lockNames);
          const g = await c.request({ action: 'preempt', lock_name: lock, client_id: client });
          if (g['ok'] !== true) {
            expect(errorOf(g).code).to.equal('lock_held');
            await sleep(prng.int(0, 2));
            continue;
          }
          const token = g['token'] as number;
          grants.get(lock)!.push(token);
          const appends = prng.int(1, 3);
          for (let i = 0; i < appends; i++) {
            const data = `${w}.${++seq};`;
            inFlight.add(data);
            const a = await c.request({ action: 'append', file: fileOf(lock), data, lock_name: lock, client_id: client, token });
            expect(a['ok'], JSON.stringify(a)).to.equal(true);
            inFlight.delete(data);
            acked.get(fileOf(lock))!.push(data);
            ops++;
          }
          const r = await c.request({ action: 'release', lock_name: lock, client_id: client, token });
          expect(r['ok'], JSON.stringify(r)).to.equal(true);
        }
      } catch (err) {
        if (!c.isClosed) throw err;
      }
      return ops;
    };

    const workers = [0, 1, 2, 3].map((w) => worker(w));
    await sleep(1200);
    await killHard(n1);
    stopping = true;
    const ops = await Promise.all(workers);
    const total = ops.reduce((x, y) => x + y, 0);
    expect(total, 'the load made progress before the kill').to.be.greaterThan(20);
    for (const [lock, list] of grants) {
      for (let i = 1; i < list.length; i++) expect(list[i], `grants of ${lock}`).to.be.greaterThan(list[i - 1]!);
    }

    const n2 = await startNodeProcess({ dataDir: dir });
    const c = await connect(n2);
    for (const lock of lockNames) {
      const file = fileOf(lock);
      const data = (await ok(c, { action: 'read', file }))['data'] as string;
      const records = data.split(';').filter((x) => x !== '').map((x) => `${x};`);
      const want = acked.get(file)!;
      expect(new Set(records).size, `no record twice in ${file}`).to.equal(records.length);
      expect(records.slice(0, want.length), `acknowledged appends of ${file}, in order`).to.deep.equal(want);
      // At most the one append that was in flight at the kill follows them.
      const extra = records.slice(want.length);
      expect(extra.length).to.be.at.most(1);
      for (const x of extra) expect(inFlight.has(x), `unexpected record ${x}`).to.equal(true);
      const chk = await ok(c, { action: 'check', lock_name: lock });
      const lastGrant = Math.max(0, ...grants.get(lock)!);
      if (chk['owner'] !== null) expect(chk['token']).to.be.at.least(lastGrant);
    }
    const allTokens = [...grants.values()].flat();
    const fresh = await ok(c, { action: 'preempt', lock_name: 'after-load', client_id: randomUUID() });
    expect(fresh['token']).to.be.greaterThan(Math.max(...allTokens));
  });

  /** Walks the records of a segment: [offset, index] of each whole record, up to the end of the
   *  file or the zeros the log keeps ahead of its appends (a zero header). */
  function records(buf: Buffer): Array<{ offset: number; index: number; end: number }> {
    const out: Array<{ offset: number; index: number; end: number }> = [];
    let at = 0;
    while (at + 8 <= buf.length) {
      const body = buf.readUInt32LE(at);
      if (body === 0 || at + 8 + body > buf.length) break;
      const index = buf.readUInt32LE(at + 8) + buf.readUInt32LE(at + 12) * 0x100000000;
      out.push({ offset: at, index, end: at + 8 + body });
      at += 8 + body;
    }
    return out;
  }

  async function lastSegment(dir: string): Promise<string> {
    const names = (await fs.readdir(path.join(dir, 'log'))).filter((n) => n.endsWith('.seg')).sort();
    expect(names.length).to.be.greaterThan(0);
    return path.join(dir, 'log', names[names.length - 1]!);
  }

  const tornTails: Array<{ name: string; tail: (segment: Buffer) => Buffer }> = [
    {
      name: 'random garbage',
      tail: () => {
        const prng = new Prng(99);
        return Buffer.from(Array.from({ length: 37 }, () => prng.int(0, 255)));
      },
    },
    {
      name: 'a half record (whole header, short body)',
      tail: (segment) => {
        const rs = records(segment);
        const last = rs[rs.length - 1]!;
        const whole = segment.subarray(last.offset, last.end);
        return whole.subarray(0, Math.floor(whole.length / 2));
      },
    },
    {
      name: 'a short header',
      tail: () => Buffer.from([0x40, 0x00, 0x00]),
    },
    {
      name: 'a whole record with a bad crc',
      tail: (segment) => {
        const rs = records(segment);
        const last = rs[rs.length - 1]!;
        const copy = Buffer.from(segment.subarray(last.offset, last.end));
        copy.writeUInt32LE(last.index + 1, 8); // the next index, but the crc no longer matches
        return copy;
      },
    },
    {
      name: 'a whole record with a good crc that skips an index',
      tail: (segment) => {
        const rs = records(segment);
        const last = rs[rs.length - 1]!;
        const copy = Buffer.from(segment.subarray(last.offset, last.end));
        copy.writeUInt32LE(last.index + 2, 8);
        copy.writeUInt32LE(crc32(copy.subarray(8)), 4);
        return copy;
      },
    },
  ];

  for (const torn of tornTails) {
    it(`(c) a torn log tail (${torn.name}) is cut with a warning; acknowledged state intact`, async () => {
      const dir = await freshDir();
      const n1 = await startNodeProcess({ dataDir: dir });
      const a = await connect(n1);
      const ca = randomUUID();
      const t = (await ok(a, { action: 'preempt', lock_name: 'torn', client_id: ca }))['token'] as number;
      await ok(a, { action: 'append', file: 'torn/file', data: 'acknowledged-1;', lock_name: 'torn', client_id: ca, token: t });
      await ok(a, { action: 'append', file: 'torn/file', data: 'acknowledged-2;', lock_name: 'torn', client_id: ca, token: t });
      await ok(a, { action: 'release', lock_name: 'torn', client_id: ca, token: t });
      const before = await snapshot(a, ['torn'], ['torn/file']);
      await n1.stop();
      expect(n1.proc.exitCode).to.equal(0);

      const seg = await lastSegment(dir);
      const file = await fs.readFile(seg);
      const written = records(file);
      expect(written.length, 'the segment holds whole records').to.be.greaterThan(3);
      // The torn write lands right after the last record, over the zeros kept ahead (if any).
      const content = file.subarray(0, written[written.length - 1]!.end);
      const garbage = torn.tail(content);
      const handle = await fs.open(seg, 'r+');
      await handle.write(garbage, 0, garbage.length, content.length);
      await handle.close();

      const n2 = await startNodeProcess({ dataDir: dir });
      const warnings = n2.logs().filter((l) => l['level'] === 'warn');
      expect(warnings.map((l) => l['event']), n2.stderr()).to.include('disk_log_tail_cut');
      const c = await connect(n2);
      expect(await snapshot(c, ['torn'], ['torn/file'])).to.deep.equal(before);
      // It serves, and what it acknowledges now survives another crash (appended after the cut).
      const cc = randomUUID();
      const t2 = (await ok(c, { action: 'preempt', lock_name: 'torn', client_id: cc }))['token'] as number;
      expect(t2).to.be.greaterThan(t);
      await ok(c, { action: 'append', file: 'torn/file', data: 'after-cut;', lock_name: 'torn', client_id: cc, token: t2 });
      await killHard(n2);
      // The garbage is gone: the segment is the old records, then whole records written since.
      const after = await fs.readFile(seg);
      expect(after.subarray(0, content.length).equals(content), 'the records before the cut are untouched').to.equal(true);
      const rs = records(after);
      expect(after.subarray(rs[rs.length - 1]!.end).every((byte) => byte === 0), 'the segment ends on a whole record (then zeros)').to.equal(true);
      for (let i = 1; i < rs.length; i++) expect(rs[i]!.index, 'indexes follow each other').to.equal(rs[i - 1]!.index + 1);
      expect(rs.some((r) => r.offset === content.length) || after.length === content.length, 'a record starts right at the cut').to.equal(true);
      const n3 = await startNodeProcess({ dataDir: dir });
      expect(n3.logs().filter((l) => l['event'] === 'disk_log_tail_cut')).to.have.length(0);
      const d = await connect(n3);
      expect(await ok(d, { action: 'read', file: 'torn/file' })).to.include({ data: 'acknowledged-1;acknowledged-2;after-cut;' });
      expect(await ok(d, { action: 'check', lock_name: 'torn' })).to.include({ owner: cc, token: t2 });
    });
  }

  /** Appends `contents` under one lock and returns where each file is materialised. */
  async function writeFiles(a: RawClient, contents: Record<string, string>): Promise<void> {
    const ca = randomUUID();
    const t = (await ok(a, { action: 'preempt', lock_name: 'mat', client_id: ca }))['token'] as number;
    for (const [file, data] of Object.entries(contents)) {
      for (const part of data.split(';').filter((x) => x !== '')) {
        await ok(a, { action: 'append', file, data: `${part};`, lock_name: 'mat', client_id: ca, token: t });
      }
    }
  }

  const materialised = {
    plain: 'abc;def;',
    'with/slash/name': 'slashes;',
    'uni.code': 'ünï ✓ 😀;',
  };
  const onDisk = (dir: string, name: string): string => path.join(dir, 'files', name.replace(/\//g, '%2F'));

  it('(d) files are materialised in DIR/files while running, with the contents of read', async () => {
    const dir = await freshDir();
    const n1 = await startNodeProcess({ dataDir: dir });
    const a = await connect(n1);
    await writeFiles(a, materialised);
    for (const [file, data] of Object.entries(materialised)) {
      expect(await ok(a, { action: 'read', file })).to.include({ data });
      await waitFor(() => fs.readFile(onDisk(dir, file), 'utf8').catch(() => ''), (x) => x === data);
    }
  });

  it('(d) files are materialised in DIR/files after kill -9 and restart with the contents of read', async () => {
    const dir = await freshDir();
    const n1 = await startNodeProcess({ dataDir: dir });
    const a = await connect(n1);
    await writeFiles(a, { ...materialised, untouched: 'one;two;' });
    for (const file of Object.keys(materialised)) {
      await waitFor(() => fs.readFile(onDisk(dir, file), 'utf8').catch(() => ''), (x) => x === (materialised as Record<string, string>)[file]);
    }
    await killHard(n1);
    // Damage some copies: they are rebuilt from the replicated state at start-up.
    await fs.writeFile(onDisk(dir, 'plain'), 'garbage that is not the file');
    await fs.rm(onDisk(dir, 'with/slash/name'));
    await fs.truncate(onDisk(dir, 'uni.code'), 2);
    for (let restart = 0; restart < 2; restart++) {
      const n = await startNodeProcess({ dataDir: dir });
      const c = await connect(n);
      for (const [file, data] of Object.entries({ ...materialised, untouched: 'one;two;' })) {
        const read = (await ok(c, { action: 'read', file }))['data'];
        expect(read).to.equal(data);
        await waitFor(() => fs.readFile(onDisk(dir, file), 'utf8').catch(() => ''), (x) => x === read, 2000)
          .catch(() => undefined);
        expect(await fs.readFile(onDisk(dir, file), 'utf8'), `${file} after restart ${restart + 1}`).to.equal(read);
      }
      const names = (await fs.readdir(path.join(dir, 'files'))).filter((x) => !x.startsWith('.')).sort();
      expect(names).to.deep.equal(['plain', 'uni.code', 'untouched', 'with%2Fslash%2Fname']);
      if (restart === 0) await killHard(n);
      else await n.stop();
    }
  });
});
