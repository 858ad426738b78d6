// The snapshot a leader sends to a follower its in-memory log no longer reaches. Until the
// follower answers, every heartbeat sends it again; encoding the whole state each time (a large
// state takes tens of milliseconds) cost more than the follower's install. The one made last is
// sent again as long as the log still continues it (it starts at or before where the log now
// begins), and dropped once compaction passes it, so it is not held for nothing.
import type { Snapshot } from '../raft/messages';

export class PeerSnapshot {
  private last: Snapshot | null = null;

  /** The snapshot to send: the last one made if the log still continues it, else a new one. */
  get(logStartIndex: number, make: () => Snapshot): Snapshot {
    if (this.last !== null && this.last.index >= logStartIndex) return this.last;
    this.last = make();
    return this.last;
  }

  /** After compaction: forget the last one if the log no longer continues it. */
  forgetBefore(logStartIndex: number): void {
    if (this.last !== null && this.last.index < logStartIndex) this.last = null;
  }
}
