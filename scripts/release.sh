#!/usr/bin/env bash
# The release build users ship: `cargo build --release --locked -p herald-cli` (as CI
# and deploy/Dockerfile run it), then the binary without debug info and its line
# tables beside it:
#
#   scripts/release.sh [OUT]     # default $CARGO_TARGET_DIR/dist (target/dist)
#
#   OUT/herald         the server, no .debug_* section, a .gnu_debuglink to herald.debug
#   OUT/herald.debug   its line tables (objcopy --only-keep-debug): keep it beside the
#                      binary and a panic's backtrace names files and lines; without
#                      it, function names only
#
# Fails when the binary still carries debug info or `--version` names no revision.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
OUT="${1:-$TARGET_DIR/dist}"

cargo build --release --locked -p herald-cli
built="$TARGET_DIR/release/herald"
mkdir -p "$OUT"
objcopy --only-keep-debug "$built" "$OUT/herald.debug"
objcopy --strip-debug --add-gnu-debuglink="$OUT/herald.debug" "$built" "$OUT/herald"
chmod 0644 "$OUT/herald.debug"

size() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "release: $OUT/herald $(mib "$(size "$OUT/herald")") ($(size "$OUT/herald") bytes), herald.debug $(mib "$(size "$OUT/herald.debug")"); as built, with line tables: $(mib "$(size "$built")")"
if readelf -S -W "$OUT/herald" | grep -qE '\.debug_(info|line|loc|ranges|str) '; then
  echo "release: ERROR: $OUT/herald still carries debug info" >&2
  exit 1
fi
version=$("$OUT/herald" --version)
echo "release: $version"
if [[ ! $version =~ ^herald\ [0-9]+\.[0-9]+\.[0-9]+\ \(([0-9a-f]{7,}|unknown)\)$ ]]; then
  echo "release: ERROR: --version does not name a revision: '$version'" >&2
  exit 1
fi
