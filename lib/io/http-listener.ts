// The `--http` front door (PROTOCOL §6): `POST /v1/ACTION`, `GET /v1/status`, `GET /healthz`
// and `GET /metrics`. Like every front door it only turns bytes into validated requests and
// answers back into bytes; what a request means is the node's business (front-door.ts).
//
// Each POST is one exchange on a fresh `kind: 'http'` connection: open, one request, one
// answer, close. HTTP has no way to deliver pushed events, so they are dropped, and a session
// opened over HTTP lives by `ttl_ms` alone (clients send `keepalive`).
//
// Choices where the contract is silent:
// - The path names the action. An `action` field in the body is ignored (the path wins), so a
//   request line copied from the TCP protocol works as a body unchanged.
// - An `id` field in the body is tolerated and dropped when it is a number or a string (again
//   so TCP request lines work); anything else there is `bad_request`, as it would be on TCP.
//   The reply never carries an id: each exchange has exactly one request.
// - An empty body means `{}`, so `curl -X POST .../v1/status` works.
// - `timeout` maps to 504, not 408. 408 says the server gave up waiting for the client to
//   finish sending, makes servers close the connection and lets clients and proxies retry on
//   their own. Here the request arrived whole and the wait the client asked for (`timeout_ms`)
//   ran out on the server side, which is what 504 reports.
// - An unknown path, including `/v1/` followed by something that is not an action, is 404
//   with a `bad_request` JSON body; a known path with the wrong method is 405 with `Allow`.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { TextDecoder } from 'node:util';
import { defaultConnectionLimits, frameBytesMax, type ConnectionLimits } from '../core/limits';
import { isErrorCode, type ErrorCode, type WireError } from '../protocol/errors';
import { actions, validateRequest, type Action, type Request, type RequestId } from '../protocol/schemas';
import type { Answer, ClientConnection, ConnectionHandle, PushEvent, RequestSink } from './front-door';
import type { Logger } from './logger';
import type { Metrics } from './metrics';
import type { TlsMaterial } from './tls-options';

/** The HTTP status of an error answer, by contract code (PROTOCOL §5). Success is 200. */
export const httpStatusByCode: Readonly<Record<ErrorCode, number>> = {
  bad_request: 400,
  frame_too_large: 413,
  unauthorized: 401,
  not_owner: 403,
  stale_token: 403,
  lock_held: 409,
  client_mismatch: 409,
  timeout: 504,
  limit_exceeded: 429,
  unavailable: 503,
  shutting_down: 503,
  internal: 500,
};

export function httpStatusFor(answer: Answer): number {
  if (answer.ok) return 200;
  return isErrorCode(answer.error.code) ? httpStatusByCode[answer.error.code] : 500;
}

export interface HttpListenerOptions {
  host: string;
  /** 0 picks a free port; read the real one from `address`. */
  port: number;
  sink: RequestSink;
  metrics: Metrics;
  logger: Logger;
  /** Largest accepted POST body; larger is 413 `frame_too_large`. Default: the TCP frame
   *  bound (65536), so a request that fits one front door fits the other. */
  bodyBytesMax?: number;
  /** Connections at once, and how long a request may take to arrive (default:
   *  defaultConnectionLimits); past the bound new connections are closed by Node's server. */
  limits?: ConnectionLimits;
  /** Serve HTTPS with this certificate (no client certificate is asked for). */
  tls?: TlsMaterial;
}

export interface HttpListener {
  address: { host: string; port: number };
  /** Stops accepting, answers exchanges still waiting with `shutting_down`, and resolves once
   *  every connection is gone. */
  close(): Promise<void>;
}

/** How long close() lets connections stuck mid-request (slow uploads) linger before cutting. */
const closeGraceMs = 1000;
/** The internal id of an exchange's one request; each exchange has its own connection. */
const exchangeRequestId = 0;

interface ListenerContext {
  sink: RequestSink;
  metrics: Metrics;
  logger: Logger;
  bodyBytesMax: number;
  /** Exchanges handed to the sink and not yet answered or aborted. */
  pending: Set<HttpExchange>;
  closing: boolean;
}

