#!/usr/bin/env bash
# Herald vs RabbitMQ Web-STOMP vs the floor (a bare WebSocket broadcast server), in
# one run, side by side, and docs/BENCHMARKS.md from the results.
#
#   bench/compare.sh                 # full run (about 15-20 minutes)
#   QUICK=1 bench/compare.sh         # one round, short runs, small N (a few minutes)
#
# What it does:
#   1. builds `herald` and `herald-bench` in release mode (unless HERALD_BIN/BENCH_BIN);
#   2. RabbitMQ: installs Debian's rabbitmq-server if missing (raising its fd limit in
#      /etc/default/rabbitmq-server), enables rabbitmq_stomp and rabbitmq_web_stomp,
#      starts it if it is not running (and stops it at the end only then);
#   3. starts the floor server (`herald-bench floor-server`) and Herald (a fresh one
#      per scenario group, with a throwaway SQLite database for notifications);
#   4. runs ROUNDS rounds; in each round every scenario runs against Herald, RabbitMQ
#      and the floor one after the other, so ratios compare runs made under the same
#      background load:
#        fanout --max            SUBS subscribers, 100 B, DURATION s
#        fanout --rate           at half of Herald's median max (floor: same rate;
#                                RabbitMQ: half of its own max)
#        pairs --max             PAIRS pairs (Herald, RabbitMQ)
#        connect                 STORM_N connections, STORM_C at a time
#        idle                    IDLE_N sessions against a fresh server (Herald, floor;
#                                RabbitMQ with IDLE_RABBIT_N)
#        notify --max / --rate   NOTIFY_USERS users, REST API (Herald only; skipped when
#                                the binary has no notifications API)
#   5. stops what it started and rewrites the generated part of docs/BENCHMARKS.md
#      (between the compare.sh markers; the rest of the file is kept).
#
# Every run is bounded in time and on loopback. Results (JSON lines) and logs go to
# OUT (default /tmp/herald-compare-DATE). Environment: ROUNDS (3), SUBS (1000),
# DURATION (8), PAIRS (100), STORM_N (20000), STORM_C (64), IDLE_N (19000: the hard
# RLIMIT_NOFILE of this machine is 20000, which this script raises the soft limit to;
# Herald's default limits.max_connections is that less 256, so 19,744 fit),
# IDLE_RABBIT_N (5000), NOTIFY_USERS (1000),
# RABBIT (1; 0 skips RabbitMQ), DOC (docs/BENCHMARKS.md; empty: do not write), PROFILE
# (1: perf record Herald during one fanout --max run, into OUT/perf-herald.txt).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  : "${ROUNDS:=1}" "${SUBS:=200}" "${DURATION:=3}" "${PAIRS:=20}" "${STORM_N:=3000}"
  : "${IDLE_N:=2000}" "${IDLE_RABBIT_N:=1000}" "${NOTIFY_USERS:=100}"
fi
ROUNDS=${ROUNDS:-3}
SUBS=${SUBS:-1000}
DURATION=${DURATION:-8}
PAIRS=${PAIRS:-100}
STORM_N=${STORM_N:-20000}
STORM_C=${STORM_C:-64}
IDLE_N=${IDLE_N:-19000}
IDLE_RABBIT_N=${IDLE_RABBIT_N:-5000}
NOTIFY_USERS=${NOTIFY_USERS:-1000}
RABBIT=${RABBIT:-1}
PROFILE=${PROFILE:-0}
DOC=${DOC-docs/BENCHMARKS.md}
OUT=${OUT:-/tmp/herald-compare-$(date +%Y%m%d-%H%M%S)}
HPORT=${HPORT:-18081}
FPORT=${FPORT:-18090}
RURL=ws://127.0.0.1:15674/ws
HURL=ws://127.0.0.1:$HPORT/ws
FURL=ws://127.0.0.1:$FPORT/
mkdir -p "$OUT"
exec > >(tee -a "$OUT/compare.log") 2>&1
echo "compare.sh: OUT=$OUT ROUNDS=$ROUNDS SUBS=$SUBS DURATION=$DURATION"

