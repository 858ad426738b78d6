// Bugs the fuzzer found that are reported and not fixed yet. The default run leaves out the
// cases that reproduce them, so it stays a clean signal for everything else; `--known-bug NAME`
// (or `--known-bugs` for all) draws them again. Once a bug is fixed, its gate should go: the
// cases become part of every run.

// Fixed so far, their cases now drawn in every run: keepalive-stranger (a stranger's keepalive
// kept another connection's session alive), peer-hello-unbounded (a fake peer hello could buffer
// 256 MiB), non-utf8-lines (bad bytes decoded into U+FFFD and served), long-file-name (a name too
// long for the file system stopped the node from starting).
export const knownBugs: Record<string, string> = {};

export type KnownBug = keyof typeof knownBugs;
export const knownBugNames = Object.keys(knownBugs) as KnownBug[];

/** Which known bugs a run reproduces (none by default). */
export type KnownBugs = ReadonlySet<KnownBug>;
export const noKnownBugs: KnownBugs = new Set();
