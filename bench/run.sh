#!/usr/bin/env bash
# npm run bench: latchkey (3 nodes, Raft) side by side with etcd (3 members) and redis on this
# machine, then the failover time of latchkey and etcd.
#
#   1. builds this checkout if dist/ is missing or older than lib/;
#   2. installs etcd, redis and the bench's npm modules with $BENCH_DIR/install-peers.sh if any
#      is missing;
#   3. $BENCH_DIR/compare.sh "$ROOT": a fresh 3-node latchkey from this checkout (started by
#      peers.sh: node bin/main server --id nK --listen 127.0.0.1:1700K ...) for every workload and
#      run, side by side with the peers, and the table with latchkey/etcd ratios;
#   4. node bench/failover.mjs: kill -9 of the leader -> first grant on the new leader, median of
#      FAILOVER_TRIALS, latchkey vs etcd;
#   5. node bench/restart.mjs: a node restarted with 1,000,000 entries in its log, and with their
#      snapshot, timed until it serves (RESTART_RUNS each; about a minute);
#   6. node $BENCH_DIR/floor.mjs: the machine's physical floor (an NDJSON echo server with 32
#      closed-loop connections; append + fsync latency), then node bench/targets.mjs: the issue-7
#      targets with ratios, whether each is met, and the floor each goal implies (FLOOR=0 skips
#      the floor, ~40 s);
#   7. only with HOSTILE=1: node bench/hostile.mjs, victim latency and node memory under slow and
#      hostile clients (issue 5 item 7). Costs about 8 x (HOSTILE_DURATION + 5) s, ~2 min with
#      the default 10 s phases, on top of the rest; off by default.
# Results: bench/results/<date>-<time>/ (results.jsonl, table.txt, table.md, bench.log, peers.log,
# conditions.txt from compare.sh; failover.jsonl, failover.txt, failover.log from failover.mjs;
# hostile/ from hostile.mjs).
#
# Environment (defaults in brackets):
#   BENCH_DIR        the shared bench folder [$ROOT/../shared/bench]
#   SYSTEMS          peers beside latchkey ["etcd-mutex redis"]; "" = latchkey only
#   WORKLOADS        ["uncontended contended many-locks"]
#   REPEAT [2]  DURATION [10]  CLIENTS [32]; every other compare.sh knob (WARMUP, PROCS,
#                    LATCHKEY_ARGS, BENCH_ARGS, BENCH_STATE_DIR, ...) passes through
#   FAILOVER_TRIALS  [5]; 0 skips the failover measurement
#   FAILOVER_SYSTEMS ["latchkey,etcd"]
#   FAILOVER_ARGS    extra flags for failover.mjs (e.g. "--election-timeout-ms 150")
#   RESTART_RUNS     [3]; 0 skips the restart measurement
#   FLOOR            [1]; 0 skips the floor measurement
#   HOSTILE          [0]; 1 runs bench/hostile.mjs after the rest
#   HOSTILE_DURATION [10] seconds per hostile phase
#   HOSTILE_ARGS     extra flags for hostile.mjs (e.g. "--phases baseline,flood")
#   OUT              the results folder [bench/results/<date>-<time>]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-$ROOT/../shared/bench}"
[ -f "$BENCH_DIR/compare.sh" ] || { echo "bench: no $BENCH_DIR/compare.sh (set BENCH_DIR)" >&2; exit 2; }
BENCH_DIR="$(cd "$BENCH_DIR" && pwd)"

# 1. build if needed
MAIN_JS="$ROOT/dist/lib/cli/main.js"
if [ ! -f "$MAIN_JS" ] || [ -n "$(find "$ROOT/lib" -name '*.ts' -newer "$MAIN_JS" -print -quit)" ]; then
  echo "bench: building $ROOT" >&2
  (cd "$ROOT" && npm run build) || { echo "bench: npm run build failed; not benchmarking a broken build" >&2; exit 1; }
fi

# 2. the peers
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null || ! command -v redis-server >/dev/null \
   || ! command -v redis-cli >/dev/null || [ ! -d "$BENCH_DIR/node_modules/etcd3" ]; then
  "$BENCH_DIR/install-peers.sh"
fi

export SYSTEMS="${SYSTEMS-etcd-mutex redis}"
export WORKLOADS="${WORKLOADS:-uncontended contended many-locks}"
export REPEAT="${REPEAT:-2}" DURATION="${DURATION:-10}" CLIENTS="${CLIENTS:-32}"
export OUT="${OUT:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)}"
FAILOVER_TRIALS="${FAILOVER_TRIALS:-5}"
FAILOVER_SYSTEMS="${FAILOVER_SYSTEMS:-latchkey,etcd}"
RESTART_RUNS="${RESTART_RUNS:-3}"
FLOOR="${FLOOR:-1}"
HOSTILE="${HOSTILE:-0}"
HOSTILE_DURATION="${HOSTILE_DURATION:-10}"
unset LATCHKEY_ENDPOINTS LATCHKEY_PIDS # compare.sh starts latchkey itself from this checkout
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

