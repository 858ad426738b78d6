// A gRPC client for the tests, generated at run time from proto/latchkey.proto the way a user
// in any language would (proto-loader + grpc-js, no protoc). Calls resolve to a tagged result
// instead of throwing, so a test can assert on the status, the contract code and the reply.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { errorCodeKey, errorOwnerKey, protoLoaderOptions, protoPath, sessionKey } from '../../lib/io/grpc-codec';

export type Reply = Record<string, unknown>;

export type CallResult =
  | { ok: true; reply: Reply }
  | { ok: false; status: grpc.status; code: string | undefined; owner: string | undefined; details: string };

export interface CallOptions {
  /** Sends `latchkey-session` so the call goes through that Session stream. */
  session?: string;
  /** Sends `authorization: Bearer X`. */
  bearer?: string;
  deadlineMs?: number;
  /** Cancels the call when this resolves. */
  cancelWhen?: Promise<unknown>;
}

type UnaryMethod = (
  request: Reply, metadata: grpc.Metadata, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, reply?: Reply) => void,
) => grpc.ClientUnaryCall;

export type LocksClient = grpc.Client & Record<string, UnaryMethod> & {
  Session(request: Reply, metadata: grpc.Metadata): grpc.ClientReadableStream<Reply>;
};

let locksCtor: grpc.ServiceClientConstructor | undefined;

export function newLocksClient(port: number, credentials = grpc.credentials.createInsecure(), host = '127.0.0.1'): LocksClient {
  if (locksCtor === undefined) {
    const loaded = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath(), protoLoaderOptions));
    locksCtor = ((loaded['latchkey'] as grpc.GrpcObject)['v1'] as grpc.GrpcObject)['Locks'] as grpc.ServiceClientConstructor;
  }
  return new locksCtor(`${host}:${port}`, credentials) as unknown as LocksClient;
}

export function metadataOf(options: CallOptions): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (options.session !== undefined) metadata.set(sessionKey, options.session);
  if (options.bearer !== undefined) metadata.set('authorization', `Bearer ${options.bearer}`);
  return metadata;
}

export function call(client: LocksClient, method: string, request: Reply, options: CallOptions = {}): Promise<CallResult> {
  const callOptions: grpc.CallOptions = options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs };
  return new Promise((resolve) => {
    const pending = client[method]!.call(client, request, metadataOf(options), callOptions, (error, reply) => {
      if (error === null) resolve({ ok: true, reply: reply ?? {} });
      else resolve(failure(error));
    });
    void options.cancelWhen?.then(() => pending.cancel());
  });
}

function failure(error: grpc.ServiceError): CallResult {
  const first = (key: string): string | undefined => {
    const value = error.metadata?.get(key)[0];
    return typeof value === 'string' ? value : undefined;
  };
  return { ok: false, status: error.code, code: first(errorCodeKey), owner: first(errorOwnerKey), details: error.details };
}

/** A Session stream, its messages queued for `next()`, and how it ended. */
export class SessionCall {
  private readonly messages: Reply[] = [];
  private readonly waiters: ((message: Reply | null) => void)[] = [];
  ended: CallResult | null = null;
  readonly stream: grpc.ClientReadableStream<Reply>;

  constructor(client: LocksClient, hello: Reply, options: CallOptions = {}) {
    this.stream = client.Session(hello, metadataOf(options));
    this.stream.on('data', (message: Reply) => {
      const waiter = this.waiters.shift();
      if (waiter !== undefined) waiter(message);
      else this.messages.push(message);
    });
    this.stream.on('error', (error: grpc.ServiceError) => this.finish(failure(error)));
    this.stream.on('end', () => this.finish({ ok: true, reply: {} }));
  }

  /** The next message, or null once the stream ended. */
  next(timeoutMs = 5000): Promise<Reply | null> {
    const queued = this.messages.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.ended !== null) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no Session message within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push((message) => {
        clearTimeout(timer);
        resolve(message);
      });
    });
  }

  /** Waits for the hello answer and returns its resume_token. */
  async hello(): Promise<Reply> {
    const first = await this.next();
    if (first === null || first['hello'] === undefined) throw new Error(`the Session stream did not answer the hello: ${JSON.stringify(this.ended)}`);
    return first['hello'] as Reply;
  }

  /** Resolves once the stream ended (by the server or by cancel()). */
  async done(timeoutMs = 5000): Promise<CallResult> {
    const started = Date.now();
    while (this.ended === null) {
      if (Date.now() - started > timeoutMs) throw new Error(`the Session stream did not end within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return this.ended;
  }

  cancel(): void {
    this.stream.cancel();
  }

  private finish(result: CallResult): void {
    if (this.ended !== null) return;
    this.ended = result;
    for (const waiter of this.waiters.splice(0)) waiter(null);
  }
}
