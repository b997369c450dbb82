#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis (PyPI), against
# a real herald: every operation of GET /api/openapi.json, in schemathesis' coverage,
# fuzzing and stateful phases, with the checks
#   not_a_server_error, status_code_conformance, content_type_conformance,
#   response_schema_conformance
# Any failure fails the run: fix the code or the document, never exclude.
#
#   scripts/api-fuzz.sh [MAX_EXAMPLES]     # default 50 per operation
#   API_FUZZ_SECONDS=600 scripts/api-fuzz.sh 1000  # a long run: schemathesis'
#                                                  # --max-time, 10 minutes
#
# The server runs with an HMAC issuer (so the notification API answers a user's token)
# and requests carry a token of a user with the SERVICE and ADMIN roles: the admin,
# service and user APIs are all reached past authentication.
#
# Environment: HERALD_BIN (default: build herald-cli in CARGO_TARGET_DIR),
# API_FUZZ_VENV (default $CARGO_TARGET_DIR/api-fuzz-venv), API_FUZZ_SECONDS (schemathesis'
# --max-time), API_FUZZ_ARGS (more schemathesis arguments, e.g. --seed).
# Exit: 0 passed, 1 failures, 3 python3/venv/schemathesis missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
MAX_EXAMPLES="${1:-50}"
VENV="${API_FUZZ_VENV:-$TARGET_DIR/api-fuzz-venv}"
SCHEMATHESIS_PKG="schemathesis==4.32.5"

if [[ ! -x "$VENV/bin/schemathesis" ]]; then
  if ! command -v python3 >/dev/null 2>&1; then
    echo "api-fuzz: python3 is missing" >&2
    exit 3
  fi
  if ! { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --disable-pip-version-check "$SCHEMATHESIS_PKG"; }; then
    echo "api-fuzz: could not install $SCHEMATHESIS_PKG from PyPI" >&2
    exit 3
  fi
fi

HERALD_BIN="${HERALD_BIN:-}"
if [[ -z "$HERALD_BIN" ]]; then
  cargo build -q -p herald-cli
  HERALD_BIN="$TARGET_DIR/debug/herald"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/herald-api-fuzz.XXXXXX")"
HPID=""
cleanup() {
  [[ -n $HPID ]] && kill "$HPID" 2>/dev/null && wait "$HPID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/herald.toml" <<TOML
[server]
http = "127.0.0.1:0"

[database]
url = "sqlite://$WORK/notify.db"

[[auth.issuers]]
issuer = "api-fuzz"
secret = "api-fuzz secret of at least thirty-two bytes"
TOML

TOKEN="$("$HERALD_BIN" token --config "$WORK/herald.toml" --sub fuzzer --role SERVICE --role ADMIN --ttl 2h)"
HERALD_LOG=warn "$HERALD_BIN" serve --config "$WORK/herald.toml" --no-stomp >"$WORK/herald.out" 2>&1 &
HPID=$!
ADDR=""
for _ in $(seq 100); do
  ADDR=$(sed -n -E 's|.*http=([0-9.]+:[0-9]+).*|\1|p' "$WORK/herald.out" | head -1)
  [[ -n $ADDR ]] && break
  sleep 0.05
done
if [[ -z $ADDR ]]; then
  echo "api-fuzz: herald did not start" >&2
  cat "$WORK/herald.out" >&2
  exit 1
fi
echo "api-fuzz: herald at $ADDR, schemathesis $("$VENV/bin/schemathesis" --version | awk '{print $NF}'), $MAX_EXAMPLES examples per operation"

# From the scratch directory: schemathesis keeps a cache in its working directory.
# A long run gives --max-time: fuzzing and stateful testing repeat until it is spent.
long=()
[[ -n ${API_FUZZ_SECONDS:-} ]] && long=(--max-time "$API_FUZZ_SECONDS")
rc=0
# shellcheck disable=SC2086
(cd "$WORK" && "$VENV/bin/schemathesis" run "http://$ADDR/api/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --header "Authorization: Bearer $TOKEN" \
  --max-examples "$MAX_EXAMPLES" --request-timeout 10 --no-color \
  "${long[@]}" ${API_FUZZ_ARGS:-}) || rc=$?
# The server must have survived it.
if ! kill -0 "$HPID" 2>/dev/null; then
  echo "api-fuzz: herald exited during the run" >&2
  tail -20 "$WORK/herald.out" >&2
  rc=1
fi
if grep -q "panicked" "$WORK/herald.out"; then
  echo "api-fuzz: herald panicked:" >&2
  grep -A5 "panicked" "$WORK/herald.out" >&2
  rc=1
fi
exit "$rc"
