#!/usr/bin/env bash
# Interleaved A/B runs of prebuilt Herald binaries (and the floor) under the same load.
#
#   bench/ab.sh ROUNDS fanout|pairs|connect|idle VARIANT...
#
# VARIANT is `floor` or the suffix of a binary $BINS/herald-VARIANT (e.g. copy each
# build's target/release/herald to $BINS/herald-base, $BINS/herald-new). Each round
# runs every variant once, one after the other, so background load hits them alike.
# One JSON line per run: delivered msg/s (d) or connects/s (c), server CPU % of one
# core, server CPU µs per delivery or per connection, latency, CPU used by others;
# `idle` (IDLE sessions, each subscribed, then left alone) reports the server's RSS
# per session in bytes (rss), where lower is better.
# `pairs` (PAIRS publishers each with its own topic and one subscriber) has no floor:
# the floor server only broadcasts.
# Environment: BINS (default /tmp/herald-bins), BENCH (herald-bench binary, default
# $BINS/herald-bench), SUBS (1000), PAIRS (100), DUR (5 s), STORM (10000
# connections), IDLE (10000 sessions), PORT.
set -u
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
R=$1; SC=$2; shift 2
case $SC in fanout|pairs|connect|idle) ;; *) echo "unknown scenario '$SC'" >&2; exit 2 ;; esac
BINS=${BINS:-/tmp/herald-bins}
B=${BENCH:-$BINS/herald-bench}
PORT=${PORT:-18181}
SUBS=${SUBS:-1000}; PAIRS=${PAIRS:-100}; DUR=${DUR:-5}; STORM=${STORM:-10000}
IDLE=${IDLE:-10000}
OUT=$(mktemp); trap 'rm -f "$OUT"' EXIT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for r in $(seq "$R"); do
  for v in "$@"; do
    if [[ $v == floor ]]; then
      "$B" floor-server --addr "127.0.0.1:$PORT" --max-seconds 600 >/dev/null 2>&1 & P=$!
      URL=ws://127.0.0.1:$PORT/; RAW=--raw
    else
      HERALD_LOG=warn "$BINS/herald-$v" serve --http "127.0.0.1:$PORT" --no-stomp \
        --database-url sqlite::memory: >/dev/null 2>&1 & P=$!
      URL=ws://127.0.0.1:$PORT/ws; RAW=
    fi
    for _ in $(seq 100); do port_open "$PORT" && break; sleep 0.1; done
    load=$(cut -d' ' -f1 /proc/loadavg)
    if [[ $SC == fanout ]]; then
      "$B" fanout --subscribers "$SUBS" --size 100 --duration "$DUR" --drain 10 --max \
        --url "$URL" $RAW --pid "$P" --json 2>/dev/null | tail -1 |
        jq -c --arg v "$v" --arg r "$r" --arg l "$load" '{r:$r, v:$v, load:$l,
          d:(.delivered_msgs_per_sec|floor), cpu:(.server_cpu_pct|floor),
          us_per_delivery:(.server_cpu_pct*10000/.delivered_msgs_per_sec),
          p99:.latency.p99_ms, other_cpu:(.other_cpu_pct|floor), errors:.errors}'
    elif [[ $SC == pairs ]]; then
      "$B" pairs --pairs "$PAIRS" --size 100 --duration "$DUR" --drain 10 --max \
        --url "$URL" --pid "$P" --json 2>/dev/null | tail -1 |
        jq -c --arg v "$v" --arg r "$r" --arg l "$load" '{r:$r, v:$v, load:$l,
          d:(.delivered_msgs_per_sec|floor), cpu:(.server_cpu_pct|floor),
          us_per_delivery:(.server_cpu_pct*10000/.delivered_msgs_per_sec),
          p99:.latency.p99_ms, other_cpu:(.other_cpu_pct|floor), errors:.errors}'
    elif [[ $SC == idle ]]; then
      "$B" idle --connections "$IDLE" --concurrency 64 --settle 5 \
        --url "$URL" --pid "$P" --json 2>/dev/null | tail -1 |
        jq -c --arg v "$v" --arg r "$r" --arg l "$load" '{r:$r, v:$v, load:$l,
          rss:(.server_rss_per_connection_bytes|floor), cpu:.server_idle_cpu_pct,
          other_cpu:(.other_cpu_pct // 0|floor), errors:.errors}'
    else
      "$B" connect --connections "$STORM" --concurrency 64 --duration 60 \
        --url "$URL" $RAW --pid "$P" --json 2>/dev/null | tail -1 |
        jq -c --arg v "$v" --arg r "$r" --arg l "$load" '{r:$r, v:$v, load:$l,
          c:(.connects_per_sec|floor), cpu:(.server_cpu_pct|floor),
          us_per_connection:(.server_cpu_pct*10000/.connects_per_sec),
          p50:.handshake_latency.p50_ms, other_cpu:(.other_cpu_pct|floor), errors:.errors}'
    fi | tee -a "$OUT"
    kill "$P"; wait "$P" 2>/dev/null
    sleep 1
  done
done
# Medians per variant, and each variant's ratio to the first one named.
jq -s -r --arg first "$1" '
  def median: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
  (map(select(.v == $first)) | map(.d // .c // .rss) | median) as $base
  | group_by(.v)[] | (map(.d // .c // .rss) | median) as $m
  | if .[0].rss then
      "median \(.[0].v): \($m) B RSS per idle session, \(length) rounds, ratio to \($first) \(if $base then ($m / $base * 1000 | round / 1000) else "-" end)"
    else
      "median \(.[0].v): \($m) per s, \(map(.us_per_delivery // .us_per_connection) | median | . * 100 | round / 100) µs server CPU each, \(length) rounds, ratio to \($first) \(if $base then ($m / $base * 1000 | round / 1000) else "-" end)"
    end
' "$OUT"
