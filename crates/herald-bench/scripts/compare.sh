#!/bin/bash
# Herald vs RabbitMQ Web-STOMP, 3 runs each, JSON lines into OUTDIR.
#
#   crates/herald-bench/scripts/compare.sh OUTDIR [HERALD_BIN] [BENCH_BIN]
#
# Scenarios: fanout to 1000 subscribers of one topic (100-byte bodies, --max,
# 10 s) on Herald and on RabbitMQ (ws://127.0.0.1:15674/ws, guest/guest), the same
# at a fixed 5 msg/s, and Herald's RSS per idle session at 10,000 sessions (each
# run against a freshly started Herald). Set RABBIT=0 to skip RabbitMQ.
#
# On a shared machine, run it in its own session so that its autogroup can be
# given priority over builds in other sessions (needs root; skipped otherwise):
#   setsid crates/herald-bench/scripts/compare.sh /tmp/bench-out
set -u
OUT=${1:?usage: compare.sh OUTDIR [HERALD_BIN] [BENCH_BIN]}
H=${2:-target/release/herald}
B=${3:-target/release/herald-bench}
mkdir -p "$OUT"
echo -10 > /proc/self/autogroup 2>/dev/null || true
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
PORT=${PORT:-18081}
URL=ws://127.0.0.1:$PORT/ws
HP=

start_herald() {
  : > "$OUT/herald.out"
  "$H" serve --http 127.0.0.1:$PORT --no-stomp > "$OUT/herald.out" 2>> "$OUT/herald.err" &
  HP=$!
  for _ in $(seq 100); do grep -q listening "$OUT/herald.out" && return; sleep 0.1; done
  echo "herald did not start" >&2; exit 1
}
stop_herald() { kill "$HP"; wait "$HP"; }
trap '[ -n "$HP" ] && kill "$HP" 2>/dev/null' EXIT

fanout() { # NAME URL PID MODE... : three runs
  local name=$1 url=$2 pid=$3; shift 3
  for _ in 1 2 3; do
    "$B" fanout --url "$url" --subscribers 1000 --size 100 --duration 10 --pid "$pid" --json "$@" \
      2>> "$OUT/bench.err" | tee -a "$OUT/$name.jsonl"
  done
}

start_herald
fanout herald-fanout "$URL" "$HP" --max
fanout herald-fanout-rate5 "$URL" "$HP" --rate 5
stop_herald

for _ in 1 2 3; do
  start_herald
  sleep 1
  "$B" idle --url "$URL" --connections 10000 --pid "$HP" --json 2>> "$OUT/bench.err" \
    | tee -a "$OUT/herald-idle.jsonl"
  stop_herald
done

if [ "${RABBIT:-1}" != 0 ]; then
  RP=$(pgrep -f 'beam.smp.*rabbit' | head -1)
  echo -10 > "/proc/$RP/autogroup" 2>/dev/null || true
  R=(--login guest --passcode guest)
  fanout rabbit-fanout ws://127.0.0.1:15674/ws "$RP" --max "${R[@]}"
  fanout rabbit-fanout-rate5 ws://127.0.0.1:15674/ws "$RP" --rate 5 "${R[@]}"
  echo 0 > "/proc/$RP/autogroup" 2>/dev/null || true
fi
