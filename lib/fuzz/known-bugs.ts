// Bugs the fuzzer found that are reported and not fixed yet. The default run leaves out the
// cases that reproduce them, so it stays a clean signal for everything else; `--known-bug NAME`
// (or `--known-bugs` for all) draws them again. Once a bug is fixed, its gate should go: the
// cases become part of every run.

export const knownBugs = {
  'keepalive-stranger':
    'A keepalive naming a client whose session lives on another connection is answered unavailable '
    + '("the session ended") instead of client_mismatch, and it still keeps that session alive: '
    + 'replica.ts adds the client to the next touch without checking the connection.',
  'peer-hello-unbounded':
    'A connection whose first bytes look like a peer hello is handed to the peer transport, which '
    + 'buffers up to peerFrameBytesMax (256 MiB) waiting for the end of that first line before it '
    + 'knows who is speaking: a stranger can make a node hold that much per connection.',
  'non-utf8-lines':
    'The TCP front door decodes a line that is not UTF-8 with U+FFFD in place of the bad bytes and '
    + 'serves it ("client_id":"a\\xff" and "a\\xfe" are one client; an append stores other bytes than '
    + 'were sent); the HTTP front door answers the same body bad_request.',
  'long-file-name':
    'A file name the schema accepts but the file system does not (256 characters, or many "/" each '
    + 'written as "%2F", over NAME_MAX) cannot be materialised: every append logs '
    + 'file_materialize_failed, and once a snapshot holds the file the node cannot start again '
    + '(FileStore.init throws ENAMETOOLONG), nor install that snapshot from a leader.',
} as const;

export type KnownBug = keyof typeof knownBugs;
export const knownBugNames = Object.keys(knownBugs) as KnownBug[];

/** Which known bugs a run reproduces (none by default). */
export type KnownBugs = ReadonlySet<KnownBug>;
export const noKnownBugs: KnownBugs = new Set();
