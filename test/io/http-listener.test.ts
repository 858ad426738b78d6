// The HTTP front door (PROTOCOL §6) against a fake node: the tests pin the translation between
// HTTP and the contract (paths, status codes, bodies, the id-less reply) and the exchange
// lifecycle (one connection per POST, closed exactly once, also when the client hangs up).
import http from 'node:http';
import { expect } from 'chai';
import { startHttpListener, type HttpListener } from '../../lib/io/http-listener';
import { Metrics } from '../../lib/io/metrics';
import { silentLogger } from '../../lib/io/logger';
import { errorCodes, isErrorCode, type ErrorCode } from '../../lib/protocol/errors';
import type { Request } from '../../lib/protocol/schemas';
import type {
  ClientConnection, ConnectionHandle, RequestSink, StatusInfo,
} from '../../lib/io/front-door';

const fixedStatus: StatusInfo = {
  node: 'n1', role: 'leader', term: 3, leader: 'n1', commit_index: 42, members: ['n1', 'n2', 'n3'],
};

class FakeHandle implements ConnectionHandle {
  readonly bound = false;
  readonly requests: Request[] = [];
  closes = 0;
  constructor(readonly connection: ClientConnection) {}

  request(request: Request): void {
    this.requests.push(request);
    respond(this.connection, request);
  }

  close(): void {
    this.closes += 1;
  }
}

class FakeSink implements RequestSink {
  serving = true;
  readonly handles: FakeHandle[] = [];

  open(connection: ClientConnection): ConnectionHandle {
    const handle = new FakeHandle(connection);
    this.handles.push(handle);
    return handle;
  }

  status(): StatusInfo {
    return fixedStatus;
  }

  /** Set to require a token, as `--auth-token-file` does. */
  token: string | null = null;

  authorize(bearer: string | undefined): boolean {
    return this.token === null || bearer === this.token;
  }

  last(): FakeHandle {
    const handle = this.handles[this.handles.length - 1];
    if (handle === undefined) throw new Error('the sink saw no connection');
    return handle;
  }
}

/** The fake node: preempt answers at once, check answers a tick later, release answers the
 *  error named by its lock, acquire never answers by itself, keepalive throws. */
function respond(connection: ClientConnection, request: Request): void {
  switch (request.action) {
    case 'preempt':
      connection.answer(request.id, { ok: true, lock_name: request.lock_name, owner: request.client_id, token: 7 });
      return;
    case 'check':
      setImmediate(() => connection.answer(request.id, {
        ok: true, lock_name: request.lock_name, owner: null, token: null, waiters: 0,
      }));
      return;
    case 'release': {
      const code: ErrorCode = isErrorCode(request.lock_name) ? request.lock_name : 'not_owner';
      connection.answer(request.id, { ok: false, error: { code, message: `fake ${code}` } });
      return;
    }
    case 'acquire':
      connection.push({ event: 'lost', lock_name: request.lock_name, token: 1, reason: 'lease_expired' });
      return;
    case 'keepalive':
      throw new Error('the fake node broke');
    case 'status':
      connection.answer(request.id, { ok: true, ...fixedStatus });
      return;
    default:
      connection.answer(request.id, { ok: false, error: { code: 'internal', message: 'not faked' } });
  }
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: Record<string, unknown>;
}

