// Commands are what goes into the replicated log (DESIGN §1). Only the node that accepts a
// request turns it into a command, and it stamps every command with the cluster time `at`.
// `apply` takes nothing else from the outside world: no clock, no randomness, no I/O.

import type { StateLimits } from '../core/limits';

/** The connection a session is bound to: `node/boot/seq` for TCP, null for HTTP (connectionless). */
export type ConnId = string | null;

interface Stamped {
  /** Cluster time in ms when the command was proposed (never decreases along the log). */
  at: number;
  /** `node#seq` of the node that accepted the request, so that node can match the applied
   *  entry to the client waiting for it (DESIGN §5). Ignored by apply. */
  origin?: string;
}

interface FromClient extends Stamped {
  client: string;
  conn: ConnId;
  /** request_id for exactly-once effects (PROTOCOL §4 "Retries are applied once"). */
  req?: string;
}

/**
 * Opens a session, updates its settings, or moves it to a new connection. `implicit` is set
 * when the node opens a session for a first request that was not a `hello`: it then never
 * overrides the settings of an existing session. `resume` is the token the client presented;
 * `fresh` is the new secret the node drew for a new session (randomness stays outside apply).
 */
export interface HelloCommand extends Stamped {
  type: 'hello';
  client: string;
  conn: ConnId;
  ttlMs: number;
  graceMs: number;
  implicit: boolean;
  resume?: string;
  fresh: string;
}

export interface PreemptCommand extends FromClient { type: 'preempt'; lock: string; leaseMs?: number }
export interface AcquireCommand extends FromClient { type: 'acquire'; lock: string; timeoutMs?: number; leaseMs?: number }
export interface ReleaseCommand extends FromClient { type: 'release'; lock: string; token?: number }
export interface AppendCommand extends FromClient { type: 'append'; lock: string; token: number; file: string; data: string }
export interface ByeCommand extends FromClient { type: 'bye' }

/** Keepalives (and reads from a session's connection) seen since the last flush, in one entry.
 *  Each names the connection it came from: only the session's own connection keeps it alive
 *  (issue 5: ownership), so a stranger naming a client_id cannot stretch its session. */
export interface TouchCommand extends Stamped { type: 'touch'; touches: Touch[] }
export interface Touch { client: string; conn: ConnId }
/** The node holding a connection saw it close. */
export interface DisconnectedCommand extends Stamped { type: 'disconnected'; client: string; conn: string }
/** Advances cluster time so that due deadlines fire even when nothing else happens. */
export interface TickCommand extends Stamped { type: 'tick' }
/** The bounds every replica enforces from here on (a new leader commits its configuration). */
export interface LimitsCommand extends Stamped { type: 'limits'; limits: StateLimits }

export type Command =
  | HelloCommand | PreemptCommand | AcquireCommand | ReleaseCommand | AppendCommand | ByeCommand
  | TouchCommand | DisconnectedCommand | TickCommand | LimitsCommand;

export type CommandType = Command['type'];

/** Commands that carry a request_id and whose answers are remembered per session. */
export type DedupCommand = PreemptCommand | AcquireCommand | ReleaseCommand | AppendCommand | ByeCommand;

export function isDedupCommand(command: Command): command is DedupCommand {
  const type = command.type;
  return type === 'preempt' || type === 'acquire' || type === 'release' || type === 'append' || type === 'bye';
}
