// Peer messages of the consensus core (Raft, Ongaro & Ousterhout 2014, Figure 2) plus the
// pre-vote round of Ongaro's thesis §9.6. The core is generic in the payload `P` of an entry;
// a null payload is the no-op a new leader appends to commit an entry of its own term (§8).

export type NodeId = string;

export interface Entry<P> {
  index: number;
  term: number;
  data: P | null;
}

export interface SnapshotMeta {
  index: number;
  term: number;
}

/** The state machine's snapshot as opaque bytes (a string) with the log position it covers. */
export interface Snapshot extends SnapshotMeta {
  data: string;
}

interface Base {
  term: number;
  from: NodeId;
  to: NodeId;
}

/** RequestVote (§5.2); with `pre`, a pre-vote that changes no term or vote (thesis §9.6). */
export interface VoteRequest extends Base { type: 'vote'; lastIndex: number; lastTerm: number; pre: boolean }
export interface VoteResponse extends Base { type: 'vote_resp'; granted: boolean; pre: boolean }

/** AppendEntries (§5.3). `read` is the leader's latest read-index round (§6.4): a response
 *  echoes it, confirming leadership as of that round. */
export interface AppendRequest<P> extends Base {
  type: 'append';
  prevIndex: number;
  prevTerm: number;
  entries: Entry<P>[];
  commit: number;
  read: number;
}

/** `match` is the last index known to match the leader on success; on failure `hint` is the
 *  index the leader should try next minus one (the follower's last index, or the index before
 *  the conflicting term). */
export interface AppendResponse extends Base { type: 'append_resp'; success: boolean; match: number; hint: number; read: number }

/** InstallSnapshot (§7), sent whole: our snapshots are small next to a log. */
export interface SnapshotRequest extends Base { type: 'snapshot'; snapshot: Snapshot; read: number }

export type RaftMessage<P> = VoteRequest | VoteResponse | AppendRequest<P> | AppendResponse | SnapshotRequest;
