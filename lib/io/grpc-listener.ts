// The `--grpc` front door (PROTOCOL §7): service latchkey.v1.Locks from proto/latchkey.proto.
// Like every front door it only translates: a decoded message becomes the same validated
// request TCP and HTTP build, the node answers it, and the answer becomes a reply or a status
// (grpc-codec.ts). What a request means is the node's business (front-door.ts).
//
// Two kinds of connection, explained for users in the .proto (SESSIONS):
// - SessionStream (`kind: 'grpc'`): a `Session` call. It is a real connection like a TCP
//   socket: the hello goes through it, `lost` events come back on it, unary calls carrying its
//   secret in `latchkey-session` are sent through it (so they act for its session), and when
//   the call ends the node sees the connection close, which ends the session as a dropped TCP
//   connection does.
// - CallConnection (`kind: 'grpc-call'`): a unary call without `latchkey-session`. Like an
//   HTTP exchange it is a connection of its own: open, one request, one answer, close.
//
// Streams are found by a SHA-256 of their secret, not the secret itself, so the time a lookup
// takes says nothing about how much of a guessed secret was right.
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { durationMsMax, frameBytesMax } from '../core/limits';
import { errorAnswer, type Answer, type ErrorAnswer } from '../protocol/answers';
import type { Action, HelloRequest, Request, RequestId } from '../protocol/schemas';
import type { ClientConnection, ConnectionHandle, PushEvent, RequestSink } from './front-door';
import {
  bearerOf, buildGrpcRequest, deadlineMs, errorStatus, isUnclaimableAcquire, loadLocksService, releaseOfAbandoned, replyOf, sessionKey,
  singleValue, timeoutWithDeadline, unaryActions,
} from './grpc-codec';
import type { Logger } from './logger';
import type { Metrics } from './metrics';

/** PROTOCOL §1 `--tls-cert --tls-key --tls-ca`, read by the caller. */
export interface GrpcTlsConfig {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
  /** Also require a client certificate signed by `ca` (default false: TLS for privacy only;
   *  clients prove themselves with a bearer token). */
  requireClientCert?: boolean;
}

export interface GrpcListenerOptions {
  host: string;
  /** 0 picks a free port; read the real one from `address`. */
  port: number;
  sink: RequestSink;
  metrics: Metrics;
  logger: Logger;
  /** TLS; without it the port speaks plaintext HTTP/2. */
  tls?: GrpcTlsConfig;
}

export interface GrpcListener {
  address: { host: string; port: number };
  /** Session streams open now. */
  streams(): number;
  /** Answers calls still waiting with `shutting_down`, ends the session streams, and resolves
   *  once the server has stopped. */
  close(): Promise<void>;
}

/** How long close() lets calls finish before cutting the HTTP/2 sessions. */
const closeGraceMs = 1000;
/** Pings on idle HTTP/2 connections, so a Session stream whose client vanished without a word
 *  (power loss, a cut cable) is noticed and its session ended, rather than left to its ttl. */
const keepaliveTimeMs = 10000;
const keepaliveTimeoutMs = 5000;
/** Request ids on a node connection: a stream's hello is 0, routed calls count up from 1. */
const helloRequestId = 0;
const callRequestId = 0;
const followUpRequestId = 1;

interface ListenerContext {
  sink: RequestSink;
  metrics: Metrics;
  logger: Logger;
  /** Session streams whose hello succeeded, by secretKey(resume_token). */
  streamsBySecret: Map<string, SessionStream>;
  /** Every open session stream and connectionless call, for close(). */
  streams: Set<SessionStream>;
  calls: Set<CallConnection>;
  closing: boolean;
}

/** What a unary call does with its answer; returns a request to send after it (the release of
 *  an abandoned grant) or null. */
type OnAnswer = (answer: Answer) => Request | null;

export async function startGrpcListener(options: GrpcListenerOptions): Promise<GrpcListener> {
  const context: ListenerContext = {
    sink: options.sink, metrics: options.metrics, logger: options.logger,
    streamsBySecret: new Map(), streams: new Set(), calls: new Set(), closing: false,
  };
  const server = new grpc.Server({
    // A request that fits a TCP frame fits here; gRPC refuses larger with RESOURCE_EXHAUSTED.
    'grpc.max_receive_message_length': frameBytesMax,
    'grpc.keepalive_time_ms': keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': keepaliveTimeoutMs,
  });
  server.addService(loadLocksService(), implementation(context));
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(hostPort(options.host, options.port), credentials(options.tls), (error, bound) => {
      if (error === null) resolve(bound);
      else reject(error);
    });
  });
  const address = { host: options.host, port };
  context.logger.info('grpc_listening', { ...address, tls: options.tls !== undefined });
  let closed: Promise<void> | null = null;
  return {
    address,
    streams: () => context.streams.size,
    close: () => {
      closed ??= closeListener(context, server);
      return closed;
    },
  };
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function credentials(tls: GrpcTlsConfig | undefined): grpc.ServerCredentials {
  if (tls === undefined) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], tls.requireClientCert ?? false);
}

