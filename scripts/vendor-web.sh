#!/usr/bin/env bash
# Copies the browser builds of @stomp/stompjs and sockjs-client, with their licenses,
# from the npm registry (through tests/browser's lockfile) into crates/herald/web/vendor/,
# where rust-embed puts them inside the herald binary.
#
# Run once when the pinned versions change, and commit the result: building or running
# the server never needs npm.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="$ROOT/tests/browser"
OUT="$ROOT/crates/herald/web/vendor"

(cd "$PKG" && npm ci --no-audit --no-fund)
mkdir -p "$OUT"
NM="$PKG/node_modules"
cp "$NM/@stomp/stompjs/bundles/stomp.umd.min.js" "$OUT/stomp.umd.min.js"
cp "$NM/@stomp/stompjs/LICENSE" "$OUT/stompjs.LICENSE"
cp "$NM/sockjs-client/dist/sockjs.min.js" "$OUT/sockjs.min.js"
cp "$NM/sockjs-client/LICENSE" "$OUT/sockjs-client.LICENSE"
{
  echo "Vendored by scripts/vendor-web.sh from the npm registry; do not edit."
  for p in @stomp/stompjs sockjs-client; do
    node -e 'const p=require(process.argv[1]+"/package.json");console.log(`${p.name} ${p.version} (${p.license})`)' "$NM/$p"
  done
} >"$OUT/VERSIONS.txt"
# The source maps are not copied: strip the pointer so browsers do not ask for them.
sed -i -E 's#//[#@] sourceMappingURL=[^ ]*$##' "$OUT/stomp.umd.min.js" "$OUT/sockjs.min.js"
ls -l "$OUT"