export async function startHttpListener(options: HttpListenerOptions): Promise<HttpListener> {
  const bodyBytesMax = options.bodyBytesMax ?? frameBytesMax;
  if (!Number.isInteger(bodyBytesMax) || bodyBytesMax < 1) {
    throw new RangeError(`bodyBytesMax must be a positive integer, got ${String(bodyBytesMax)}`);
  }
  const context: ListenerContext = {
    sink: options.sink, metrics: options.metrics, logger: options.logger,
    bodyBytesMax, pending: new Set(), closing: false,
  };
  const handler: http.RequestListener = (req, res) => {
    route(context, req, res).catch((error: unknown) => {
      context.logger.error('http_handler_failed', { error: String(error) });
      replyError(context, res, 'internal', 'internal error');
    });
  };
  const server = options.tls === undefined
    ? http.createServer(handler)
    : https.createServer({ cert: options.tls.cert, key: options.tls.key, ca: options.tls.ca }, handler);
  const limits = options.limits ?? defaultConnectionLimits;
  server.maxConnections = limits.connections;
  // A slow sender (a byte a second) may not hold a connection longer than this per request.
  server.requestTimeout = limits.idleMs;
  server.headersTimeout = Math.min(limits.idleMs, server.headersTimeout);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (error) => context.logger.error('http_server_error', { error: String(error) }));
  const info = server.address() as AddressInfo;
  const address = { host: info.address, port: info.port };
  context.logger.info('http_listening', address);
  let closed: Promise<void> | null = null;
  return {
    address,
    close: () => {
      closed ??= closeListener(context, server);
      return closed;
    },
  };
}

function closeListener(context: ListenerContext, server: http.Server | https.Server): Promise<void> {
  // Order matters: flag first so every reply from now on says `connection: close`, then
  // answer the waiters, then stop the server, which closes the connections already idle.
  context.closing = true;
  for (const exchange of [...context.pending]) {
    exchange.answer(null, { ok: false, error: { code: 'shutting_down', message: 'the HTTP listener is closing' } });
  }
  const done = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const cut = setTimeout(() => server.closeAllConnections(), closeGraceMs);
  cut.unref();
  return done.finally(() => clearTimeout(cut));
}

// ---- routing ----

async function route(context: ListenerContext, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = req.url ?? '/';
  const queryAt = url.indexOf('?');
  const path = queryAt === -1 ? url : url.slice(0, queryAt);
  const method = req.method ?? 'GET';
  if (path === '/healthz') {
    if (method !== 'GET') return replyMethodNotAllowed(context, res, 'GET');
    return replyHealth(context, res);
  }
  // Everything but the health probe needs the token when one is configured. POSTed actions are
  // checked by the node itself (a body `hello` may carry `auth` instead of the header).
  const bearer = bearerOf(req);
  if (path === '/metrics') {
    if (method !== 'GET') return replyMethodNotAllowed(context, res, 'GET');
    if (!context.sink.authorize(bearer)) return replyUnauthorized(context, res, bearer);
    return replyMetrics(context, res);
  }
  const action = actionOfPath(path);
  if (action === null) {
    return replyJson(context, res, 404, errorAnswer('bad_request', `no such path: ${path.slice(0, 128)}`));
  }
  if (action === 'status' && method === 'GET') {
    if (!context.sink.authorize(bearer)) return replyUnauthorized(context, res, bearer);
    return replyStatus(context, res);
  }
  if (method !== 'POST') return replyMethodNotAllowed(context, res, action === 'status' ? 'GET, POST' : 'POST');
  return serveAction(context, action, req, res);
}

/** The token of an `Authorization: Bearer TOKEN` header, if there is one. */
function bearerOf(req: http.IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match === null ? '' : match[1];
}

function replyUnauthorized(context: ListenerContext, res: http.ServerResponse, bearer: string | undefined): void {
  replyJson(context, res, 401, errorAnswer('unauthorized', bearer === undefined
    ? 'this node requires an auth token: send Authorization: Bearer TOKEN'
    : 'wrong auth token'), { 'www-authenticate': 'Bearer' });
}