function send(
  address: { host: string; port: number }, method: string, path: string, body?: string | Buffer,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: address.host, port: address.port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: Record<string, unknown> = {};
        try { json = JSON.parse(text) as Record<string, unknown>; } catch { /* not JSON: tests read text */ }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function waitFor(condition: () => boolean, what: string, waitMs = 2000): Promise<void> {
  const deadline = Date.now() + waitMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function errorOf(reply: Reply): { code: string; message: string } {
  return reply.json['error'] as { code: string; message: string };
}

describe('http listener', () => {
  let sink: FakeSink;
  let metrics: Metrics;
  let listener: HttpListener;
  const post = (action: string, body: unknown): Promise<Reply> =>
    send(listener.address, 'POST', `/v1/${action}`, JSON.stringify(body), { 'content-type': 'application/json' });

  beforeEach(async () => {
    sink = new FakeSink();
    metrics = new Metrics();
    listener = await startHttpListener({ host: '127.0.0.1', port: 0, sink, metrics, logger: silentLogger });
  });

  afterEach(async () => {
    await listener.close();
  });

  it('listens on the port it reports', () => {
    expect(listener.address.host).to.equal('127.0.0.1');
    expect(listener.address.port).to.be.greaterThan(0);
  });

  it('answers a POST with the answer less id, one http connection per exchange, closed after', async () => {
    const reply = await post('preempt', { lock_name: 'L', client_id: 'c1' });
    expect(reply.status).to.equal(200);
    expect(reply.headers['content-type']).to.match(/^application\/json/);
    expect(reply.json).to.deep.equal({ ok: true, lock_name: 'L', owner: 'c1', token: 7 });
    expect(sink.handles).to.have.length(1);
    const handle = sink.last();
    expect(handle.connection.kind).to.equal('http');
    expect(handle.requests).to.deep.equal([{ id: 0, action: 'preempt', lock_name: 'L', client_id: 'c1' }]);
    await waitFor(() => handle.closes > 0, 'handle.close()');
    expect(handle.closes).to.equal(1);
  });

  it('waits for an answer that comes later, dropping pushed events', async () => {
    const pending = post('acquire', { lock_name: 'L', client_id: 'c1', timeout_ms: 1000 });
    await waitFor(() => sink.handles.length === 1 && sink.last().requests.length === 1, 'the acquire');
    const handle = sink.last();
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(handle.closes).to.equal(0);
    handle.connection.answer(0, { ok: true, lock_name: 'L', owner: 'c1', token: 9 });
    const reply = await pending;
    expect(reply.status).to.equal(200);
    expect(reply.json).to.deep.equal({ ok: true, lock_name: 'L', owner: 'c1', token: 9 });
    await waitFor(() => handle.closes === 1, 'handle.close()');
  });

  it('answers a check that the node answers asynchronously', async () => {
    const reply = await post('check', { lock_name: 'L' });
    expect(reply.status).to.equal(200);
    expect(reply.json).to.deep.equal({ ok: true, lock_name: 'L', owner: null, token: null, waiters: 0 });
  });

  it('maps every contract error code to its HTTP status, with the JSON answer as body', async () => {
    const expected: Record<ErrorCode, number> = {
      bad_request: 400, frame_too_large: 413, unauthorized: 401, not_owner: 403, stale_token: 403,
      lock_held: 409, client_mismatch: 409, timeout: 504, limit_exceeded: 429, unavailable: 503,
      shutting_down: 503, internal: 500,
    };
    for (const code of errorCodes) {
      expect(expected[code], `a status chosen for ${code}`).to.be.a('number');
      const reply = await post('release', { lock_name: code, client_id: 'c1' });
      expect(reply.status, code).to.equal(expected[code]);
      expect(reply.json, code).to.deep.equal({ ok: false, error: { code, message: `fake ${code}` } });
    }
  });

  it('answers 500 internal when the node throws, and still closes the handle', async () => {
    const reply = await post('keepalive', { client_id: 'c1' });
    expect(reply.status).to.equal(500);
    expect(errorOf(reply).code).to.equal('internal');
    await waitFor(() => sink.last().closes === 1, 'handle.close()');
  });

  it('takes the action from the path and tolerates a TCP-style id in the body', async () => {
    const reply = await post('preempt', { id: 'x1', action: 'release', lock_name: 'L', client_id: 'c1' });
    expect(reply.status).to.equal(200);
    expect(reply.json).to.not.have.property('id');
    expect(sink.last().requests[0]).to.deep.equal({ id: 0, action: 'preempt', lock_name: 'L', client_id: 'c1' });
  });

  it('rejects an id that is neither a number nor a string', async () => {
    const reply = await post('preempt', { id: { n: 1 }, lock_name: 'L', client_id: 'c1' });
    expect(reply.status).to.equal(400);
    expect(errorOf(reply).code).to.equal('bad_request');
    expect(errorOf(reply).message).to.contain("'id'");
    expect(sink.handles).to.have.length(0);
  });

  it('answers invalid JSON, a non-object body and non-UTF-8 bytes with 400 bad_request', async () => {
    const cases: Array<[string | Buffer, string]> = [
      ['{"lock_name":', 'JSON'], ['[1,2]', 'object'], ['"L"', 'object'], ['null', 'object'],
      [Buffer.concat([Buffer.from('{"lock_name":"L'), Buffer.from([0xff]), Buffer.from('"}')]), 'UTF-8'],
    ];
    for (const [body, reason] of cases) {
      const reply = await send(listener.address, 'POST', '/v1/check', body);
      expect(reply.status, String(body)).to.equal(400);
      expect(reply.json, String(body)).to.deep.equal({ ok: false, error: errorOf(reply) });
      expect(errorOf(reply).code, String(body)).to.equal('bad_request');
      expect(errorOf(reply).message, String(body)).to.contain(reason);
    }
    expect(sink.handles).to.have.length(0);
  });

  it('names the offending field of a schema violation', async () => {
    const cases: Array<[string, unknown, string]> = [
      ['preempt', { client_id: 'c1' }, 'lock_name'],
      ['preempt', { lock_name: 'L', client_id: 'c1', colour: 'red' }, 'colour'],
      ['acquire', { lock_name: 'L', client_id: 'c1', timeout_ms: 'soon' }, 'timeout_ms'],
      ['check', { lock_name: 'a/../b' }, 'lock_name'],
      ['append', { file: 'f', data: 'x', lock_name: 'L', client_id: 'c1', token: 0 }, 'token'],
    ];
    for (const [action, body, field] of cases) {
      const reply = await post(action, body);
      expect(reply.status, field).to.equal(400);
      expect(errorOf(reply).code, field).to.equal('bad_request');
      expect(errorOf(reply).message, field).to.contain(field);
    }
    expect(sink.handles).to.have.length(0);
  });

  it('treats an empty body as {} (POST /v1/status with no body reaches the node)', async () => {
    const reply = await send(listener.address, 'POST', '/v1/status');
    expect(reply.status).to.equal(200);
    expect(reply.json).to.deep.equal({ ok: true, ...fixedStatus });
    expect(sink.last().requests[0]).to.deep.equal({ id: 0, action: 'status' });
  });

  it('accepts a body of exactly 65536 bytes', async () => {
    const json = JSON.stringify({ lock_name: 'L', client_id: 'c1' });
    // The request sits at the end, so losing any byte near the bound breaks it.
    const body = ' '.repeat(65536 - json.length) + json;
    expect(Buffer.byteLength(body)).to.equal(65536);
    const reply = await send(listener.address, 'POST', '/v1/preempt', body);
    expect(reply.status).to.equal(200);
    expect(reply.json).to.deep.equal({ ok: true, lock_name: 'L', owner: 'c1', token: 7 });
  });

  it('answers 413 frame_too_large for a body over 65536 bytes, declared or chunked', async () => {
    const json = JSON.stringify({ lock_name: 'L', client_id: 'c1' });
    const body = json + ' '.repeat(65537 - json.length);
    const declared = await send(listener.address, 'POST', '/v1/preempt', body);
    expect(declared.status).to.equal(413);
    expect(errorOf(declared).code).to.equal('frame_too_large');
    expect(declared.headers['connection']).to.equal('close');
    const chunked = await send(listener.address, 'POST', '/v1/preempt', body, { 'transfer-encoding': 'chunked' });
    expect(chunked.status).to.equal(413);
    expect(errorOf(chunked).code).to.equal('frame_too_large');
    expect(sink.handles).to.have.length(0);
  });

  it('answers 404 with a JSON bad_request for unknown paths and actions', async () => {
    for (const [method, path] of [['GET', '/'], ['POST', '/v1/nosuch'], ['POST', '/v2/preempt'], ['GET', '/v1/']]) {
      const reply = await send(listener.address, method!, path!, method === 'POST' ? '{}' : undefined);
      expect(reply.status, path).to.equal(404);
      expect(errorOf(reply).code, path).to.equal('bad_request');
    }
    expect(sink.handles).to.have.length(0);
  });

  it('answers 405 with Allow for a known path and the wrong method', async () => {
    const cases: Array<[string, string, string]> = [
      ['GET', '/v1/preempt', 'POST'], ['PUT', '/v1/status', 'GET, POST'],
      ['POST', '/healthz', 'GET'], ['DELETE', '/metrics', 'GET'],
    ];
    for (const [method, path, allow] of cases) {
      const reply = await send(listener.address, method, path, method === 'GET' ? undefined : '{}');
      expect(reply.status, `${method} ${path}`).to.equal(405);
      expect(reply.headers['allow'], `${method} ${path}`).to.equal(allow);
      expect(errorOf(reply).code).to.equal('bad_request');
    }
    expect(sink.handles).to.have.length(0);
  });

  it('serves GET /v1/status from sink.status()', async () => {
    const reply = await send(listener.address, 'GET', '/v1/status?verbose=1');
    expect(reply.status).to.equal(200);
    expect(reply.json).to.deep.equal({ ok: true, ...fixedStatus });
    expect(sink.handles).to.have.length(0);
  });

  it('serves /healthz: 200 while serving, 503 after', async () => {
    const up = await send(listener.address, 'GET', '/healthz');
    expect(up.status).to.equal(200);
    expect(up.json).to.deep.equal({ ok: true });
    sink.serving = false;
    const down = await send(listener.address, 'GET', '/healthz');
    expect(down.status).to.equal(503);
    expect(errorOf(down).code).to.equal('shutting_down');
  });

  // Answers that come from the node are counted by the node (lib/io/node.ts), for every front
  // door alike; the listener counts only the requests it refuses itself.
  it('serves /metrics as Prometheus text that counts the requests it refuses by action and code', async () => {
    await post('preempt', { lock_name: 'L', client_id: 'c1' });
    await post('release', { lock_name: 'lock_held', client_id: 'c1' });
    await post('preempt', { client_id: 'c1' });
    const reply = await send(listener.address, 'GET', '/metrics');
    expect(reply.status).to.equal(200);
    expect(reply.headers['content-type']).to.equal(metrics.contentType);
    expect(reply.headers['content-type']).to.match(/^text\/plain/);
    expect(reply.text).to.contain('# TYPE latchkey_requests_total counter');
    expect(reply.text).not.to.contain('latchkey_requests_total{action="preempt",code="ok"}');
    expect(reply.text).not.to.contain('latchkey_requests_total{action="release",code="lock_held"}');
    expect(reply.text).to.contain('latchkey_requests_total{action="preempt",code="bad_request"} 1');
    expect(reply.text).to.contain('latchkey_request_duration_seconds_count{action="preempt"} 1');
    expect(reply.text).to.contain('process_cpu_user_seconds_total');
  });

  it('closes the handle when the client hangs up on a pending acquire, and ignores a late answer', async () => {
    const req = http.request({
      host: listener.address.host, port: listener.address.port, method: 'POST', path: '/v1/acquire', agent: false,
    });
    req.on('error', () => { /* expected: we hang up ourselves */ });
    req.end(JSON.stringify({ lock_name: 'L', client_id: 'c1' }));
    await waitFor(() => sink.handles.length === 1 && sink.last().requests.length === 1, 'the acquire');
    const handle = sink.last();
    expect(handle.closes).to.equal(0);
    req.destroy();
    await waitFor(() => handle.closes === 1, 'handle.close() after the hang-up');
    handle.connection.answer(0, { ok: true, lock_name: 'L', owner: 'c1', token: 1 });
    await new Promise((resolve) => setImmediate(resolve));
    expect(handle.closes).to.equal(1);
    expect((await send(listener.address, 'GET', '/healthz')).status).to.equal(200);
  });

  it('answers pending exchanges shutting_down on close() and closes their handles', async () => {
    const pending = post('acquire', { lock_name: 'L', client_id: 'c1' });
    await waitFor(() => sink.handles.length === 1 && sink.last().requests.length === 1, 'the acquire');
    await listener.close();
    const reply = await pending;
    expect(reply.status).to.equal(503);
    expect(errorOf(reply).code).to.equal('shutting_down');
    expect(sink.last().closes).to.equal(1);
  });
});

describe('metrics', () => {
  it('keeps each node in its own registry', async () => {
    const a = new Metrics({ processMetrics: false });
    const b = new Metrics({ processMetrics: false });
    a.observeRequest('check', 'ok', 0.002);
    a.setLeader(true);
    b.setTerm(5);
    const textA = await a.render();
    const textB = await b.render();
    expect(textA).to.contain('latchkey_requests_total{action="check",code="ok"} 1');
    expect(textA).to.contain('latchkey_is_leader 1');
    expect(textB).to.not.contain('latchkey_requests_total{action="check",code="ok"}');
    expect(textB).to.contain('latchkey_term 5');
  });

  it('exposes every named series', async () => {
    const m = new Metrics({ processMetrics: false, labels: { node: 'n1' } });
    m.setConnections(2); m.setSessions(3); m.setLocksHeld(4); m.setWaiters(5);
    m.countLogEntries(6); m.countLogFlush(); m.observeFsync(0.003); m.setCommitIndex(7);
    const text = await m.render();
    for (const line of [
      'latchkey_connections{node="n1"} 2', 'latchkey_sessions{node="n1"} 3', 'latchkey_locks_held{node="n1"} 4',
      'latchkey_waiters{node="n1"} 5', 'latchkey_log_entries_total{node="n1"} 6',
      'latchkey_log_flushes_total{node="n1"} 1', 'latchkey_fsync_seconds_count{node="n1"} 1',
      'latchkey_commit_index{node="n1"} 7',
    ]) {
      expect(text).to.contain(line);
    }
  });
});
