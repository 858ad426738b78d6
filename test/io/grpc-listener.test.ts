// The gRPC front door against a node the test drives by hand: these tests pin the translation
// (messages -> validated requests, answers -> replies and statuses, every contract code), the
// connection model (connectionless calls, Session streams and the calls routed through them)
// and the lifecycle (deadlines, cancellation, close). The real node is in test/e2e/grpc.test.ts.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { expect } from 'chai';
import type { Answer } from '../../lib/protocol/answers';
import { errorCodes, type ErrorCode } from '../../lib/protocol/errors';
import { requestSchemas, validateRequest, type Request, type RequestId } from '../../lib/protocol/schemas';
import type { ClientConnection, ConnectionHandle, PushEvent, RequestSink, StatusInfo } from '../../lib/io/front-door';
import { grpcStatusByCode, protoLoaderOptions, protoPath, unaryActions } from '../../lib/io/grpc-codec';
import { startGrpcListener, type GrpcListener, type GrpcTlsConfig } from '../../lib/io/grpc-listener';
import { silentLogger } from '../../lib/io/logger';
import { Metrics } from '../../lib/io/metrics';
import { call, newLocksClient, SessionCall, type LocksClient } from '../helpers/grpc-client';

/** One connection the listener opened: what it sent, and whether it closed. */
class Opened implements ConnectionHandle {
  readonly bound = false;
  readonly requests: Request[] = [];
  closes = 0;
  constructor(readonly connection: ClientConnection) {}

  request(request: Request): void {
    this.requests.push(request);
  }

  close(): void {
    this.closes += 1;
  }

  /** Answers the latest request (or the one with `id`). */
  reply(answer: Answer, id: RequestId = this.last().id): void {
    this.connection.answer(id, answer);
  }

  last(): Request {
    const request = this.requests[this.requests.length - 1];
    if (request === undefined) throw new Error('no request on this connection');
    return request;
  }
}

/** A node that answers nothing by itself; `onRequest` lets a test answer at once. */
class ManualSink implements RequestSink {
  serving = true;
  readonly opened: Opened[] = [];
  onRequest: ((opened: Opened, request: Request) => void) | null = null;

  open(connection: ClientConnection): ConnectionHandle {
    const opened = new Opened(connection);
    this.opened.push(opened);
    const sink = this;
    return {
      bound: false,
      request(request: Request): void {
        opened.request(request);
        sink.onRequest?.(opened, request);
      },
      close: () => opened.close(),
    };
  }

  status(): StatusInfo {
    return { node: 'n1', role: 'leader', term: 1, leader: 'n1', commit_index: 1, members: ['n1'] };
  }

  authorize(): boolean {
    return true;
  }

  /** The nth connection opened (waits for it: the listener opens it asynchronously). */
  async nth(index: number): Promise<Opened> {
    await until(() => this.opened[index] !== undefined && this.opened[index].requests.length > 0);
    return this.opened[index] as Opened;
  }
}