status=0
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

# 3. side by side
echo "== bench: compare.sh $ROOT (SYSTEMS='$SYSTEMS' WORKLOADS='$WORKLOADS' REPEAT=$REPEAT DURATION=$DURATION CLIENTS=$CLIENTS)" >&2
if ! "$BENCH_DIR/compare.sh" "$ROOT" >/dev/null; then
  echo "bench: compare.sh failed (see $OUT/bench.log and $OUT/peers.log)" >&2
  status=1
fi

# 4. failover
if [ "$FAILOVER_TRIALS" != 0 ]; then
  echo "== bench: failover.mjs --trials $FAILOVER_TRIALS --systems $FAILOVER_SYSTEMS" >&2
  # shellcheck disable=SC2086
  if ! node "$ROOT/bench/failover.mjs" --trials "$FAILOVER_TRIALS" --systems "$FAILOVER_SYSTEMS" \
      --checkout "$ROOT" --bench-dir "$BENCH_DIR" --json-out "$OUT/failover.jsonl" ${FAILOVER_ARGS:-} \
      >"$OUT/failover.txt" 2> >(tee "$OUT/failover.log" >&2); then
    echo "bench: failover.mjs failed (see $OUT/failover.log)" >&2
    status=1
  fi
fi

# 5. restart
if [ "$RESTART_RUNS" != 0 ]; then
  echo "== bench: restart.mjs --entries 1000000 (log, then snapshot) --runs $RESTART_RUNS" >&2
  : >"$OUT/restart.jsonl"
  for variant in "" "--snapshot"; do
    # shellcheck disable=SC2086
    if ! node "$ROOT/bench/restart.mjs" --entries 1000000 --clients 32 --runs "$RESTART_RUNS" $variant \
        >>"$OUT/restart.jsonl" 2>>"$OUT/restart.log"; then
      echo "bench: restart.mjs $variant failed (see $OUT/restart.log)" >&2
      status=1
    fi
  done
fi

# 6. the physical floor, read by targets.mjs
if [ "$FLOOR" != 0 ]; then
  echo "== bench: floor.mjs (loopback NDJSON echo, append + fsync)" >&2
  if ! node "$BENCH_DIR/floor.mjs" --json-out "$OUT/floor.jsonl" >"$OUT/floor.txt" 2>>"$OUT/floor.log"; then
    echo "bench: floor.mjs failed (see $OUT/floor.log)" >&2
    status=1
  fi
fi

# 7. slow and hostile clients
if [ "$HOSTILE" = 1 ]; then
  echo "== bench: hostile.mjs --duration $HOSTILE_DURATION ${HOSTILE_ARGS:-}" >&2
  # shellcheck disable=SC2086
  if ! node "$ROOT/bench/hostile.mjs" --duration "$HOSTILE_DURATION" --out "$OUT/hostile" ${HOSTILE_ARGS:-} \
      >/dev/null 2> >(tee "$OUT/hostile.log" >&2); then
    echo "bench: hostile.mjs failed (see $OUT/hostile.log)" >&2
    status=1
  fi
fi

echo
echo "== side by side: latchkey (3 nodes) vs ${SYSTEMS:-nothing}; $CLIENTS clients, ${DURATION} s runs, $REPEAT run(s) each"
if [ -s "$OUT/table.txt" ]; then cat "$OUT/table.txt"; else echo "(no table: see $OUT/bench.log)"; fi
if [ "$FAILOVER_TRIALS" != 0 ]; then
  echo
  echo "== failover"
  if [ -s "$OUT/failover.txt" ]; then cat "$OUT/failover.txt"; else echo "(no table: see $OUT/failover.log)"; fi
fi
if [ "$HOSTILE" = 1 ]; then
  echo
  echo "== slow and hostile clients"
  if [ -s "$OUT/hostile/hostile.txt" ]; then cat "$OUT/hostile/hostile.txt"; else echo "(no table: see $OUT/hostile.log)"; fi
fi
echo
echo "== issue-7 targets"
node "$ROOT/bench/targets.mjs" "$OUT" || status=1
echo
echo "results in $OUT:"
echo "  results.jsonl, table.txt, table.md, bench.log, peers.log, conditions.txt (compare.sh)"
[ "$FAILOVER_TRIALS" != 0 ] && echo "  failover.jsonl, failover.txt, failover.log (bench/failover.mjs)"
[ "$RESTART_RUNS" != 0 ] && echo "  restart.jsonl, restart.log (bench/restart.mjs)"
[ "$FLOOR" != 0 ] && echo "  floor.jsonl, floor.txt, floor.log (floor.mjs)"
[ "$HOSTILE" = 1 ] && echo "  hostile/hostile.jsonl, hostile/hostile.txt, hostile/n*.log, hostile.log (bench/hostile.mjs)"
exit "$status"