# Priority over builds in other sessions when allowed (root); harmless otherwise.
echo -10 >/proc/self/autogroup 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ------------------------------------------------------------------ build
HERALD_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
[[ -n "${HERALD_BIN:-}" ]] && HERALD_REV="prebuilt $HERALD_BIN"
. "$ROOT/bench/lib.sh"
build_release
H=$HERALD_BIN
B=$BENCH_BIN

# ------------------------------------------------------------------ processes we start
HP= FP= RABBIT_STARTED=0
cleanup() {
  [[ -n $HP ]] && kill "$HP" 2>/dev/null && wait "$HP" 2>/dev/null
  [[ -n $FP ]] && kill "$FP" 2>/dev/null && wait "$FP" 2>/dev/null
  if [[ $RABBIT_STARTED == 1 ]]; then
    echo "== stopping the RabbitMQ this script started"
    rabbitmqctl stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 300); do port_open "$1" && return 0; sleep 0.1; done; return 1; }

HAS_NOTIFY=0
"$H" serve --help 2>/dev/null | grep -q -- '--database-url' && HAS_NOTIFY=1

start_herald() {
  local db="$OUT/notify-$RANDOM.db"
  local extra=()
  [[ $HAS_NOTIFY == 1 ]] && extra=(--database-url "sqlite://$db")
  HERALD_LOG=${HERALD_LOG:-warn} "$H" serve --http "127.0.0.1:$HPORT" --no-stomp "${extra[@]}" \
    >>"$OUT/herald.log" 2>&1 &
  HP=$!
  wait_port "$HPORT" || { echo "herald did not start (see $OUT/herald.log)" >&2; exit 1; }
  echo -10 >"/proc/$HP/autogroup" 2>/dev/null || true
}
stop_herald() { [[ -n $HP ]] && { kill "$HP"; wait "$HP" 2>/dev/null; HP=; }; rm -f "$OUT"/notify-*.db*; }
start_floor() {
  "$B" floor-server --addr "127.0.0.1:$FPORT" --max-seconds 7200 >>"$OUT/floor.log" 2>&1 &
  FP=$!
  wait_port "$FPORT" || { echo "floor server did not start" >&2; exit 1; }
  echo -10 >"/proc/$FP/autogroup" 2>/dev/null || true
}
stop_floor() { [[ -n $FP ]] && { kill "$FP"; wait "$FP" 2>/dev/null; FP=; }; }

# ------------------------------------------------------------------ RabbitMQ
RP=
if [[ $RABBIT == 1 ]]; then
  if ! dpkg -s rabbitmq-server >/dev/null 2>&1; then
    echo "== installing rabbitmq-server"
    DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server >>"$OUT/apt.log" 2>&1 ||
      { apt-get update >>"$OUT/apt.log" 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server >>"$OUT/apt.log" 2>&1; } ||
      { echo "could not install rabbitmq-server; RABBIT=0" >&2; RABBIT=0; }
  fi
