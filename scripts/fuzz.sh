#!/usr/bin/env bash
# Fuzz Herald's parsers: every cargo-fuzz target in fuzz/ for SECONDS each.
#
#   scripts/fuzz.sh [SECONDS]      # default 600 per target
#
# Targets: stomp_decoder (herald-stomp's Decoder: splits, re-encoding), sockjs_payload
# (xhr_send/jsonp_send bodies and forms), redis_wire (the Redis bus's envelope and
# codec), destination (the matcher against the reference grammar), params (query
# strings, forms, cookies). The properties each holds are in its file and in
# crates/herald/src/fuzzing.rs.
#
# Corpora live outside the clone, in $FUZZ_CORPUS_DIR (default
# ~/.cache/herald/fuzz-corpus/<target>), seeded from fuzz/seeds/<target>; crash inputs
# go to $FUZZ_CORPUS_DIR/artifacts/<target>/. Builds go to $CARGO_TARGET_DIR/fuzz
# (default <repo>/target/fuzz; fuzz-none without a sanitizer). cargo-fuzz needs nightly features: RUSTC_BOOTSTRAP=1
# lets the stable toolchain use them. cargo-fuzz is installed from crates.io when
# missing.
#
# Environment: FUZZ_SANITIZER (address, the default, or none: faster to build and
# run, finds panics but not memory errors), FUZZ_TARGETS (a space-separated subset),
# FUZZ_CORPUS_DIR, CARGO_TARGET_DIR.
#
# Prints per target: runs, corpus size, crashes; exits non-zero if any target
# crashed (or could not be built or run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${1:-600}"
[[ "$SECS" =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2; }

if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked"
  cargo install cargo-fuzz --locked
fi

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
CORPUS_ROOT="${FUZZ_CORPUS_DIR:-$HOME/.cache/herald/fuzz-corpus}"
SANITIZER="${FUZZ_SANITIZER:-address}"
# One build per sanitizer, so the sanitized and the plain builds never replace each other.
if [[ "$SANITIZER" == address ]]; then TARGET_DIR="$TARGET_DIR/fuzz"; else TARGET_DIR="$TARGET_DIR/fuzz-$SANITIZER"; fi
read -r -a TARGETS <<<"${FUZZ_TARGETS:-$(cargo fuzz list --fuzz-dir fuzz | tr '\n' ' ')}"
FUZZ=(--fuzz-dir fuzz --sanitizer "$SANITIZER" --target-dir "$TARGET_DIR")
BIN_DIR="$TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release"
# As cargo fuzz run sets it: the bundled SQLite (through sqlx) trips ASan's ODR check.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/herald-fuzz.XXXXXX")"
trap 'rm -rf "$LOG_DIR"' EXIT

echo "fuzz: ${#TARGETS[@]} targets, ${SECS}s each, sanitizer $SANITIZER, corpora in $CORPUS_ROOT"
for t in "${TARGETS[@]}"; do
  if ! cargo fuzz build "${FUZZ[@]}" "$t"; then
    echo "fuzz: building $t failed" >&2
    exit 1
  fi
done

declare -a ROWS=()
FAILED=0
for t in "${TARGETS[@]}"; do
  corpus="$CORPUS_ROOT/$t"
  artifacts="$CORPUS_ROOT/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  if [[ -d "fuzz/seeds/$t" ]]; then
    cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  fi
  before=$(find "$artifacts" -type f | wc -l)
  log="$LOG_DIR/$t.log"
  echo "---- $t"
  rc=0
  # The binary cargo-fuzz built, run as is: nothing is rebuilt while fuzzing.
  "$BIN_DIR/$t" "$corpus" -max_total_time="$SECS" -timeout=20 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1 || rc=$?
  grep -E '^Done [0-9]+ runs' "$log" || tail -n 2 "$log"
  runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -1)
  size=$(find "$corpus" -type f | wc -l)
  crashes=$(( $(find "$artifacts" -type f | wc -l) - before ))
  if ((rc != 0 && crashes == 0)); then crashes="? (exit $rc)"; fi
  if ((rc != 0)); then
    FAILED=$((FAILED + 1))
    grep -E 'panicked|ERROR: |SUMMARY' "$log" | head -5 >&2 || true
    find "$artifacts" -type f -newer "$log" 2>/dev/null | head -3 | sed 's/^/  crash input: /' >&2 || true
  fi
  ROWS+=("$(printf '  %-16s runs %10s   corpus %6s   crashes %s' "$t" "${runs:-?}" "$size" "$crashes")")
done

echo
echo "fuzz summary (${SECS}s per target, sanitizer $SANITIZER):"
printf '%s\n' "${ROWS[@]}"
((FAILED == 0))
