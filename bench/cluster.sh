#!/usr/bin/env bash
# Herald's cross-node fan-out: 1 node without Redis, 1 node on Redis, 2 and 3 nodes on
# one Redis, 3 nodes on a 3-shard Redis Cluster, side by side in one run, and the
# "Cluster" part of docs/BENCHMARKS.md.
#
#   bench/cluster.sh                 # full run (about 11 minutes with ROUNDS=3)
#   QUICK=1 bench/cluster.sh         # one round, short runs, small N (about 2 minutes)
#
# What it does:
#   1. builds `herald` and `herald-bench` in release mode (unless HERALD_BIN/BENCH_BIN);
#   2. starts a PRIVATE redis-server on a free port (no persistence; the shared Redis
#      on 6379 is never used), and a private 3-master Redis Cluster (no replicas,
#      redis-cli --cluster create) on free ports in OUT/shards;
#   3. runs ROUNDS rounds; each round starts fresh nodes (one without Redis, three on
#      the private Redis) and runs every setup one after the other (the order rotates
#      from round to round), so ratios compare runs made under the same background load:
#        local    1 node, in-process bus (no Redis)
#        redis1   1 node on Redis
#        nodes2   2 nodes: publisher on node 1, subscribers round-robin over nodes 1-2
#        nodes3   3 nodes: publisher on node 1, subscribers round-robin over nodes 1-3
#        shard3   the same 3-node fan-out on the Redis Cluster (one topic: one shard)
#        pairs1   `pairs`: PAIRS publishers on node 1, each to its own topic, their
#                 subscribers round-robin over nodes 1-3, on one Redis (--max)
#        pairs3s  the same on the Redis Cluster (the topics spread over the shards)
#      each with `fanout --max` (throughput) and then, after all the --max runs of the
#      round, `fanout --rate RATE` (latency at a load every setup sustains);
#      before each run on Redis, `CONFIG RESETSTAT`; after it, `INFO commandstats`
#      (Redis commands per published message);
#   4. stops what it started and rewrites the generated part of the Cluster section
#      of docs/BENCHMARKS.md (between the cluster.sh markers; the rest is kept).
#
# Every run is bounded in time and on loopback. Results (JSON lines) and logs go to
# OUT (default /tmp/herald-cluster-DATE). Environment: ROUNDS (3), SUBS (1000), SIZE
# (100), DURATION (6), RATE (20: msg/s for the latency runs), PAIRS (30), DOC
# (docs/BENCHMARKS.md; empty: do not write), HERALD_BIN, BENCH_BIN.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  : "${ROUNDS:=1}" "${SUBS:=200}" "${DURATION:=3}"
fi
ROUNDS=${ROUNDS:-3}
SUBS=${SUBS:-1000}
SIZE=${SIZE:-100}
DURATION=${DURATION:-6}
RATE=${RATE:-20}
PAIRS=${PAIRS:-30}
DOC=${DOC-docs/BENCHMARKS.md}
OUT=${OUT:-/tmp/herald-cluster-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/cluster.log") 2>&1
echo "cluster.sh: OUT=$OUT ROUNDS=$ROUNDS SUBS=$SUBS SIZE=$SIZE DURATION=$DURATION RATE=$RATE"

for tool in redis-server redis-cli jq curl python3; do
  command -v "$tool" >/dev/null || { echo "cluster.sh needs $tool" >&2; exit 1; }
done
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
REDIS_PID= REDIS_PORT=
SHARD_PIDS=() SHARD_PORTS=()
declare -A NODE_PID=() NODE_URL=()
stop_nodes() {
  local n
  for n in "${!NODE_PID[@]}"; do kill "${NODE_PID[$n]}" 2>/dev/null; done
  for n in "${!NODE_PID[@]}"; do wait "${NODE_PID[$n]}" 2>/dev/null; done
  NODE_PID=() NODE_URL=()
}
cleanup() {
  stop_nodes
  if [[ -n $REDIS_PID ]]; then
    kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
    REDIS_PID=
  fi
  local p
  for p in "${SHARD_PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  SHARD_PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 300); do port_open "$1" && return 0; sleep 0.1; done; return 1; }

start_redis() {
  REDIS_PORT=$(free_port)
  [[ $REDIS_PORT == 6379 ]] && REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile "$OUT/redis.log" &
  REDIS_PID=$!
  wait_port "$REDIS_PORT" || { echo "redis-server did not start (see $OUT/redis.log)" >&2; exit 1; }
  echo -10 >"/proc/$REDIS_PID/autogroup" 2>/dev/null || true
  echo "private $(redis-server --version | cut -d' ' -f1-3) on port $REDIS_PORT, pid $REDIS_PID"
}
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }

# start_shards: three cluster-enabled redis-servers (ports whose bus port, +10000, is
# free too) made one Redis Cluster of three masters.
start_shards() {
  mkdir -p "$OUT/shards"
  local i port
  for i in 1 2 3; do
    port=$(free_port)
    while ((port > 55000)) || port_open $((port + 10000)); do port=$(free_port); done
    (cd "$OUT/shards" && exec redis-server --port "$port" --bind 127.0.0.1 --save '' \
      --appendonly no --cluster-enabled yes --cluster-config-file "nodes-$port.conf" \
      --logfile "$OUT/shards/redis-$port.log") &
    SHARD_PIDS+=($!)
    SHARD_PORTS+=("$port")
    wait_port "$port" || { echo "cluster node $port did not start" >&2; exit 1; }
    echo -10 >"/proc/$!/autogroup" 2>/dev/null || true
  done
  redis-cli --cluster create "${SHARD_PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 \
    --cluster-yes >"$OUT/shards/create.log" 2>&1 ||
    { echo "redis-cli --cluster create failed (see $OUT/shards/create.log)" >&2; exit 1; }
  for _ in $(seq 100); do
    redis-cli -p "${SHARD_PORTS[0]}" CLUSTER INFO | grep -q cluster_state:ok && break
    sleep 0.1
  done
  echo "private 3-shard Redis Cluster on ports ${SHARD_PORTS[*]}, pids ${SHARD_PIDS[*]}"
}
# scli ARGS: the same command on every shard.
scli() { local p; for p in "${SHARD_PORTS[@]}"; do redis-cli -p "$p" "$@"; done; }

# start_node NAME [REDIS_URL]: a fresh node on a free port; NODE_PID/NODE_URL[NAME].
start_node() {
  local name=$1 redis=${2:-} port
  port=$(free_port)
  local extra=()
  [[ -n $redis ]] && extra=(--redis-url "$redis")
  HERALD_LOG=${HERALD_LOG:-warn} "$H" serve --http "127.0.0.1:$port" --no-stomp \
    --database-url 'sqlite::memory:' "${extra[@]}" >>"$OUT/node-$name.log" 2>&1 &
  NODE_PID[$name]=$!
  NODE_URL[$name]="ws://127.0.0.1:$port/ws"
  wait_port "$port" || { echo "node $name did not start (see $OUT/node-$name.log)" >&2; exit 1; }
  # Ready once its bus is (the Redis connection is made in the background).
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/health/ready" && break
    sleep 0.1
  done
  echo -10 >"/proc/${NODE_PID[$name]}/autogroup" 2>/dev/null || true
}

# ------------------------------------------------------------------ runs
# commandstats: `INFO commandstats` as one JSON object {command: calls}.
commandstats() {
  rcli INFO commandstats | tr -d '\r' |
    sed -n -E 's/^cmdstat_([^:]+):calls=([0-9]+),.*/"\1":\2/p' | paste -sd, | sed 's/.*/{&}/'
}

# shard_commandstats: `INFO commandstats` of every shard, summed per command.
shard_commandstats() {
  local p
  for p in "${SHARD_PORTS[@]}"; do
    redis-cli -p "$p" INFO commandstats | tr -d '\r' |
      sed -n -E 's/^cmdstat_([^:]+):calls=([0-9]+),.*/"\1":\2/p' | paste -sd, | sed 's/.*/{&}/'
  done | jq -sc 'map(to_entries) | add // [] | group_by(.key) |
    map({key: .[0].key, value: (map(.value) | add)}) | from_entries'
}

# run NAME REDIS(0|1|2) ARGS...: one bench run, its JSON line (with the Redis commands
# counted during it, for runs on Redis: 1 the one Redis, 2 the shards) appended to
# OUT/NAME.jsonl.
run() {
  local name=$1 on_redis=$2; shift 2
  echo "-- $name: herald-bench $*"
  [[ $on_redis == 1 ]] && rcli CONFIG RESETSTAT >/dev/null
  [[ $on_redis == 2 ]] && scli CONFIG RESETSTAT >/dev/null
  local line stats='{}'
  line=$(timeout 300 "$B" "$@" --json 2>>"$OUT/bench.err" | tail -1)
  [[ $on_redis == 1 ]] && stats=$(commandstats)
  # On the shards: the calls of all three, summed per command.
  [[ $on_redis == 2 ]] && stats=$(shard_commandstats)
  if [[ -n $line ]] && line=$(jq -c --argjson rc "$stats" --arg up "$(uptime)" \
    '. + {redis_commands: $rc, uptime: $up}' <<<"$line" 2>/dev/null); then
    echo "$line" >>"$OUT/$name.jsonl"
    jq -c '{d: .delivered_msgs_per_sec, pub: .published, p50: .latency.p50_ms,
      p99: .latency.p99_ms, cpu: .server_cpu_pct, err: .errors, other_cpu: .other_cpu_pct,
      cmds: ((.redis_commands | to_entries | map(select(.key | test("^(info|config)") | not))
              | map(.value) | add // 0) / (if .published > 0 then .published else 1 end))}' <<<"$line"
  else
    echo "   (no result; see $OUT/bench.err)"
  fi
}

FAN=(fanout --subscribers "$SUBS" --size "$SIZE" --duration "$DURATION" --drain 10 --settle 1)
# setup SETUP: the bench arguments (URLs, PIDs) of one setup.
setup_args() {
  case $1 in
    local) echo "--url ${NODE_URL[L]} --pid ${NODE_PID[L]}" ;;
    redis1) echo "--url ${NODE_URL[A]} --pid ${NODE_PID[A]} --pid $REDIS_PID" ;;
    nodes2) echo "--url ${NODE_URL[A]} --subscribe-url ${NODE_URL[A]} --subscribe-url ${NODE_URL[B]}" \
      "--pid ${NODE_PID[A]} --pid ${NODE_PID[B]} --pid $REDIS_PID" ;;
    nodes3) echo "--url ${NODE_URL[A]} --subscribe-url ${NODE_URL[A]} --subscribe-url ${NODE_URL[B]}" \
      "--subscribe-url ${NODE_URL[C]} --pid ${NODE_PID[A]} --pid ${NODE_PID[B]} --pid ${NODE_PID[C]}" \
      "--pid $REDIS_PID" ;;
    shard3) echo "--url ${NODE_URL[D]} --subscribe-url ${NODE_URL[D]} --subscribe-url ${NODE_URL[E]}" \
      "--subscribe-url ${NODE_URL[F]} --pid ${NODE_PID[D]} --pid ${NODE_PID[E]} --pid ${NODE_PID[F]}" \
      "${SHARD_PIDS[*]/#/--pid }" ;;
  esac
}
# pairs_args SETUP: the `pairs` arguments, publishers on the first node.
pairs_args() {
  case $1 in
    pairs1) echo "--url ${NODE_URL[A]} --subscribe-url ${NODE_URL[A]} --subscribe-url ${NODE_URL[B]}" \
      "--subscribe-url ${NODE_URL[C]} --pid ${NODE_PID[A]} --pid ${NODE_PID[B]} --pid ${NODE_PID[C]}" \
      "--pid $REDIS_PID" ;;
    pairs3s) echo "--url ${NODE_URL[D]} --subscribe-url ${NODE_URL[D]} --subscribe-url ${NODE_URL[E]}" \
      "--subscribe-url ${NODE_URL[F]} --pid ${NODE_PID[D]} --pid ${NODE_PID[E]} --pid ${NODE_PID[F]}" \
      "${SHARD_PIDS[*]/#/--pid }" ;;
  esac
}
SETUPS=(local redis1 nodes2 nodes3 shard3)
PAIRS_SETUPS=(pairs1 pairs3s)
PAIR=(pairs --pairs "$PAIRS" --size "$SIZE" --duration "$DURATION" --drain 10 --settle 1 --max)
# on_redis SETUP: 0 (no Redis), 1 (the one Redis), 2 (the shards).
on_redis() {
  case $1 in
    local) echo 0 ;;
    shard3 | pairs3s) echo 2 ;;
    *) echo 1 ;;
  esac
}