fi
if [[ $RABBIT == 1 ]]; then
  # 1000 WebSocket subscribers need more than the default 1024 descriptors.
  if ! grep -q '^ulimit -n' /etc/default/rabbitmq-server 2>/dev/null; then
    echo "ulimit -n 20000" >>/etc/default/rabbitmq-server
  fi
  rabbitmq-plugins --offline enable rabbitmq_stomp rabbitmq_web_stomp >>"$OUT/rabbit.log" 2>&1 ||
    rabbitmq-plugins enable rabbitmq_stomp rabbitmq_web_stomp >>"$OUT/rabbit.log" 2>&1 || true
  # A RabbitMQ already running with fewer descriptors than the runs need (a service
  # started at boot keeps the default 1024, and RabbitMQ sizes its socket limit from it
  # at start) is restarted once with the limit above; it is left running afterwards,
  # as it was found.
  RP=$(pgrep -f 'beam.smp.*rabbit' | head -1)
  if [[ -n $RP ]]; then
    fds=$(awk '/open files/ {print $4}' "/proc/$RP/limits")
    need=$(( (IDLE_RABBIT_N > SUBS ? IDLE_RABBIT_N : SUBS) + 1000 ))
    if [[ $fds =~ ^[0-9]+$ ]] && (( fds < need )); then
      echo "== restarting RabbitMQ: its fd limit $fds is below the $need these runs need"
      # Not `service ... restart`: Debian's init script then waits on a pid file that a
      # node started some other way does not have, for ever.
      timeout 120 rabbitmqctl stop >>"$OUT/rabbit.log" 2>&1
      for _ in $(seq 600); do pgrep -f 'beam.smp.*rabbit' >/dev/null || break; sleep 0.1; done
      (ulimit -n 20000; timeout 120 service rabbitmq-server start ||
        rabbitmq-server -detached) >>"$OUT/rabbit.log" 2>&1
      for _ in $(seq 600); do port_open 15674 && break; sleep 0.1; done
    fi
  fi
  if ! port_open 15674; then
    echo "== starting RabbitMQ"
    if ! pgrep -f 'beam.smp.*rabbit' >/dev/null; then
      (service rabbitmq-server start || /etc/init.d/rabbitmq-server start ||
        rabbitmq-server -detached) >>"$OUT/rabbit.log" 2>&1
      RABBIT_STARTED=1
    fi
    rabbitmq-plugins enable rabbitmq_stomp rabbitmq_web_stomp >>"$OUT/rabbit.log" 2>&1 || true
    for _ in $(seq 600); do port_open 15674 && break; sleep 0.1; done
  fi
  if port_open 15674; then
    RP=$(pgrep -f 'beam.smp.*rabbit' | head -1)
    echo -10 >"/proc/$RP/autogroup" 2>/dev/null || true
    RABBIT_VERSION=$(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null)
    echo "RabbitMQ $RABBIT_VERSION, pid $RP, fd limit $(awk '/open files/ {print $4}' "/proc/$RP/limits")"
  else
    echo "RabbitMQ Web-STOMP is not listening on 15674; RABBIT=0" >&2
    RABBIT=0
  fi
fi
R_AUTH=(--login guest --passcode guest)

# ------------------------------------------------------------------ runs
# run NAME ARGS...: one bench run, its JSON line appended to OUT/NAME.jsonl.
run() {
  local name=$1; shift
  echo "-- $name: herald-bench $*"
  local line
  line=$(timeout 300 "$B" "$@" --json 2>>"$OUT/bench.err" | tail -1)
  if [[ -n $line ]]; then
    echo "$line" >>"$OUT/$name.jsonl"
    echo "$line" | jq -c '{d: .delivered_msgs_per_sec, c: .connects_per_sec,
      rss: .server_rss_per_connection_bytes, p50: .latency.p50_ms, p99: .latency.p99_ms,
      err: .errors, other_cpu: .other_cpu_pct}' 2>/dev/null
  else
    echo "   (no result; see $OUT/bench.err)"
  fi
}
median() { # FILE JQ-EXPR
  [[ -s $1 ]] || { echo null; return; }
  jq -s "[.[] | $2 | select(. != null)] | sort | if length == 0 then null else .[(length - 1) / 2 | floor] end" "$1"
}

FAN=(fanout --subscribers "$SUBS" --size 100 --duration "$DURATION" --drain 10)
start_floor
for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS ($(uptime | sed 's/.*load/load/'))"
  start_herald
  if [[ $PROFILE == 1 && $round == 1 ]] && command -v perf >/dev/null; then
    (sleep 3; timeout 5 perf record -F 999 -g -p "$HP" -o "$OUT/perf-herald.data" >/dev/null 2>&1) &
  fi
  run herald-fanout-max "${FAN[@]}" --max --url "$HURL" --pid "$HP"
  [[ $RABBIT == 1 ]] && run rabbit-fanout-max "${FAN[@]}" --max --url "$RURL" --pid "$RP" "${R_AUTH[@]}"
  run floor-fanout-max "${FAN[@]}" --max --url "$FURL" --raw --pid "$FP"
  run herald-pairs-max pairs --pairs "$PAIRS" --size 100 --duration "$DURATION" --max --url "$HURL" --pid "$HP"
  [[ $RABBIT == 1 ]] && run rabbit-pairs-max pairs --pairs "$PAIRS" --size 100 --duration "$DURATION" --max \
    --url "$RURL" --pid "$RP" "${R_AUTH[@]}"
  run herald-connect connect --connections "$STORM_N" --concurrency "$STORM_C" --duration 60 --url "$HURL" --pid "$HP"
  [[ $RABBIT == 1 ]] && run rabbit-connect connect --connections "$((STORM_N / 4))" --concurrency "$STORM_C" \
    --duration 60 --url "$RURL" --pid "$RP" "${R_AUTH[@]}"
  run floor-connect connect --connections "$STORM_N" --concurrency "$STORM_C" --duration 60 --url "$FURL" --raw --pid "$FP"
  if [[ $HAS_NOTIFY == 1 ]]; then
    run herald-notify-max notify --users "$NOTIFY_USERS" --max --duration "$DURATION" --url "$HURL" --pid "$HP"
  fi
  stop_herald
