#!/usr/bin/env bash
# A soak of Herald: `herald-bench churn` against a fresh release `herald serve`.
#
#   bench/soak.sh                     # 20 minutes, 50 clients (WebSocket and TCP)
#   DURATION=2m WARMUP=30s bench/soak.sh
#   HERALD_CLUSTER__HISTORY_SIZE=0 bench/soak.sh    # any HERALD_* setting reaches the server
#
# It builds `herald` and `herald-bench` in release mode (unless HERALD_BIN and
# BENCH_BIN are given), starts Herald on 127.0.0.1 (HTTP on HPORT, STOMP over TCP on
# SPORT) with an in-memory SQLite database, runs churn with CLIENTS clients for
# DURATION, sampling every SAMPLE (warm-up WARMUP), and stops the server. Both run
# under `nice -n NICE` so that a long soak leaves the cores to interactive work; the
# verdict is about growth, not speed. The table goes to the terminal and to
# OUT/churn.log, the result (one JSON line) to OUT/churn.json; the exit status is
# churn's --check: 1 on any error or when RSS, descriptors or tasks grow after warm-up.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

DURATION=${DURATION:-20m}
CLIENTS=${CLIENTS:-50}
SAMPLE=${SAMPLE:-10s}
WARMUP=${WARMUP:-2m}
NICE=${NICE:-10}
HPORT=${HPORT:-18082}
SPORT=${SPORT:-18614}
OUT=${OUT:-/tmp/herald-soak-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

. "$ROOT/bench/lib.sh"
build_release

HP=
cleanup() { [[ -n $HP ]] && kill "$HP" 2>/dev/null && wait "$HP" 2>/dev/null; }
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$HPORT" "$SPORT"; do
  port_open "$p" && { echo "port $p is in use (set HPORT/SPORT)" >&2; exit 1; }
done

HERALD_LOG=${HERALD_LOG:-warn} nice -n "$NICE" "$HERALD_BIN" serve \
  --http "127.0.0.1:$HPORT" --stomp "127.0.0.1:$SPORT" --database-url sqlite::memory: \
  >"$OUT/herald.log" 2>&1 &
HP=$!
for _ in $(seq 100); do grep -q 'herald listening' "$OUT/herald.log" && break; sleep 0.1; done
grep -q 'herald listening' "$OUT/herald.log" || { echo "herald did not start (see $OUT/herald.log)" >&2; exit 1; }
echo "soak.sh: herald pid $HP, $CLIENTS clients for $DURATION, OUT=$OUT; load: $(cut -d' ' -f1-3 /proc/loadavg)"

nice -n "$NICE" "$BENCH_BIN" churn --url "ws://127.0.0.1:$HPORT/ws" --tcp "127.0.0.1:$SPORT" \
  --pid "$HP" --clients "$CLIENTS" --duration "$DURATION" --sample-every "$SAMPLE" \
  --warmup "$WARMUP" --check --json >"$OUT/churn.json" 2> >(tee "$OUT/churn.log" >&2)
status=$?
echo "soak.sh: load at the end: $(cut -d' ' -f1-3 /proc/loadavg); result in $OUT/churn.json"
exit $status
