#!/usr/bin/env bash
# JS upload timings (issue 19): upload → first response of a first and a
# second, different componentize-js script on a fresh host, then the first
# request to each after a restart. BERTH=release binary, WASM_DIR=build/wasm.
set -euo pipefail
B=${BERTH:?release berth binary}; W=${WASM_DIR:?build/wasm}
D=$(mktemp -d); export BERTH_ADMIN_TOKEN=jsbench
start() { $B serve --data-dir $D/data --listen 127.0.0.1:18300 --admin-listen 127.0.0.1:18301 > $D/out 2> $D/log & PID=$!; for i in $(seq 1 100); do grep -q 'admin API' $D/out 2>/dev/null && break; sleep 0.05; done; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
first() { # upload NAME FILE → ms from upload start until first 200
  local t0=$(ms)
  $B deploy "$1" "$2" --admin-url http://127.0.0.1:18301 > /dev/null
  until [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $1.localhost" http://127.0.0.1:18300/)" = 200 ]; do :; done
  echo "$1: upload → first response $(( $(ms) - t0 )) ms"
}
stats() {
  curl -s -H "Authorization: Bearer jsbench" http://127.0.0.1:18301/v1/runtime | python3 -c 'import json,sys; r=json.load(sys.stdin)["result"]; print("  compile cache so far: hits", r.get("compile_cache_hits"), "misses", r.get("compile_cache_misses"))'
}
start
first js-one $W/js_hello.wasm; stats
first js-two $W/js_tenant.wasm; stats
# The same code as js-one with one custom section appended (new bytes, new
# sha, identical functions): what the compile cache cannot save even then.
cp $W/js_hello.wasm $D/same-code.wasm
printf '\x00\x0c\x0aberth-testx' >> $D/same-code.wasm
first js-same-code $D/same-code.wasm; stats
grep 'compiled uploaded component' $D/log | sed 's/.*INFO//' || true
kill -TERM $PID; wait $PID || true
start
for i in $(seq 1 100); do grep -q 'preloaded scripts' $D/log && break; sleep 0.05; done
grep 'preloaded scripts' $D/log | sed 's/.*INFO//' || true
for s in js-one js-two js-same-code; do curl -s -o /dev/null -w "$s first request after restart: %{time_total}s\n" -H "Host: $s.localhost" http://127.0.0.1:18300/; done
# The same script again: the instance now lands in a pool slot whose pages
# the first request faulted in and the reset kept resident.
for i in 2 3; do curl -s -o /dev/null -w "js-one request $i after restart: %{time_total}s\n" -H "Host: js-one.localhost" http://127.0.0.1:18300/; done
kill -TERM $PID; wait $PID || true; rm -rf $D