async function until(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const grant = (request: Request, token = 7): Answer => ({
  ok: true, lock_name: (request as { lock_name: string }).lock_name, owner: (request as { client_id: string }).client_id, token,
});

describe('gRPC listener', function () {
  let sink: ManualSink;
  let listener: GrpcListener;
  let client: LocksClient;

  async function start(tls?: GrpcTlsConfig): Promise<void> {
    sink = new ManualSink();
    listener = await startGrpcListener({
      host: '127.0.0.1', port: 0, sink, metrics: new Metrics(), logger: silentLogger, ...(tls === undefined ? {} : { tls }),
    });
  }

  beforeEach(async () => {
    await start();
    client = newLocksClient(listener.address.port);
  });

  afterEach(async () => {
    client.close();
    await listener.close();
  });

  describe('translation', () => {
    it('the .proto request messages carry exactly the PROTOCOL §3 fields of their action', () => {
      const root = protoLoader.loadSync(protoPath(), protoLoaderOptions);
      const service = root['latchkey.v1.Locks'] as grpc.ServiceDefinition;
      for (const [method, action] of Object.entries(unaryActions)) {
        const type = (service[method] as unknown as { requestType: { type: { field: { name: string }[] } } }).requestType;
        const protoFields = type.type.field.map((f) => f.name).sort();
        const schema = requestSchemas[action] as { properties: Record<string, unknown> };
        const contractFields = Object.keys(schema.properties).filter((f) => f !== 'id' && f !== 'action').sort();
        expect(protoFields, method).to.deep.equal(contractFields);
      }
    });

    it('a request reaches the node as the validated request TCP would build, absent optionals absent', async () => {
      sink.onRequest = (opened, request) => opened.reply(grant(request));
      const plain = await call(client, 'Acquire', { lock_name: 'a/b', client_id: 'c1' });
      const zero = await call(client, 'Acquire', { lock_name: 'a/b', client_id: 'c1', timeout_ms: 0, lease_ms: 5, request_id: 'r1' });
      expect(plain).to.deep.equal({ ok: true, reply: { lock_name: 'a/b', owner: 'c1', token: 7 } });
      expect(zero.ok).to.equal(true);
      const [first, second] = sink.opened.map((o) => o.requests[0]);
      expect(first).to.deep.equal({ id: 0, action: 'acquire', lock_name: 'a/b', client_id: 'c1' });
      expect(second).to.deep.equal({ id: 0, action: 'acquire', lock_name: 'a/b', client_id: 'c1', timeout_ms: 0, lease_ms: 5, request_id: 'r1' });
      expect(validateRequest(second).ok).to.equal(true);
    });

    it('bad input is INVALID_ARGUMENT with the bad_request message TCP gives, and never reaches the node', async () => {
      const cases: [string, Record<string, unknown>, Record<string, unknown>][] = [
        ['Preempt', { lock_name: 'a/../b', client_id: 'c1' }, { action: 'preempt', lock_name: 'a/../b', client_id: 'c1' }],
        ['Release', { lock_name: 'x', client_id: '' }, { action: 'release', lock_name: 'x', client_id: '' }],
        ['Release', { lock_name: 'x', client_id: 'c1', token: 2 ** 60 }, { action: 'release', lock_name: 'x', client_id: 'c1', token: 2 ** 60 }],
        ['Hello', { client_id: 'c1', ttl_ms: 5 }, { action: 'hello', client_id: 'c1', ttl_ms: 5 }],
      ];
      for (const [method, request, tcpLine] of cases) {
        const result = await call(client, method, request);
        const tcp = validateRequest({ id: 1, ...tcpLine });
        expect(tcp.ok, method).to.equal(false);
        expect(result, method).to.deep.include({ ok: false, status: grpc.status.INVALID_ARGUMENT, code: 'bad_request' });
        expect((result as { details: string }).details).to.equal(`bad_request: ${(tcp as { message: string }).message}`);
      }
      expect(sink.opened).to.have.length(0);
    });

    it('every contract error code maps to its gRPC status, with the code in the metadata and the message', async () => {
      sink.onRequest = (opened, request) => {
        const code = (request as { lock_name: string }).lock_name as ErrorCode;
        opened.reply({ ok: false, error: { code, message: `fake ${code}`, ...(code === 'lock_held' ? { owner: 'c9' } : {}) } });
      };
      const expected: Record<ErrorCode, grpc.status> = {
        bad_request: grpc.status.INVALID_ARGUMENT, frame_too_large: grpc.status.RESOURCE_EXHAUSTED,
        lock_held: grpc.status.FAILED_PRECONDITION, not_owner: grpc.status.PERMISSION_DENIED,
        stale_token: grpc.status.PERMISSION_DENIED, timeout: grpc.status.DEADLINE_EXCEEDED,
        client_mismatch: grpc.status.FAILED_PRECONDITION, unauthorized: grpc.status.UNAUTHENTICATED,
        unavailable: grpc.status.UNAVAILABLE, limit_exceeded: grpc.status.RESOURCE_EXHAUSTED,
        shutting_down: grpc.status.UNAVAILABLE, internal: grpc.status.INTERNAL,
      };
      expect(grpcStatusByCode).to.deep.equal(expected);
      for (const code of errorCodes) {
        const result = await call(client, 'Release', { lock_name: code, client_id: 'c1' });
        expect(result, code).to.deep.equal({
          ok: false, status: expected[code], code, owner: code === 'lock_held' ? 'c9' : undefined, details: `${code}: fake ${code}`,
        });
      }
    });

    it('Check with a free lock leaves owner and token unset; Status answers the node status', async () => {
      sink.onRequest = (opened, request) => opened.reply(request.action === 'status'
        ? { ok: true, ...sink.status() }
        : { ok: true, lock_name: 'free', owner: null, token: null, waiters: 0 });
      expect(await call(client, 'Check', { lock_name: 'free', stale_ok: true })).to.deep.equal({ ok: true, reply: { lock_name: 'free', waiters: 0 } });
      expect(sink.opened[0]?.requests[0]).to.deep.equal({ id: 0, action: 'check', lock_name: 'free', stale_ok: true });
      expect(await call(client, 'Status', {})).to.deep.equal({
        ok: true, reply: { node: 'n1', role: 'leader', term: 1, leader: 'n1', commit_index: 1, members: ['n1'] },
      });
    });

    it('a request message over 65536 bytes is refused with RESOURCE_EXHAUSTED before the node sees it', async () => {
      const result = await call(client, 'Append', { file: 'f', data: 'x'.repeat(70000), lock_name: 'l', token: 1, client_id: 'c1' });
      expect(result).to.deep.include({ ok: false, status: grpc.status.RESOURCE_EXHAUSTED });
      expect(sink.opened).to.have.length(0);
    });

    it('the bearer token of the authorization metadata reaches the node on the connection', async () => {
      sink.onRequest = (opened, request) => opened.reply(grant(request));
      await call(client, 'Preempt', { lock_name: 'l', client_id: 'c1' }, { bearer: 's3cret' });
      await call(client, 'Preempt', { lock_name: 'l', client_id: 'c1' });
      expect(sink.opened.map((o) => o.connection.bearer)).to.deep.equal(['s3cret', undefined]);
    });
  });

  describe('connectionless calls', () => {
    it('each unary call is a grpc-call connection of its own, closed once after its answer', async () => {
      sink.onRequest = (opened, request) => opened.reply(grant(request));
      await call(client, 'Preempt', { lock_name: 'l', client_id: 'c1' });
      await call(client, 'Preempt', { lock_name: 'l', client_id: 'c1' });
      await until(() => sink.opened.every((o) => o.closes === 1));
      expect(sink.opened.map((o) => [o.connection.kind, o.closes])).to.deep.equal([['grpc-call', 1], ['grpc-call', 1]]);
    });

    it('a deadline on Acquire becomes timeout_ms, a little short of it; the smaller of the two wins', async () => {
      void call(client, 'Acquire', { lock_name: 'l', client_id: 'c1' }, { deadlineMs: 2000 });
      void call(client, 'Acquire', { lock_name: 'l', client_id: 'c1', timeout_ms: 500 }, { deadlineMs: 2000 });
      void call(client, 'Acquire', { lock_name: 'l', client_id: 'c1', timeout_ms: 5000 }, { deadlineMs: 60000 });
      void call(client, 'Check', { lock_name: 'l' }, { deadlineMs: 2000 });
      const requests = await Promise.all([0, 1, 2, 3].map(async (i) => (await sink.nth(i)).requests[0] as unknown as Record<string, unknown>));
      const byDeadline = requests.find((r) => r['action'] === 'acquire' && r['timeout_ms'] !== 500 && r['timeout_ms'] !== 5000);
      expect(byDeadline?.['timeout_ms']).to.be.within(1500, 1800);
      expect(requests.filter((r) => r['timeout_ms'] === 500)).to.have.length(1);
      expect(requests.filter((r) => r['timeout_ms'] === 5000)).to.have.length(1);
      expect(requests.find((r) => r['action'] === 'check')).to.not.have.property('timeout_ms');
    });

    it('the node timing out an Acquire is DEADLINE_EXCEEDED with latchkey-error-code timeout', async () => {
      sink.onRequest = (opened) => setTimeout(() => opened.reply({ ok: false, error: { code: 'timeout', message: 'l is held' } }), 20);
      const result = await call(client, 'Acquire', { lock_name: 'l', client_id: 'c1' }, { deadlineMs: 1000 });
      expect(result).to.deep.include({ ok: false, status: grpc.status.DEADLINE_EXCEEDED, code: 'timeout' });
    });

    it('a cancelled call closes its connection, so the node forgets it', async () => {
      let cancel!: () => void;
      const cancelled = new Promise<void>((resolve) => { cancel = resolve; });
      const result = call(client, 'Acquire', { lock_name: 'l', client_id: 'c1', request_id: 'r1' }, { cancelWhen: cancelled });
      const opened = await sink.nth(0);
      expect(opened.closes).to.equal(0);
      cancel();
      expect(await result).to.deep.include({ ok: false, status: grpc.status.CANCELLED });
      await until(() => opened.closes === 1);
    });

    it('a cancelled Acquire without request_id that is granted later is released with its token', async () => {
      let cancel!: () => void;
      const cancelled = new Promise<void>((resolve) => { cancel = resolve; });
      const result = call(client, 'Acquire', { lock_name: 'l', client_id: 'c1' }, { cancelWhen: cancelled });
      const opened = await sink.nth(0);
      cancel();
      await result;
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(opened.closes, 'kept open to see the grant').to.equal(0);
      opened.reply(grant(opened.last(), 41));
      await until(() => opened.closes === 1);
      expect(opened.requests.map((r) => r.action)).to.deep.equal(['acquire', 'release']);
      expect(opened.last()).to.deep.include({ action: 'release', client_id: 'c1', lock_name: 'l', token: 41 });
    });

    it('close() answers calls still waiting with shutting_down (UNAVAILABLE)', async () => {
      const result = call(client, 'Acquire', { lock_name: 'l', client_id: 'c1' });
      await sink.nth(0);
      await listener.close();
      expect(await result).to.deep.include({ ok: false, status: grpc.status.UNAVAILABLE, code: 'shutting_down' });
    });
  });

  describe('Session streams', () => {
    /** Opens a stream whose hello the fake node answers with `secret`. */
    async function openStream(secret = 'secret-1', bearer?: string): Promise<{ stream: SessionCall; opened: Opened }> {
      const stream = new SessionCall(client, { client_id: 'c1', grace_ms: 0 }, bearer === undefined ? {} : { bearer });
      const opened = await sink.nth(0);
      expect(opened.requests[0]).to.deep.equal({ id: 0, action: 'hello', client_id: 'c1', grace_ms: 0 });
      opened.reply({ ok: true, client_id: 'c1', node: 'n1', leader: null, ttl_ms: 10000, resume_token: secret }, 0);
      expect(await stream.hello()).to.deep.equal({ client_id: 'c1', node: 'n1', ttl_ms: 10000, resume_token: secret });
      return { stream, opened };
    }

    it('is one grpc connection: the hello, then the calls that carry its secret, then lost events', async () => {
      const { stream, opened } = await openStream();
      sink.onRequest = (o, request) => { if (request.action === 'preempt') o.reply(grant(request, 3)); };
      const result = await call(client, 'Preempt', { lock_name: 'l', client_id: 'c1' }, { session: 'secret-1' });
      expect(result).to.deep.equal({ ok: true, reply: { lock_name: 'l', owner: 'c1', token: 3 } });
      expect(sink.opened).to.have.length(1);
      expect(opened.connection.kind).to.equal('grpc');
      expect(opened.requests.map((r) => [r.id, r.action])).to.deep.equal([[0, 'hello'], [1, 'preempt']]);
      opened.connection.push({ event: 'lost', lock_name: 'l', token: 3, reason: 'lease_expired' } satisfies PushEvent);
      expect(await stream.next()).to.deep.equal({ lost: { lock_name: 'l', token: 3, reason: 'lease_expired' } });
      stream.cancel();
    });

    it('a call with a secret no stream here has, or with another authorization, never reaches the node', async () => {
      const { stream, opened } = await openStream('secret-1', 'tok');
      const wrong = await call(client, 'Release', { lock_name: 'l', client_id: 'c1' }, { session: 'secret-2', bearer: 'tok' });
      const noBearer = await call(client, 'Release', { lock_name: 'l', client_id: 'c1' }, { session: 'secret-1' });
      expect(wrong).to.deep.include({ ok: false, status: grpc.status.FAILED_PRECONDITION, code: 'client_mismatch' });
      expect(noBearer).to.deep.include({ ok: false, status: grpc.status.UNAUTHENTICATED, code: 'unauthorized' });
      expect(opened.requests).to.have.length(1);
      expect(sink.opened).to.have.length(1);
      expect(opened.connection.bearer).to.equal('tok');
      stream.cancel();
    });

    it('cancelling the stream closes its connection; calls waiting on it get UNAVAILABLE', async () => {
      const { stream, opened } = await openStream();
      const waiting = call(client, 'Acquire', { lock_name: 'l', client_id: 'c1', request_id: 'r1' }, { session: 'secret-1' });
      await until(() => opened.requests.length === 2);
      stream.cancel();
      expect(await waiting).to.deep.include({ ok: false, status: grpc.status.UNAVAILABLE, code: 'unavailable' });
      await until(() => opened.closes === 1);
      expect(listener.streams()).to.equal(0);
      const after = await call(client, 'Release', { lock_name: 'l', client_id: 'c1' }, { session: 'secret-1' });
      expect(after).to.deep.include({ ok: false, code: 'client_mismatch' });
    });

    it('a refused hello ends the stream with its status', async () => {
      const stream = new SessionCall(client, { client_id: 'c1' });
      const opened = await sink.nth(0);
      opened.reply({ ok: false, error: { code: 'client_mismatch', message: 'live elsewhere' } }, 0);
      expect(await stream.done()).to.deep.include({ ok: false, status: grpc.status.FAILED_PRECONDITION, code: 'client_mismatch' });
      await until(() => opened.closes === 1);
    });

    it('a successful Bye through the stream ends it with OK', async () => {
      const { stream, opened } = await openStream();
      sink.onRequest = (o, request) => { if (request.action === 'bye') o.reply({ ok: true }); };
      expect(await call(client, 'Bye', { client_id: 'c1' }, { session: 'secret-1' })).to.deep.equal({ ok: true, reply: {} });
      expect(await stream.done()).to.deep.equal({ ok: true, reply: {} });
      await until(() => opened.closes === 1);
    });

    it('close() ends open streams with shutting_down', async () => {
      const { stream } = await openStream();
      await listener.close();
      expect(await stream.done()).to.deep.include({ ok: false, status: grpc.status.UNAVAILABLE, code: 'shutting_down' });
    });
  });

  describe('TLS', () => {
    let dir: string;
    let tls: GrpcTlsConfig;

    before(function () {
      dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-grpc-tls-'));
      const file = (name: string): string => path.join(dir, name);
      try {
        execFileSync('openssl', [
          'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
          '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', file('key.pem'), '-out', file('cert.pem'),
        ], { stdio: 'ignore' });
      } catch {
        this.skip(); // no openssl to make a certificate with
      }
      tls = { cert: readFileSync(file('cert.pem')), key: readFileSync(file('key.pem')), ca: readFileSync(file('cert.pem')) };
    });

    after(() => rmSync(dir, { recursive: true, force: true }));

    it('with a TLS config the port speaks TLS only', async () => {
      await listener.close();
      await start(tls);
      sink.onRequest = (opened, request) => opened.reply(grant(request));
      const secure = newLocksClient(listener.address.port, grpc.credentials.createSsl(tls.ca), 'localhost');
      const plain = newLocksClient(listener.address.port);
      try {
        expect(await call(secure, 'Preempt', { lock_name: 'l', client_id: 'c1' })).to.deep.equal({ ok: true, reply: { lock_name: 'l', owner: 'c1', token: 7 } });
        expect(await call(plain, 'Preempt', { lock_name: 'l', client_id: 'c1' }, { deadlineMs: 2000 })).to.deep.include({ ok: false, status: grpc.status.UNAVAILABLE });
      } finally {
        secure.close();
        plain.close();
      }
    });
  });
});
