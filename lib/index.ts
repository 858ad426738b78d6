// The package's public surface (package.json "main"): plain re-exports, nothing else.
export { LockClient } from './client/client';
export type {
  AcquireOptions, AppendResult, ClusterStatus, LockClientOptions, LockClientTls, LockState, PreemptOptions, ReadOptions,
} from './client/client';
export type { Lock, LostReason } from './client/lock';
export { LatchkeyError } from './protocol/errors';
export type { ErrorCode } from './protocol/errors';
