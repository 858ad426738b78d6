// Everything one node says to another: the Raft messages, plus the replica's own requests to
// the leader (DESIGN §5, §6): forwarded commands and read-index rounds for followers' reads.
import type { Command } from '../locks/commands';
import type { RaftMessage } from '../raft/messages';

/** A follower hands commands to the leader, which stamps their time and proposes them. */
export interface ForwardMessage { type: 'forward'; from: string; to: string; commands: Command[] }
/** The receiver is not the leader: the sender should try again once it knows the leader. */
export interface ForwardRejectMessage { type: 'forward_reject'; from: string; to: string; origins: string[]; leader: string | null }
/** A follower asks the leader for a read index (thesis §6.4, "reads from followers"). */
export interface ReadIndexRequest { type: 'read_index'; from: string; to: string; ctx: string }
/** index -1: the receiver is not the leader. */
export interface ReadIndexResponse { type: 'read_index_resp'; from: string; to: string; ctx: string; index: number }

export type ReplicaMessage = ForwardMessage | ForwardRejectMessage | ReadIndexRequest | ReadIndexResponse;
export type PeerMessage = RaftMessage<Command> | ReplicaMessage;

const replicaTypes = new Set(['forward', 'forward_reject', 'read_index', 'read_index_resp']);

export function isReplicaMessage(message: PeerMessage): message is ReplicaMessage {
  return replicaTypes.has(message.type);
}
