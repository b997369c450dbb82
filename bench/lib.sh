# Shared by the bench/ runners: `. "$ROOT/bench/lib.sh"`.

# build_release: sets HERALD_BIN and BENCH_BIN, building both in release mode unless
# both were given; exits when the build fails.
build_release() {
  if [[ -z "${HERALD_BIN:-}" || -z "${BENCH_BIN:-}" ]]; then
    echo "== cargo build --release -p herald-cli -p herald-bench"
    cargo build --release -p herald-cli -p herald-bench || { echo "build failed" >&2; exit 1; }
    local td=${CARGO_TARGET_DIR:-$ROOT/target}
    HERALD_BIN=${HERALD_BIN:-$td/release/herald}
    BENCH_BIN=${BENCH_BIN:-$td/release/herald-bench}
  fi
}