function actionOfPath(path: string): Action | null {
  const prefix = '/v1/';
  if (!path.startsWith(prefix)) return null;
  const name = path.slice(prefix.length);
  return (actions as readonly string[]).includes(name) ? (name as Action) : null;
}

function replyHealth(context: ListenerContext, res: http.ServerResponse): void {
  if (context.sink.serving) return replyJson(context, res, 200, { ok: true });
  replyJson(context, res, 503, errorAnswer('shutting_down', 'the node is not serving'));
}

function replyStatus(context: ListenerContext, res: http.ServerResponse): void {
  replyJson(context, res, 200, { ok: true, ...context.sink.status() });
}

async function replyMetrics(context: ListenerContext, res: http.ServerResponse): Promise<void> {
  const text = await context.metrics.render();
  if (res.headersSent || res.destroyed) return;
  res.writeHead(200, {
    'content-type': context.metrics.contentType,
    'content-length': Buffer.byteLength(text),
    ...closeHeader(context),
  });
  res.end(text);
}

function replyMethodNotAllowed(context: ListenerContext, res: http.ServerResponse, allow: string): void {
  replyJson(context, res, 405, errorAnswer('bad_request', `method not allowed here; use ${allow}`), { allow });
}

// ---- POST /v1/ACTION ----

async function serveAction(
  context: ListenerContext, action: Action, req: http.IncomingMessage, res: http.ServerResponse,
): Promise<void> {
  const startedMs = performance.now();
  // Requests that reach the node are counted by the node (for every front door alike); this
  // door counts only what it refuses itself.
  const refuse = (answer: Answer): void => {
    context.metrics.observeRequest(action, answer.ok ? 'ok' : answer.error.code, (performance.now() - startedMs) / 1000);
    replyAnswer(context, res, answer);
  };
  const finish = (answer: Answer): void => replyAnswer(context, res, answer);
  const body = await readBody(req, context.bodyBytesMax);
  if (body.kind === 'aborted' || res.destroyed) return;
  if (body.kind === 'too_large') {
    // replyAnswer ends the connection: the rest of the body is left unread.
    return refuse(errorAnswer('frame_too_large', `the body exceeds ${context.bodyBytesMax} bytes`));
  }
  if (body.kind === 'not_utf8') return refuse(errorAnswer('bad_request', 'the body is not UTF-8'));
  const built = buildRequest(action, body.text);
  if (!built.ok) return refuse(errorAnswer('bad_request', built.message));
  if (context.closing) return refuse(errorAnswer('shutting_down', 'the HTTP listener is closing'));
  const exchange = new HttpExchange(context, finish, bearerOf(req));
  res.on('close', () => exchange.abort());
  exchange.start(built.request);
}

type Body =
  | { kind: 'text'; text: string } | { kind: 'not_utf8' } | { kind: 'too_large' } | { kind: 'aborted' };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads the whole body, never buffering more than `bytesMax` (STYLE §6.7). */
function readBody(req: http.IncomingMessage, bytesMax: number): Promise<Body> {
  const declared = Number(req.headers['content-length']);
  if (declared > bytesMax) return Promise.resolve({ kind: 'too_large' });
  return new Promise<Body>((resolve) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    let ended = false;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes <= bytesMax) {
        chunks.push(chunk);
        return;
      }
      req.removeAllListeners('data');
      req.pause();
      resolve({ kind: 'too_large' });
    });
    req.on('end', () => {
      ended = true;
      resolve(decodeBody(Buffer.concat(chunks)));
    });
    req.on('error', () => resolve({ kind: 'aborted' }));
    req.on('close', () => {
      if (!ended) resolve({ kind: 'aborted' });
    });
  });
}

function decodeBody(bytes: Buffer): Body {
  try {
    return { kind: 'text', text: utf8.decode(bytes) };
  } catch {
    return { kind: 'not_utf8' };
  }
}

