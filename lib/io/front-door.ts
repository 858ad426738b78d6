// What every front door (TCP NDJSON, HTTP, gRPC) talks to. Front doors only translate
// bytes to validated requests and answers back to bytes; the node owns the semantics.
import type { Request, RequestId } from '../protocol/schemas';
import type { Answer } from '../protocol/answers';

/** A success or error answer without its `id`; the front door adds the id it needs. */
export type { Answer };

/** An event pushed to a connection (PROTOCOL §3: lines with `event` and no `id`). */
export interface PushEvent {
  event: string;
  [field: string]: unknown;
}

/**
 * What a connection is. `tcp` and `grpc` (a gRPC Session stream) are real connections: a session
 * opened on one belongs to it and ends when it closes (PROTOCOL §4). `http` and `grpc-call` (a
 * unary gRPC call without a session stream) are connectionless: each exchange gets a fresh one,
 * and sessions opened on them live by `ttl_ms` alone.
 */
export type ConnectionKind = 'tcp' | 'http' | 'grpc' | 'grpc-call';

export function isConnectionless(kind: ConnectionKind): boolean {
  return kind === 'http' || kind === 'grpc-call';
}

/** One client connection as the node sees it. */
export interface ClientConnection {
  readonly kind: ConnectionKind;
  /** The bearer token the transport carried (HTTP `Authorization: Bearer X`, gRPC metadata
   *  `authorization: Bearer X`), for the node to check; absent when none was sent. */
  readonly bearer?: string;
  /** Answer to the request that carried `id`. */
  answer(id: RequestId | null, answer: Answer): void;
  /** An event with no id. HTTP connections drop these. */
  push(event: PushEvent): void;
}

export interface StatusInfo {
  node: string;
  role: 'leader' | 'follower' | 'candidate';
  term: number;
  leader: string | null;
  commit_index: number;
  members: string[];
}

export interface RequestSink {
  /** A new connection arrived; returns its handle for later calls. */
  open(connection: ClientConnection): ConnectionHandle;
  status(): StatusInfo;
  /** True when no auth token is configured or `bearer` is it (for doors that serve
   *  something outside the request path, such as /metrics). */
  authorize(bearer: string | undefined): boolean;
  /** True while the node serves requests (not shutting down). */
  readonly serving: boolean;
}

export interface ConnectionHandle {
  /** A request that already passed schema validation. */
  request(request: Request): void;
  /** The connection named a client_id, so it carries a session (an idle one is not closed). */
  readonly bound: boolean;
  /** The connection closed (or, for HTTP, the exchange ended). */
  close(): void;
}
