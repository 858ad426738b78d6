// Quorum math as plain functions (etcd-io/raft quorum/majority.go).

export function majority(voters: number): number {
  return Math.floor(voters / 2) + 1;
}

/** The highest index stored on a majority, given each voter's match index. */
export function committedIndex(matches: readonly number[]): number {
  if (matches.length === 0) return 0;
  const sorted = [...matches].sort((a, b) => b - a);
  return sorted[majority(matches.length) - 1] as number;
}

export type VoteResult = 'won' | 'lost' | 'pending';

/** granted/rejected counts against the number of voters. */
export function voteResult(voters: number, granted: number, rejected: number): VoteResult {
  const need = majority(voters);
  if (granted >= need) return 'won';
  if (rejected > voters - need) return 'lost';
  return 'pending';
}
