#!/usr/bin/env bash
# npm run bench: latchkey side by side with etcd (3 members) and redis, on this machine, with the
# workloads of ../shared/bench (uncontended cycles/s, contended handoffs/s, p50/p99).
#
# Until replication lands, latchkey runs as ONE node with --fsync batch (group commit: every
# answer waits for the fsync covering it). The peers are installed by ../shared/bench's
# install-peers.sh when missing.
#
# Environment: BENCH_DIR (../shared/bench), SYSTEMS ("etcd-mutex redis"),
# WORKLOADS ("uncontended contended"), REPEAT (2), DURATION (10), CLIENTS (32), LATCHKEY_PORT (17001).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-$ROOT/../shared/bench}"
[ -f "$BENCH_DIR/bench.mjs" ] || { echo "bench: no $BENCH_DIR/bench.mjs (set BENCH_DIR)" >&2; exit 2; }
BENCH_DIR="$(cd "$BENCH_DIR" && pwd)"
PORT="${LATCHKEY_PORT:-17001}"

[ -f "$ROOT/dist/lib/cli/main.js" ] || (cd "$ROOT" && npm run build)
if ! command -v etcd >/dev/null || ! command -v redis-server >/dev/null || [ ! -d "$BENCH_DIR/node_modules" ]; then
  "$BENCH_DIR/install-peers.sh"
fi

DATA="$(mktemp -d "${TMPDIR:-/tmp}/latchkey-bench-XXXXXX")"
node "$ROOT/bin/main" server --id n1 --listen "127.0.0.1:$PORT" --peers "n1=127.0.0.1:$PORT" \
  --data "$DATA" --fsync batch --log-level warn 2>"$DATA.log" &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT

export LATCHKEY_ENDPOINTS="127.0.0.1:$PORT" LATCHKEY_PIDS="$PID"
export SYSTEMS="${SYSTEMS-etcd-mutex redis}"
export WORKLOADS="${WORKLOADS:-uncontended contended}"
export REPEAT="${REPEAT:-2}" DURATION="${DURATION:-10}" CLIENTS="${CLIENTS:-32}"
export OUT="${OUT:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)}"
"$BENCH_DIR/compare.sh"
