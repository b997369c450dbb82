#!/usr/bin/env bash
# Instructions a Herald binary (or the floor) executes, counted by callgrind: repeatable
# on a busy machine where timings are not.
#
#   bench/callgrind.sh BIN fanout SECONDS [SUBS RATE]   # fixed-rate fan-out
#   bench/callgrind.sh BIN connect N                   # N connects, 64 at a time
#
# BIN is a herald binary or `floor`. Run each twice with different SECONDS or N and
# divide the difference of the instruction counts by the difference of deliveries or
# connections: start-up and set-up cancel out. Prints delivered/connected and Ir; the
# callgrind file stays in $OUT (default /tmp/herald-callgrind) for callgrind_annotate.
set -u
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
BIN=$1; SC=$2; X=$3
B=${BENCH:-$(dirname "$0")/../target/release/herald-bench}
OUT=${OUT:-/tmp/herald-callgrind}; mkdir -p "$OUT"
PORT=$((18300 + RANDOM % 500))
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
name=$(basename "$BIN")-$SC-$X
if [[ $BIN == floor ]]; then
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.out" "$B" floor-server \
    --addr "127.0.0.1:$PORT" --max-seconds 600 >"$OUT/$name.log" 2>&1 & P=$!
  URL=ws://127.0.0.1:$PORT/; RAW=--raw
else
  HERALD_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.out" "$BIN" serve \
    --http "127.0.0.1:$PORT" --no-stomp --database-url sqlite::memory: >"$OUT/$name.log" 2>&1 & P=$!
  URL=ws://127.0.0.1:$PORT/ws; RAW=
fi
for _ in $(seq 600); do port_open "$PORT" && break; sleep 0.1; done
sleep 1
if [[ $SC == fanout ]]; then
  out=$("$B" fanout --subscribers "${4:-500}" --size 100 --duration "$X" --drain 20 \
    --rate "${5:-20}" --url "$URL" $RAW --json 2>/dev/null | tail -1)
  done_=$(echo "$out" | jq '.delivered')
else
  out=$("$B" connect --connections "$X" --concurrency 64 --url "$URL" $RAW --json 2>/dev/null | tail -1)
  done_=$(echo "$out" | jq '.connected')
fi
sleep 3
kill -INT "$P"; wait "$P" 2>/dev/null
ir=$(grep -E '^(summary|totals):' "$OUT/$name.out" | head -1 | awk '{print $2}')
echo "$name done=$done_ Ir=$ir errors=$(echo "$out" | jq -c '.errors')"