type Built = { ok: true; request: Request } | { ok: false; message: string };

/** Body text plus the path's action -> a validated request (see the choices at the top). */
export function buildRequest(action: Action, text: string): Built {
  let body: unknown = {};
  if (text.trim() !== '') {
    try {
      body = JSON.parse(text);
    } catch {
      return { ok: false, message: 'the body is not valid JSON' };
    }
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return { ok: false, message: 'the body must be a JSON object' };
  }
  const fields = body as Record<string, unknown>;
  if ('id' in fields) {
    const id = fields['id'];
    const idOk = (typeof id === 'number' && Number.isFinite(id)) || typeof id === 'string';
    if (!idOk) return { ok: false, message: "field 'id' must be a number or a string (HTTP ignores it)" };
  }
  const result = validateRequest({ ...fields, id: exchangeRequestId, action });
  return result.ok ? result : { ok: false, message: result.message };
}

/**
 * One POST as a node connection. It settles exactly once, by an answer or by the client going
 * away, and either way the node's handle is closed exactly once so it can forget the request
 * (a blocking acquire whose HTTP client hung up must leave the wait queue).
 */
class HttpExchange implements ClientConnection {
  readonly kind = 'http';
  private handle: ConnectionHandle | null = null;
  private settled = false;

  constructor(
    private readonly context: ListenerContext,
    private readonly finish: (answer: Answer) => void,
    readonly bearer: string | undefined,
  ) {}

  start(request: Request): void {
    this.context.pending.add(this);
    try {
      this.handle = this.context.sink.open(this);
      if (!this.settled) this.handle.request(request);
    } catch (error) {
      this.context.logger.error('http_sink_failed', { action: request.action, error: String(error) });
      this.answer(null, errorAnswer('internal', 'internal error'));
    }
  }

  answer(_id: RequestId | null, answer: Answer): void {
    if (this.settled) return;
    this.settled = true;
    this.finish(answer);
    // Closing from inside the sink's own call stack (an answer given synchronously by
    // request()) would re-enter it; a microtask runs the close once that stack unwinds.
    queueMicrotask(() => this.release());
  }

  push(_event: PushEvent): void {
    // HTTP has nowhere to deliver an event outside a reply (PROTOCOL §6).
  }

  /** The HTTP connection closed. A no-op once answered (the close that follows every reply). */
  abort(): void {
    if (this.settled) return;
    this.settled = true;
    this.context.logger.debug('http_client_gone');
    this.release();
  }

  private release(): void {
    this.context.pending.delete(this);
    const handle = this.handle;
    this.handle = null;
    if (handle === null) return;
    try {
      handle.close();
    } catch (error) {
      this.context.logger.error('http_sink_close_failed', { error: String(error) });
    }
  }
}

// ---- replies ----

function errorAnswer(code: ErrorCode, message: string): { ok: false; error: WireError } {
  return { ok: false, error: { code, message } };
}

function closeHeader(context: ListenerContext): Record<string, string> {
  // While closing, every reply ends its connection so server.close() need not wait for
  // keep-alive connections to time out.
  return context.closing ? { connection: 'close' } : {};
}

function replyAnswer(context: ListenerContext, res: http.ServerResponse, answer: Answer): void {
  const tooLarge = !answer.ok && answer.error.code === 'frame_too_large';
  replyJson(context, res, httpStatusFor(answer), answer, tooLarge ? { connection: 'close' } : {});
}

function replyJson(
  context: ListenerContext, res: http.ServerResponse, status: number, body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  let text: string;
  try {
    text = JSON.stringify(body);
  } catch (error) {
    context.logger.error('http_answer_unserializable', { error: String(error) });
    status = 500;
    text = JSON.stringify(errorAnswer('internal', 'internal error'));
  }
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...closeHeader(context),
    ...headers,
  });
  res.end(text);
}

function replyError(context: ListenerContext, res: http.ServerResponse, code: ErrorCode, message: string): void {
  replyJson(context, res, httpStatusByCode[code], errorAnswer(code, message));
}