function closeListener(context: ListenerContext, server: grpc.Server): Promise<void> {
  context.closing = true;
  for (const call of [...context.calls]) call.answer(null, closingAnswer);
  for (const stream of [...context.streams]) stream.end(closingAnswer);
  return new Promise<void>((resolve) => {
    const cut = setTimeout(() => server.forceShutdown(), closeGraceMs);
    cut.unref();
    server.tryShutdown(() => {
      clearTimeout(cut);
      resolve();
    });
  });
}

function implementation(context: ListenerContext): grpc.UntypedServiceImplementation {
  const handlers: grpc.UntypedServiceImplementation = {
    Session: (call: grpc.ServerWritableStream<unknown, unknown>) => openSession(context, call),
  };
  for (const [method, action] of Object.entries(unaryActions)) {
    handlers[method] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      serveUnary(context, action, call, callback);
    };
  }
  return handlers;
}

function secretKey(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Calls into the node, which must never take the listener down with it. */
function guarded(context: ListenerContext, event: string, work: () => void): boolean {
  try {
    work();
    return true;
  } catch (error) {
    context.logger.error(event, { error: String(error) });
    return false;
  }
}

const internalAnswer = errorAnswer('internal', 'internal error');
const closingAnswer = errorAnswer('shutting_down', 'the gRPC listener is closing');

// ---- unary calls ----

function serveUnary(
  context: ListenerContext, action: Action, call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>,
): void {
  const startedMs = performance.now();
  let finished = false;
  let cancelled = false;
  const finish = (answer: Answer): void => {
    if (finished) return;
    finished = true;
    if (answer.ok) callback(null, replyOf(answer));
    else callback(errorStatus(answer.error));
  };
  // Requests that reach the node are counted by the node (for every front door alike); this
  // door counts only what it refuses itself.
  const refuse = (answer: ErrorAnswer): void => {
    context.metrics.observeRequest(action, answer.error.code, (performance.now() - startedMs) / 1000);
    finish(answer);
  };
  const built = buildGrpcRequest(action, call.request, callRequestId);
  if (!built.ok) return refuse(errorAnswer('bad_request', built.message));
  if (context.closing) return refuse(closingAnswer);
  const request = withDeadline(built.request, call.getDeadline());
  const onAnswer: OnAnswer = (answer) => {
    if (!cancelled) {
      finish(answer);
      return null;
    }
    return releaseOfAbandoned(request, answer, followUpRequestId);
  };
  const bearer = bearerOf(call.metadata);
  const secret = singleValue(call.metadata, sessionKey);
  if (secret === null) return refuse(errorAnswer('bad_request', `metadata ${sessionKey} must be sent once, as text`));
  let cancel = (): void => undefined;
  if (secret === undefined) {
    const connection = new CallConnection(context, bearer, request, onAnswer);
    cancel = () => connection.cancel();
    connection.start();
  } else {
    const stream = context.streamsBySecret.get(secretKey(secret));
    if (stream === undefined) {
      return refuse(errorAnswer('client_mismatch', `no Session stream on this node has that ${sessionKey}; open one, or call without it`));
    }
    if (stream.bearer !== bearer) {
      return refuse(errorAnswer('unauthorized', 'a call sent through a Session stream must carry the same authorization as the stream'));
    }
    stream.route(request, onAnswer);
  }
  call.on('cancelled', () => {
    cancelled = true;
    cancel();
  });
}

/** The call's deadline bounds an Acquire's wait like timeout_ms (grpc-codec.ts). */
function withDeadline(request: Request, deadline: grpc.Deadline): Request {
  if (request.action !== 'acquire') return request;
  const timeoutMs = timeoutWithDeadline(request.timeout_ms, deadlineMs(deadline), Date.now(), durationMsMax);
  return timeoutMs === undefined ? request : { ...request, timeout_ms: timeoutMs };
}

/**
 * A unary call without a session stream, as a node connection of its own (like one HTTP
 * exchange). It is answered once; then, or when the caller goes away, the node's handle is
 * closed once so it can forget the request. An Acquire without request_id stays open after
 * its caller went away, to give back a grant nobody could learn of (releaseOfAbandoned).
 */
class CallConnection implements ClientConnection {
  readonly kind = 'grpc-call' as const;
  private handle: ConnectionHandle | null = null;
  private settled = false;

  constructor(
    private readonly context: ListenerContext,
    readonly bearer: string | undefined,
    private readonly request: Request,
    private readonly onAnswer: OnAnswer,
  ) {}

  start(): void {
    this.context.calls.add(this);
    const started = guarded(this.context, 'grpc_sink_failed', () => {
      this.handle = this.context.sink.open(this);
      if (!this.settled) this.handle.request(this.request);
    });
    if (!started) this.answer(null, internalAnswer);
  }

  answer(_id: RequestId | null, answer: Answer): void {
    if (this.settled) return;
    this.settled = true;
    const followUp = this.onAnswer(answer);
    // Not from inside the sink's own call stack (an answer given synchronously by request()).
    queueMicrotask(() => {
      const handle = this.handle;
      if (followUp !== null && handle !== null) guarded(this.context, 'grpc_sink_failed', () => handle.request(followUp));
      this.release();
    });
  }

  push(_event: PushEvent): void {
    // A unary call has nowhere to deliver an event (sessions that want them use Session).
  }

  /** The caller cancelled, or its deadline passed. */
  cancel(): void {
    if (this.settled) return;
    if (isUnclaimableAcquire(this.request)) return;
    this.settled = true;
    this.release();
  }

  private release(): void {
    this.context.calls.delete(this);
    const handle = this.handle;
    this.handle = null;
    if (handle !== null) guarded(this.context, 'grpc_sink_close_failed', () => handle.close());
  }
}

// ---- session streams ----

function openSession(context: ListenerContext, call: grpc.ServerWritableStream<unknown, unknown>): void {
  const stream = new SessionStream(context, call);
  const built = buildGrpcRequest('hello', call.request, helloRequestId);
  if (!built.ok) {
    context.metrics.observeRequest('hello', 'bad_request', 0);
    return stream.end(errorAnswer('bad_request', built.message));
  }
  if (context.closing) return stream.end(closingAnswer);
  stream.open(built.request as HelloRequest);
}

interface Routed {
  request: Request;
  onAnswer: OnAnswer;
}

/** A Session call: one node connection for as long as the call lasts (see the top). */
class SessionStream implements ClientConnection {
  readonly kind = 'grpc' as const;
  readonly bearer: string | undefined;
  private handle: ConnectionHandle | null = null;
  /** Unary calls sent through this connection, by the request id they got on it. */
  private readonly routed = new Map<number, Routed>();
  private requestSeq = helloRequestId;
  private secret: string | null = null;
  private closed = false;

  constructor(private readonly context: ListenerContext, private readonly call: grpc.ServerWritableStream<unknown, unknown>) {
    this.bearer = bearerOf(call.metadata);
  }

  open(hello: HelloRequest): void {
    this.context.streams.add(this);
    this.call.on('cancelled', () => this.close(errorAnswer('unavailable', 'the Session stream was cancelled')));
    const opened = guarded(this.context, 'grpc_sink_failed', () => {
      this.handle = this.context.sink.open(this);
      this.handle.request({ ...hello, id: helloRequestId });
    });
    if (!opened) this.end(internalAnswer);
  }

  answer(id: RequestId | null, answer: Answer): void {
    if (this.closed) return;
    if (id === helloRequestId) return this.onHello(answer);
    const routed = typeof id === 'number' ? this.routed.get(id) : undefined;
    if (routed === undefined) return;
    this.routed.delete(id as number);
    const followUp = routed.onAnswer(answer);
    if (followUp !== null) queueMicrotask(() => this.route(followUp, () => null));
    // PROTOCOL §4: bye ends the session; the stream that was its connection ends with it.
    if (routed.request.action === 'bye' && answer.ok) queueMicrotask(() => this.end(null));
  }

  push(event: PushEvent): void {
    if (this.closed || this.secret === null || event.event !== 'lost') return;
    const { event: _name, ...lost } = event;
    this.call.write({ lost });
  }

  /** Sends a unary call's request through this connection; its answer goes to `onAnswer`. */
  route(request: Request, onAnswer: OnAnswer): void {
    const handle = this.handle;
    if (this.closed || handle === null) {
      onAnswer(errorAnswer('unavailable', 'the Session stream closed'));
      return;
    }
    const id = ++this.requestSeq;
    this.routed.set(id, { request, onAnswer });
    if (!guarded(this.context, 'grpc_sink_failed', () => handle.request({ ...request, id }))) this.answer(id, internalAnswer);
  }

  /** Ends the call, with OK (null) or the status of an error answer, and closes the connection. */
  end(answer: ErrorAnswer | null): void {
    if (this.closed) return;
    this.close(answer ?? errorAnswer('unavailable', 'the Session stream ended'));
    if (answer === null) this.call.end();
    else this.call.emit('error', errorStatus(answer.error));
  }

  private onHello(answer: Answer): void {
    if (!answer.ok) return this.end(answer);
    this.secret = secretKey(String(answer['resume_token']));
    // A later stream that resumed the same session is where its calls go from now on.
    this.context.streamsBySecret.set(this.secret, this);
    this.call.write({ hello: replyOf(answer) });
  }

  /** The node sees the connection close (the session ends unless it has grace_ms); calls
   *  still waiting on it get `pending` (they may yet take effect: re-send with request_id). */
  private close(pending: ErrorAnswer): void {
    if (this.closed) return;
    this.closed = true;
    this.context.streams.delete(this);
    if (this.secret !== null && this.context.streamsBySecret.get(this.secret) === this) this.context.streamsBySecret.delete(this.secret);
    const handle = this.handle;
    this.handle = null;
    if (handle !== null) guarded(this.context, 'grpc_sink_close_failed', () => handle.close());
    const routed = [...this.routed.values()];
    this.routed.clear();
    for (const r of routed) r.onAnswer(pending);
  }
}
