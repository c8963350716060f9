#!/usr/bin/env bash
# The experiment behind docs/javascript.md's "why reuse is not faster for
# hello": builds bench/js-glue/glue.js with componentize-js (exported
# incomingHandler), serves it with warm reuse on a release berth and prints
# the mean cost of each wasi:http call / fetch-API step inside the reused
# instance (third request, so the instance is warm).
#
#   BERTH=path/to/release/berth bench/js-glue.sh
set -euo pipefail
B=${BERTH:?release berth binary}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
D=$(mktemp -d); trap 'kill $PID 2>/dev/null || true; rm -rf "$D"' EXIT
"$ROOT/examples/js-hello/node_modules/.bin/componentize-js" "$ROOT/bench/js-glue/glue.js" \
  --wit "$ROOT/wit/js" --world-name worker -o "$D/glue.wasm" > /dev/null
BERTH_ADMIN_TOKEN=glue "$B" serve --data-dir "$D/data" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 > "$D/out" 2> "$D/log" &
PID=$!
for _ in $(seq 1 200); do grep -q 'admin API listening' "$D/out" 2>/dev/null && break; sleep 0.05; done
DATA=$(sed -n 's/^berth: data plane listening on //p' "$D/out")
ADMIN=$(sed -n 's/^berth: admin API listening on //p' "$D/out")
"$B" deploy glue "$D/glue.wasm" --admin-url "$ADMIN" --token glue > /dev/null
"$B" script settings glue '{"isolation": "reuse"}' --admin-url "$ADMIN" --token glue > /dev/null
for _ in 1 2; do curl -sf -o /dev/null -H 'Host: glue.localhost' "$DATA/warm"; done
curl -sf -H 'Host: glue.localhost' -H 'User-Agent: glue' "$DATA/measure"