done

# Half of the maximum: Herald's median max rate, per publisher = delivered / SUBS.
HMAX=$(median "$OUT/herald-fanout-max.jsonl" .delivered_msgs_per_sec)
RMAX=$(median "$OUT/rabbit-fanout-max.jsonl" .delivered_msgs_per_sec)
HALF=$(jq -n "($HMAX // 0) / 2 / $SUBS | floor | if . < 1 then 1 else . end")
RHALF=$(jq -n "($RMAX // 0) / 2 / $SUBS | floor | if . < 1 then 1 else . end")
echo "== half rate: Herald/floor $HALF msg/s per publisher, RabbitMQ $RHALF"
NHALF=
if [[ $HAS_NOTIFY == 1 ]]; then
  NMAX=$(median "$OUT/herald-notify-max.jsonl" .requests_per_sec)
  NHALF=$(jq -n "($NMAX // 0) / 2 | floor | if . < 1 then 1 else . end")
fi
for round in $(seq "$ROUNDS"); do
  echo "== half-rate round $round of $ROUNDS"
  start_herald
  run herald-fanout-half "${FAN[@]}" --rate "$HALF" --url "$HURL" --pid "$HP"
  [[ $RABBIT == 1 ]] && run rabbit-fanout-half "${FAN[@]}" --rate "$RHALF" --url "$RURL" --pid "$RP" "${R_AUTH[@]}"
  run floor-fanout-half "${FAN[@]}" --rate "$HALF" --url "$FURL" --raw --pid "$FP"
  [[ -n $NHALF ]] && run herald-notify-half notify --users "$NOTIFY_USERS" --rate "$NHALF" --duration "$DURATION" \
    --url "$HURL" --pid "$HP"
  stop_herald
done
stop_floor

# Idle memory: against freshly started servers only.
for round in $(seq "$ROUNDS"); do
  echo "== idle round $round of $ROUNDS"
  start_herald; sleep 1
  run herald-idle idle --connections "$IDLE_N" --concurrency 64 --settle 5 --url "$HURL" --pid "$HP"
  stop_herald
  start_floor; sleep 1
  run floor-idle idle --connections "$IDLE_N" --concurrency 64 --settle 5 --url "$FURL" --raw --pid "$FP"
  stop_floor
done
if [[ $RABBIT == 1 ]]; then
  # RabbitMQ is not restarted for this (it may be someone else's): one run.
  run rabbit-idle idle --connections "$IDLE_RABBIT_N" --concurrency 64 --settle 5 --url "$RURL" --pid "$RP" "${R_AUTH[@]}"
fi

if [[ -f "$OUT/perf-herald.data" ]]; then
  perf report -i "$OUT/perf-herald.data" --no-children --percent-limit 1 --stdio \
    >"$OUT/perf-herald.txt" 2>/dev/null || true
fi

# ------------------------------------------------------------------ docs/BENCHMARKS.md
[[ -z $DOC ]] && { echo "results in $OUT"; exit 0; }
python3 "$ROOT/bench/summarize.py" "$OUT" "$DOC" \
  --herald-rev "$HERALD_REV" --rabbit-version "${RABBIT_VERSION:-}" \
  --subs "$SUBS" --duration "$DURATION" --pairs "$PAIRS" --storm "$STORM_N" --storm-c "$STORM_C" \
  --idle "$IDLE_N" --idle-rabbit "$IDLE_RABBIT_N" --notify-users "$NOTIFY_USERS" \
  --half "$HALF" --rabbit-half "$RHALF" --notify-half "${NHALF:-}" --rounds "$ROUNDS"
echo "results in $OUT; wrote $DOC"