start_redis
echo "$REDIS_PID" >"$OUT/redis.pid"
start_shards
echo "${SHARD_PIDS[*]}" >"$OUT/shards.pids"
SHARDS_URL="redis+cluster://$(IFS=,; echo "${SHARD_PORTS[*]/#/127.0.0.1:}")"
for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS ($(uptime | sed 's/.*load/load/'))"
  uptime >>"$OUT/uptime.log"
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  start_node L
  start_node A "$REDIS_URL"
  start_node B "$REDIS_URL"
  start_node C "$REDIS_URL"
  start_node D "$SHARDS_URL"
  start_node E "$SHARDS_URL"
  start_node F "$SHARDS_URL"
  # The order rotates from round to round, so no setup always runs first.
  k=$(((round - 1) % ${#SETUPS[@]}))
  ORDER=("${SETUPS[@]:k}" "${SETUPS[@]:0:k}")
  for s in "${ORDER[@]}"; do
    # shellcheck disable=SC2046
    run "$s-max" "$(on_redis "$s")" "${FAN[@]}" --max $(setup_args "$s")
  done
  for s in "${ORDER[@]}"; do
    # shellcheck disable=SC2046
    run "$s-rate" "$(on_redis "$s")" "${FAN[@]}" --rate "$RATE" $(setup_args "$s")
  done
  k=$(((round - 1) % ${#PAIRS_SETUPS[@]}))
  for s in "${PAIRS_SETUPS[@]:k}" "${PAIRS_SETUPS[@]:0:k}"; do
    # shellcheck disable=SC2046
    run "$s" "$(on_redis "$s")" "${PAIR[@]}" $(pairs_args "$s")
  done
  uptime >>"$OUT/uptime.log"
  stop_nodes
done
REDIS_VERSION=$(redis-server --version | sed -E 's/.* v=([^ ]+).*/\1/')
cleanup

# ------------------------------------------------------------------ docs/BENCHMARKS.md
python3 "$ROOT/bench/summarize_cluster.py" "$OUT" "$DOC" \
  --herald-rev "$HERALD_REV" --redis-version "$REDIS_VERSION" --rounds "$ROUNDS" \
  --subs "$SUBS" --size "$SIZE" --duration "$DURATION" --rate "$RATE"
python3 "$ROOT/bench/summarize_shards.py" "$OUT" "$DOC" --rounds "$ROUNDS" \
  --subs "$SUBS" --size "$SIZE" --duration "$DURATION" --pairs "$PAIRS"
echo "results in $OUT${DOC:+; wrote $DOC}"
