#!/usr/bin/env bash
# Berth benchmarks (`make bench`; never part of `make test`).
#
# Each case starts a fresh release `berth serve` on loopback with its own
# config and data dir, deploys the hello component, warms up, then drives it
# with wrk (1 thread, 16 connections). Paired cases run alternately, several
# rounds, so drift on the machine hits both sides alike; the table reports
# the median round. Results go to stdout and to docs/benchmarks.md.
#
# Cases (numbers as in the performance issue):
#   1  berth (built-in router, fresh instance, limits on) vs
#      `wasmtime serve -O pooling-allocator` on the same hello component
#   3  limits on vs off ([limits] enforce) on hello, and "fuel on": limits
#      on plus [limits] fuel, which makes the engine count instructions
#      (its cost is the ratio to limits on)
#   noisy neighbour: hello (limits on, cpu_ms = 50) while another tenant
#      (tests/fixtures tenant, /spin) loops at concurrency 8, each request
#      cut at cpu_ms; its ratio to "limits on" is the noisy-neighbour figure
#      (target >= 0.5); and the same with a spinner that makes a cheap host
#      call every 100,000 rounds (/spin-calls), the heavy-lane escape of
#      issue 25
#   5  cold start: upload → first response; first request after a restart
#   6  SCRIPTS (10,000) scripts in one namespace, requests spread at random:
#      req/s and resident memory
#   4  berth with warm reuse (isolation = "reuse") vs a raw axum hello server,
#      and the floor under it: the same hello in a warm instance behind axum
#      with Wasmtime's wasi-http and nothing of Berth's (WASI_HTTP_FLOOR,
#      host/examples/wasi_http_floor.rs); and the floor under case 1: a
#      fresh instance per request, same server, Berth's pool settings
#   2  dispatch worker → user worker: berth's [[dispatch]] with
#      examples/dispatcher in front of hello vs workerd's dispatcher →
#      service binding → user worker (bench/workerd/); and the floor under
#      it: two fresh hello instances per request, one after the other
#      (wasi_http_floor's chain mode)
#   JS hello: the componentize-js hello (js_hello.wasm) in berth vs
#      `wasmtime serve` on the same component vs workerd running a JS hello,
#      and the same hello uploaded as plain JavaScript (bench/js/hello.js),
#      built by the host (JS_ENGINE_DIR, `make js-engine`)
#   JS uploads: the JS engine's first preparation (compile) and a restart's
#      (cache), then plain-JS upload → first response for 5 different
#      scripts, with the build's phases
# Peers are optional: a case or peer whose binary or component is missing is
# skipped with a message (WASMTIME, AXUM_HELLO, WASI_HTTP_FLOOR, WORKERD
# empty = skipped).
set -euo pipefail

BERTH=${BERTH:?path to the release berth binary}
WASMTIME=${WASMTIME:-}
AXUM_HELLO=${AXUM_HELLO:-}
WASI_HTTP_FLOOR=${WASI_HTTP_FLOOR:-}   # host/examples/wasi_http_floor (release)
WORKERD=${WORKERD:-}        # native workerd binary (bench/install-workerd.sh prints it)
SCRIPTS=${SCRIPTS:-10000}
WASM_DIR=${WASM_DIR:?directory with hello.wasm}
JS_ENGINE_DIR=${JS_ENGINE_DIR:-}   # build/js-engine (make js-engine); empty = plain-JS cases skipped
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
OUT=${OUT:-docs/benchmarks.md}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y --no-install-recommends wrk >&2
  else sudo apt-get install -y --no-install-recommends wrk >&2; fi
fi
# WORK (servers started inside $(…) / <(…) subshells are not jobs of this
# shell, so every helper lists its pids in $WORK/pids), WASM_ABS ([[dispatch]]
# worker paths are relative to the config file), median, berth_serve,
# workerd_serve, dispatch_toml.
BENCH_NAME=bench
. "$BENCH_DIR/lib.sh"
if [ -n "$WORKERD" ] && ! [ -x "$WORKERD" ]; then
  echo "bench: WORKERD=$WORKERD is not an executable; workerd peers skipped" >&2
  WORKERD=
fi
now_ms() { date +%s%3N; }

# measure NAME URL [HOST] → prints "req_per_sec p50 p99": the one wrk invocation
# of every case (2 s warm-up, then DURATION with latency), failing on any
# non-2xx response.
measure() {
  local name=$1 url=$2 args=()
  [ -n "${3:-}" ] && args=(-H "Host: $3")
  wrk -t1 -c16 -d2s "${args[@]}" "$url/" > /dev/null
  local result
  result=$(wrk -t1 -c16 -d"$DURATION" --latency "${args[@]}" "$url/")
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$result")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$result")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$result")
  errors=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$result")
  if [ -n "$errors" ]; then echo "bench: $name had $errors non-2xx responses" >&2; exit 1; fi
  echo "$rps $p50 $p99"
}

# start_berth NAME CONFIG_TEXT → a fresh `berth serve` on ephemeral loopback
# ports; sets BERTH_PID, BERTH_DATA and BERTH_ADMIN (URLs).
start_berth() { berth_serve "$BERTH" "$1" "$2"; }

# run_case NAME CONFIG_TEXT [reuse|noisy|noisy-host] → prints "req_per_sec p50 p99"
# once its server (and spinner) are gone: callers read it through a process
# substitution, which does not wait for the subshell, so printing earlier
# let a spinner's last second and a draining server overlap the next case.
run_case() {
  local result
  start_berth "$1" "$2"
  "$BERTH" deploy hello "$WASM_DIR/hello.wasm" --admin-url "$BERTH_ADMIN" --token bench > /dev/null
  if [ "${3:-}" = reuse ]; then
    "$BERTH" script settings hello '{"isolation": "reuse"}' --admin-url "$BERTH_ADMIN" --token bench > /dev/null
  fi
  local spin=
  if [ "${3:-}" = noisy ] || [ "${3:-}" = noisy-host ]; then
    local route=/spin; [ "${3:-}" = noisy-host ] && route=/spin-calls
    "$BERTH" deploy spinner "$WASM_DIR/tenant.wasm" --admin-url "$BERTH_ADMIN" --token bench > /dev/null
    wrk -t1 -c8 -d"$(( ${DURATION%s} + 4 ))s" -H "Host: spinner.localhost" "$BERTH_DATA$route" > /dev/null &
    spin=$!
    sleep 1
  fi
  result=$(measure "$1" "$BERTH_DATA" hello.localhost) || exit 1
  [ -z "$spin" ] || wait "$spin" 2>/dev/null || true
  berth_stop
  echo "$result"
}


# run_plain NAME BINARY ARGS… → "req_per_sec p50 p99" of a server that
# prints `listening on URL` (axum_hello, wasi_http_floor).
run_plain() {
  local name=$1; shift
  "$@" > "$WORK/$name.out" 2>&1 &
  local pid=$!
  echo "$pid" >> "$WORK/pids"
  for _ in $(seq 1 200); do grep -q 'listening on' "$WORK/$name.out" 2>/dev/null && break; sleep 0.05; done
  local url; url=$(sed -n 's/^listening on //p' "$WORK/$name.out")
  if [ -z "$url" ]; then echo "bench: $name did not start:" >&2; cat "$WORK/$name.out" >&2; exit 1; fi
  local result; result=$(measure "$name" "$url") || exit 1
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo "$result"
}
run_axum() { run_plain raw-axum "$AXUM_HELLO" 127.0.0.1:0; }
# run_floor [warm|fresh|chain]: wasi_http_floor's modes (see its doc).
run_floor() { run_plain "wasi-http-floor-${1:-warm}" "$WASI_HTTP_FLOOR" "$WASM_DIR/hello.wasm" 127.0.0.1:0 "${1:-warm}"; }

declare -A RPS P50 P99
for round in $(seq 1 "$ROUNDS"); do
  for case in limits-on limits-off fuel-on noisy noisy-host; do
    enforce=true; [ "$case" = limits-off ] && enforce=false
    fuel=; [ "$case" = fuel-on ] && fuel="fuel = 1_000_000_000"
    extra=; mode=
    case "$case" in noisy|noisy-host) extra="cpu_ms = 50"; mode=$case ;; esac
    read -r rps p50 p99 < <(run_case "$case" "[limits]
enforce = $enforce
$fuel
$extra" $mode)
    echo "round $round  $case  ${rps} req/s  p50 ${p50}  p99 ${p99}" >&2
    RPS[$case]+="$rps "; P50[$case]+="$p50 "; P99[$case]+="$p99 "
  done
  # Case 1's floor, in the same rounds as hello.
  if [ -n "$WASI_HTTP_FLOOR" ]; then
    read -r rps p50 p99 < <(run_floor fresh)
    echo "round $round  wasi-http-floor-fresh  ${rps} req/s  p50 ${p50}  p99 ${p99}" >&2
    RPS[floor-fresh]+="$rps "; P50[floor-fresh]+="$p50 "; P99[floor-fresh]+="$p99 "
  fi
done

# wasmtime serve on the same component, same wrk settings.
# run_wasmtime [COMPONENT [EXTRA -S FLAGS…]] (default: hello.wasm)
run_wasmtime() {
  local port=$((20000 + RANDOM % 20000))
  local component=${1:-$WASM_DIR/hello.wasm}
  shift || true
  # -S cli: hello (Rust std) and js_hello import wasi:cli, which serve links only on request.
  "$WASMTIME" serve -O pooling-allocator -S cli "$@" --addr "127.0.0.1:$port" "$component" > "$WORK/wasmtime.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
  wrk -t1 -c16 -d2s "http://127.0.0.1:$port/" > /dev/null
  local result
  result=$(wrk -t1 -c16 -d"$DURATION" --latency "http://127.0.0.1:$port/")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo "$(awk '/^Requests\/sec:/ {print $2}' <<<"$result") $(awk '$1 == "50%" {print $2}' <<<"$result") $(awk '$1 == "99%" {print $2}' <<<"$result")"
}

if [ -n "$WASMTIME" ]; then
  for round in $(seq 1 "$ROUNDS"); do
    read -r rps p50 p99 < <(run_wasmtime)
    echo "round $round  wasmtime-serve  ${rps} req/s  p50 ${p50}  p99 ${p99}" >&2
    RPS[wasmtime]+="$rps "; P50[wasmtime]+="$p50 "; P99[wasmtime]+="$p99 "
  done
fi

# Case 4: warm reuse vs the raw axum ceiling.
for round in $(seq 1 "$ROUNDS"); do
  read -r rps p50 p99 < <(run_case reuse "" reuse)
  echo "round $round  berth-reuse  ${rps} req/s  p50 ${p50}  p99 ${p99}" >&2
  RPS[reuse]+="$rps "; P50[reuse]+="$p50 "; P99[reuse]+="$p99 "
  if [ -n "$AXUM_HELLO" ]; then
    read -r rps p50 p99 < <(run_axum)
    echo "round $round  raw-axum  ${rps} req/s  p50 ${p50}  p99 ${p99}" >&2
    RPS[axum]+="$rps "; P50[axum]+="$p50 "; P99[axum]+="$p99 "
  fi
  if [ -n "$WASI_HTTP_FLOOR" ]; then
    read -r rps p50 p99 < <(run_floor)
    echo "round $round  wasi-http-floor  ${rps} req/s  p50 ${p50}  p99 ${p99}" >&2
    RPS[floor]+="$rps "; P50[floor]+="$p50 "; P99[floor]+="$p99 "
  fi
done

# workerd peers (bench/workerd/config.capnp). start_workerd CONFIG [PORT]
# serves the config's const CONFIG (hello | dispatch) on 127.0.0.1:PORT
# (default 0: a free port, which workerd reports on its control fd); sets
# WORKERD_PID and WORKERD_URL.
start_workerd() { workerd_serve "$WORKERD" "$1" "${2:-0}"; }
stop_workerd() { kill -TERM "$WORKERD_PID"; wait "$WORKERD_PID" 2>/dev/null || true; }
run_workerd() { start_workerd "$1"; measure "workerd-$1" "$WORKERD_URL"; stop_workerd; }

# Case 2, Berth's side: the example dispatch worker (as `make run` configures
# it) in front of hello, deployed as "user" in the dispatch namespace; every
# request goes client → dispatcher.wasm → dispatcher.get("user") → hello.
# The per-customer limits the dispatch cases' dispatcher sets (its vars;
# bench/dispatch-pairs.sh configures the same).
DISPATCH_LIMITS='CPU_MS = "50", WALL_MS = "5000", MEMORY_MB = "64"'
# run_berth_dispatch [reuse]: with `reuse`, the dispatch worker keeps its
# instance warm between requests ([[dispatch]] isolation); the user worker
# stays fresh.
run_berth_dispatch() {
  local isolation=
  [ "${1:-}" = reuse ] && isolation='isolation = "reuse"'
  start_berth dispatch "$(dispatch_toml "$DISPATCH_LIMITS")
$isolation"
  "$BERTH" deploy -n customers user "$WASM_DIR/hello.wasm" --admin-url "$BERTH_ADMIN" --token bench > /dev/null
  measure berth-dispatch "$BERTH_DATA" user.platform.localhost
  berth_stop
}

# JS hello, Berth's side: js_hello.wasm through the built-in router.
run_berth_js() {
  start_berth js ""
  "$BERTH" deploy hello-js "$WASM_DIR/js_hello.wasm" --admin-url "$BERTH_ADMIN" --token bench > /dev/null
  measure berth-js "$BERTH_DATA" hello-js.localhost
  berth_stop
}

# Plain JavaScript built on the host: a host with the JS engine (its
# compiled code cached in $JS_CACHE, shared by every such host of the run).
JS_CACHE="$WORK/js-cache"
start_berth_js() {
  start_berth "$1" "[js]
engine_dir = \"$JS_ENGINE_DIR\"
cache_dir = \"$JS_CACHE\""
  for _ in $(seq 1 3000); do
    curl -sf -H 'authorization: Bearer bench' "$BERTH_ADMIN/v1/js" | grep -q '"state":"ready"' && return
    sleep 0.1
  done
  echo "bench: the JS engine did not become ready" >&2; exit 1
}
run_berth_js_plain() {
  start_berth_js js-plain
  curl -sf -X PUT -H 'authorization: Bearer bench' -H 'content-type: application/javascript+module' \
    --data-binary @"$BENCH_DIR/js/hello.js" "$BERTH_ADMIN/v1/namespaces/default/scripts/hello-js" > /dev/null
  measure berth-js-plain "$BERTH_DATA" hello-js.localhost
  berth_stop
}

# JS hello with warm reuse: the same worker built as an exported
# incomingHandler (examples/js-hello/src/reusable.js), isolation = "reuse".
run_berth_js_reuse() {
  start_berth js-reuse ""
  "$BERTH" deploy hello-js "$WASM_DIR/js_hello_reuse.wasm" --admin-url "$BERTH_ADMIN" --token bench > /dev/null
  "$BERTH" script settings hello-js '{"isolation": "reuse"}' --admin-url "$BERTH_ADMIN" --token bench > /dev/null
  measure berth-js-reuse "$BERTH_DATA" hello-js.localhost
  berth_stop
}

# JS dispatch: examples/js-dispatcher as the [[dispatch]] worker in front of
# js_hello (both componentize-js, both fresh per request).
run_berth_js_dispatch() {
  start_berth js-dispatch "$(dispatch_toml "$DISPATCH_LIMITS" js_dispatcher.wasm)"
  "$BERTH" deploy -n customers user "$WASM_DIR/js_hello.wasm" --admin-url "$BERTH_ADMIN" --token bench > /dev/null
  measure berth-js-dispatch "$BERTH_DATA" user.platform.localhost
  berth_stop
}

# record KEY "rps p50 p99" LABEL: logs one round and keeps it for the tables.
record() {
  local key=$1 rps p50 p99
  read -r rps p50 p99 <<<"$2"
  [ -n "$rps" ] || { echo "bench: $3 gave no result" >&2; tail -5 "$WORK/wasmtime.log" >&2 2>/dev/null; exit 1; }
  echo "round $round  $3  ${rps} req/s  p50 ${p50}  p99 ${p99}" >&2
  RPS[$key]+="$rps "; P50[$key]+="$p50 "; P99[$key]+="$p99 "
}

# Case 2: dispatch worker → user worker.
CASE2=yes
if [ ! -f "$WASM_DIR/dispatcher.wasm" ]; then
  echo "bench: case 2 skipped: $WASM_DIR/dispatcher.wasm not found (make guests builds it)" >&2
  CASE2=
elif [ -z "$WORKERD" ]; then
  echo "bench: case 2 runs without its workerd peer: WORKERD not set (bench/install-workerd.sh installs it)" >&2
fi
if [ -n "$CASE2" ]; then
  for round in $(seq 1 "$ROUNDS"); do
    record dispatch "$(run_berth_dispatch)" berth-dispatch
    record dispatch-reuse "$(run_berth_dispatch reuse)" berth-dispatch-reuse
    if [ -n "$WORKERD" ]; then record workerd-dispatch "$(run_workerd dispatch)" workerd-dispatch; fi
    if [ -n "$WASI_HTTP_FLOOR" ]; then record floor-chain "$(run_floor chain)" wasi-http-floor-chain; fi
  done
fi

# JS hello: the same componentize-js component in berth and in wasmtime
# serve, and a JS hello in workerd.
CASEJS=yes
if [ ! -f "$WASM_DIR/js_hello.wasm" ]; then
  echo "bench: JS hello case skipped: $WASM_DIR/js_hello.wasm not found (make js builds it)" >&2
  CASEJS=
else
  [ -n "$WASMTIME" ] || echo "bench: JS hello case runs without its wasmtime serve peer: WASMTIME not set" >&2
  [ -n "$WORKERD" ] || echo "bench: JS hello case runs without its workerd peer: WORKERD not set (bench/install-workerd.sh installs it)" >&2
fi
# JS uploads (before the JS rounds, which reuse the cache this warms): the
# engine prepared on a cold cache (compiles SpiderMonkey's code twice: for
# serving and for the build sandbox), then on a restart (loads the cache),
# then upload → first response of 5 different scripts, each with the phases
# the host reports.
JS_ENGINE_COLD=; JS_ENGINE_WARM=; JS_PLAIN_UPLOADS=(); JS_PLAIN_PHASES=()
if [ -n "$JS_ENGINE_DIR" ]; then
  t0=$(now_ms); start_berth_js js-engine-cold; JS_ENGINE_COLD=$(( $(now_ms) - t0 )); berth_stop
  t0=$(now_ms); start_berth_js js-engine-warm; JS_ENGINE_WARM=$(( $(now_ms) - t0 ))
  for i in 1 2 3 4 5; do
    src="export default { async fetch(request, env) { return new Response('script $i says ' + new URL(request.url).pathname); } };"
    t0=$(now_ms)
    reply=$(curl -sf -X PUT -H 'authorization: Bearer bench' -H 'content-type: application/javascript+module' \
      --data-binary "$src" "$BERTH_ADMIN/v1/namespaces/default/scripts/plain-$i")
    curl -sf -o /dev/null -H "Host: plain-$i.localhost" "$BERTH_DATA/"
    JS_PLAIN_UPLOADS+=("$(( $(now_ms) - t0 ))")
    JS_PLAIN_PHASES+=("$(python3 -c 'import json,sys; t=json.load(sys.stdin)["result"]["build"]["timings_ms"]; print("init %.0f, snapshot %.0f, assemble %.0f ms" % (t["init_ms"], t["snapshot_ms"], t["assemble_ms"]))' <<<"$reply")")
  done
  berth_stop
  echo "JS plain uploads: engine cold ${JS_ENGINE_COLD} ms, warm ${JS_ENGINE_WARM} ms; upload→first response ${JS_PLAIN_UPLOADS[*]} ms" >&2
fi

if [ -n "$CASEJS" ]; then
  for round in $(seq 1 "$ROUNDS"); do
    record js "$(run_berth_js)" berth-js
    if [ -n "$JS_ENGINE_DIR" ]; then record js-plain "$(run_berth_js_plain)" berth-js-plain; fi
    if [ -f "$WASM_DIR/js_hello_reuse.wasm" ]; then record js-reuse "$(run_berth_js_reuse)" berth-js-reuse; fi
    if [ -f "$WASM_DIR/js_dispatcher.wasm" ]; then record js-dispatch "$(run_berth_js_dispatch)" berth-js-dispatch; fi
    if [ -n "$WASMTIME" ]; then record wasmtime-js "$(run_wasmtime "$WASM_DIR/js_hello.wasm" -S keyvalue)" wasmtime-serve-js; fi
    if [ -n "$WORKERD" ]; then record workerd-hello "$(run_workerd hello)" workerd-hello; fi
  done
fi

# Case 5: cold start.
cold_dir="$WORK/cold"; mkdir -p "$cold_dir"
BERTH_ADMIN_TOKEN=bench "$BERTH" serve --data-dir "$cold_dir/data" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 > "$cold_dir/out" 2> "$cold_dir/log" &
cold_pid=$!
for _ in $(seq 1 200); do grep -q 'admin API listening' "$cold_dir/out" 2>/dev/null && break; sleep 0.05; done
data=$(sed -n 's/^berth: data plane listening on //p' "$cold_dir/out")
admin=$(sed -n 's/^berth: admin API listening on //p' "$cold_dir/out")
t0=$(now_ms)
curl -sf -X PUT -H 'authorization: Bearer bench' -H 'content-type: application/wasm' \
  --data-binary @"$WASM_DIR/hello.wasm" "$admin/v1/namespaces/default/scripts/cold" > /dev/null
curl -sf -H 'Host: cold.localhost' "$data/" > /dev/null
t1=$(now_ms)
COLD_UPLOAD=$((t1 - t0))
kill -TERM "$cold_pid"; wait "$cold_pid" 2>/dev/null || true
BERTH_ADMIN_TOKEN=bench "$BERTH" serve --data-dir "$cold_dir/data" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 > "$cold_dir/out2" 2>> "$cold_dir/log" &
cold_pid=$!
for _ in $(seq 1 200); do grep -q 'admin API listening' "$cold_dir/out2" 2>/dev/null && break; sleep 0.05; done
data=$(sed -n 's/^berth: data plane listening on //p' "$cold_dir/out2")
COLD_RESTART=$(curl -sf -o /dev/null -w '%{time_total}' -H 'Host: cold.localhost' "$data/" | awk '{printf "%.1f", $1 * 1000}')
kill -TERM "$cold_pid"; wait "$cold_pid" 2>/dev/null || true
echo "cold start: upload→first response ${COLD_UPLOAD} ms; first request after restart ${COLD_RESTART} ms" >&2

# Case 5, JavaScript: upload → first response of a first JS script on a
# fresh host (compiles SpiderMonkey), then of a second, different one (the
# compile cache supplies the engine), then the first request to the second
# after a restart (the background preload has loaded it).
JS_UPLOAD1=; JS_UPLOAD2=; JS_RESTART=
if [ -f "$WASM_DIR/js_hello.wasm" ] && [ -f "$WASM_DIR/js_hello_reuse.wasm" ]; then
  jscold="$WORK/jscold"; mkdir -p "$jscold"
  js_start() {
    BERTH_ADMIN_TOKEN=bench "$BERTH" serve --data-dir "$jscold/data" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 > "$jscold/out" 2>> "$jscold/log" &
    jscold_pid=$!
    for _ in $(seq 1 200); do grep -q 'admin API listening' "$jscold/out" 2>/dev/null && break; sleep 0.05; done
    data=$(sed -n 's/^berth: data plane listening on //p' "$jscold/out")
    admin=$(sed -n 's/^berth: admin API listening on //p' "$jscold/out")
  }
  js_upload() { # NAME FILE → ms from upload start to the first response
    local t0; t0=$(now_ms)
    curl -sf -X PUT -H 'authorization: Bearer bench' -H 'content-type: application/wasm' \
      --data-binary @"$2" "$admin/v1/namespaces/default/scripts/$1" > /dev/null
    curl -sf -o /dev/null -H "Host: $1.localhost" "$data/"
    echo $(( $(now_ms) - t0 ))
  }
  js_start
  JS_UPLOAD1=$(js_upload js-one "$WASM_DIR/js_hello.wasm")
  JS_UPLOAD2=$(js_upload js-two "$WASM_DIR/js_hello_reuse.wasm")
  kill -TERM "$jscold_pid"; wait "$jscold_pid" 2>/dev/null || true
  : > "$jscold/log"
  js_start
  for _ in $(seq 1 400); do grep -q 'preloaded scripts' "$jscold/log" 2>/dev/null && break; sleep 0.05; done
  JS_RESTART=$(curl -sf -o /dev/null -w '%{time_total}' -H 'Host: js-two.localhost' "$data/" | awk '{printf "%.1f", $1 * 1000}')
  kill -TERM "$jscold_pid"; wait "$jscold_pid" 2>/dev/null || true
  echo "JS cold start: first upload ${JS_UPLOAD1} ms, second ${JS_UPLOAD2} ms, first request after restart ${JS_RESTART} ms" >&2
fi

# Case 6: many scripts, random hosts.
many_dir="$WORK/many"; mkdir -p "$many_dir"
printf '[runtime]\ncomponent_cache_size = %s\n' "$SCRIPTS" > "$many_dir/berth.toml"
BERTH_ADMIN_TOKEN=bench "$BERTH" serve --config "$many_dir/berth.toml" --data-dir "$many_dir/data" \
  --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 > "$many_dir/out" 2> "$many_dir/log" &
many_pid=$!
for _ in $(seq 1 200); do grep -q 'admin API listening' "$many_dir/out" 2>/dev/null && break; sleep 0.05; done
data=$(sed -n 's/^berth: data plane listening on //p' "$many_dir/out")
admin=$(sed -n 's/^berth: admin API listening on //p' "$many_dir/out")
t0=$(now_ms)
for i in $(seq 0 $((SCRIPTS - 1))); do
  printf 'url = "%s"\noutput = "/dev/null"\n' "$admin/v1/namespaces/default/scripts/s$i"
done > "$many_dir/urls"
curl -sf --no-progress-meter --parallel --parallel-max 8 -X PUT -H 'authorization: Bearer bench' \
  -H 'content-type: application/wasm' --data-binary @"$WASM_DIR/hello.wasm" -K "$many_dir/urls"
DEPLOY_MS=$(( $(now_ms) - t0 ))
cat > "$many_dir/random.lua" <<LUA
request = function()
  return wrk.format(nil, "/", {Host = "s" .. math.random(0, $((SCRIPTS - 1))) .. ".localhost"})
end
LUA
wrk -t1 -c16 -d2s -s "$many_dir/random.lua" "$data/" > /dev/null
many=$(wrk -t1 -c16 -d"$DURATION" --latency -s "$many_dir/random.lua" "$data/")
MANY_RPS=$(awk '/^Requests\/sec:/ {print $2}' <<<"$many")
MANY_P99=$(awk '$1 == "99%" {print $2}' <<<"$many")
MANY_RSS=$(awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' "/proc/$many_pid/status")
kill -TERM "$many_pid"; wait "$many_pid" 2>/dev/null || true
echo "many scripts: $SCRIPTS deployed in ${DEPLOY_MS} ms; ${MANY_RPS} req/s p99 ${MANY_P99}; RSS ${MANY_RSS}" >&2

pick() { # case field → median value (latencies keep their unit)
  local values=$2
  if [ "$1" = rps ]; then tr ' ' '\n' <<<"$values" | sed '/^$/d' | median
  else tr ' ' '\n' <<<"$values" | sed '/^$/d' | awk '{v=$1; u=v; sub(/[0-9.]+/,"",u); sub(/[a-z]+$/,"",v); m=(u=="us"?0.001:(u=="s"?1000:1)); print v*m}' | median | awk '{printf "%.2fms", $1}'
  fi
}

on_rps=$(pick rps "${RPS[limits-on]}"); off_rps=$(pick rps "${RPS[limits-off]}")
ratio=$(awk -v a="$on_rps" -v b="$off_rps" 'BEGIN {printf "%.3f", a/b}')
cost=$(awk -v a="$on_rps" -v b="$off_rps" 'BEGIN {printf "%.1f", (1-a/b)*100}')
fuel_rps=$(pick rps "${RPS[fuel-on]}")
fuel_ratio=$(awk -v a="$fuel_rps" -v b="$on_rps" 'BEGIN {printf "%.3f", a/b}')
noisy_rps=$(pick rps "${RPS[noisy]}")
noisy_ratio=$(awk -v a="$noisy_rps" -v b="$on_rps" 'BEGIN {printf "%.2f", a/b}')
noisy_host_rps=$(pick rps "${RPS[noisy-host]}")
noisy_host_ratio=$(awk -v a="$noisy_host_rps" -v b="$on_rps" 'BEGIN {printf "%.2f", a/b}')

table="| Case | req/s (median of $ROUNDS) | p50 | p99 | vs limits-off |
|---|---|---|---|---|
| hello, fresh instance, limits on | $on_rps | $(pick lat "${P50[limits-on]}") | $(pick lat "${P99[limits-on]}") | $ratio |
| hello, fresh instance, limits off | $off_rps | $(pick lat "${P50[limits-off]}") | $(pick lat "${P99[limits-off]}") | 1.000 |
| hello, fresh instance, limits on + fuel (÷ limits on: $fuel_ratio) | $fuel_rps | $(pick lat "${P50[fuel-on]}") | $(pick lat "${P99[fuel-on]}") | $(awk -v a="$fuel_rps" -v b="$off_rps" 'BEGIN {printf "%.3f", a/b}') |
| noisy neighbour: hello next to a tenant spinning at concurrency 8, cpu_ms 50 (÷ limits on: **$noisy_ratio**, target ≥ 0.5) | $noisy_rps | $(pick lat "${P50[noisy]}") | $(pick lat "${P99[noisy]}") | $(awk -v a="$noisy_rps" -v b="$off_rps" 'BEGIN {printf "%.3f", a/b}') |
| noisy neighbour, host-call spinner: the tenant spins with a cheap host call every 100k rounds (/spin-calls) (÷ limits on: **$noisy_host_ratio**, target ≥ 0.5) | $noisy_host_rps | $(pick lat "${P50[noisy-host]}") | $(pick lat "${P99[noisy-host]}") | $(awk -v a="$noisy_host_rps" -v b="$off_rps" 'BEGIN {printf "%.3f", a/b}') |"
if [ -n "$WASMTIME" ]; then
  wt_rps=$(pick rps "${RPS[wasmtime]}")
  vs_wt=$(awk -v a="$on_rps" -v b="$wt_rps" 'BEGIN {printf "%.2f", a/b}')
  table="$table
| wasmtime serve 48 -O pooling-allocator -S cli (case 1 peer) | $wt_rps | $(pick lat "${P50[wasmtime]}") | $(pick lat "${P99[wasmtime]}") | berth ÷ wasmtime: **$vs_wt** (target ≥ 3.0, issue 29) |"
fi
reuse_rps=$(pick rps "${RPS[reuse]}")
table="$table
| hello, warm reuse (case 4) | $reuse_rps | $(pick lat "${P50[reuse]}") | $(pick lat "${P99[reuse]}") | $(awk -v a="$reuse_rps" -v b="$off_rps" 'BEGIN {printf "%.3f", a/b}') |"
if [ -n "$AXUM_HELLO" ]; then
  axum_rps=$(pick rps "${RPS[axum]}")
  table="$table
| raw axum hello, no wasm (case 4 ceiling) | $axum_rps | $(pick lat "${P50[axum]}") | $(pick lat "${P99[axum]}") | warm reuse ÷ axum: **$(awk -v a="$reuse_rps" -v b="$axum_rps" 'BEGIN {printf "%.2f", a/b}')** (target ≥ 0.6) |"
fi
if [ -n "$WASI_HTTP_FLOOR" ]; then
  floor_rps=$(pick rps "${RPS[floor]}")
  floor_vs_axum=
  [ -n "$AXUM_HELLO" ] && floor_vs_axum="; floor ÷ axum: **$(awk -v a="$floor_rps" -v b="$axum_rps" 'BEGIN {printf "%.2f", a/b}')**"
  table="$table
| hello in a warm instance, Wasmtime's wasi-http behind axum, nothing of Berth's (case 4 floor) | $floor_rps | $(pick lat "${P50[floor]}") | $(pick lat "${P99[floor]}") | warm reuse ÷ floor: **$(awk -v a="$reuse_rps" -v b="$floor_rps" 'BEGIN {printf "%.2f", a/b}')**$floor_vs_axum |"
  fresh_floor_rps=$(pick rps "${RPS[floor-fresh]}")
  table="$table
| hello in a fresh instance per request, the same floor server on Berth's pool settings (case 1 floor) | $fresh_floor_rps | $(pick lat "${P50[floor-fresh]}") | $(pick lat "${P99[floor-fresh]}") | hello fresh (limits on) ÷ floor: **$(awk -v a="$on_rps" -v b="$fresh_floor_rps" 'BEGIN {printf "%.2f", a/b}')** |"
fi
many_ratio=$(awk -v a="$MANY_RPS" -v b="$on_rps" 'BEGIN {printf "%.2f", a/b}')
echo "$table"
echo "limits cost: ${cost}% of throughput (target: at most 5%)"

div() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
row() { # KEY LABEL LAST_COLUMN → one table row from the medians of KEY
  echo "| $2 | $(pick rps "${RPS[$1]}") | $(pick lat "${P50[$1]}") | $(pick lat "${P99[$1]}") | $3 |"
}
SKIPPED=()
WORKERD_VERSION=
[ -n "$WORKERD" ] && WORKERD_VERSION=$("$WORKERD" --version 2>/dev/null | awk '{print $2}')

dispatch_table=
if [ -n "$CASE2" ]; then
  dispatch_rps=$(pick rps "${RPS[dispatch]}")
  dispatch_table="| Case | req/s (median of $ROUNDS) | p50 | p99 | ratio |
|---|---|---|---|---|
$(row dispatch "berth: dispatcher.wasm → dispatcher.get(\"user\") → hello.wasm" "÷ hello direct (limits on): $(div "$dispatch_rps" "$on_rps")${wt_rps:+; ÷ wasmtime serve single component: **$(div "$dispatch_rps" "$wt_rps")** (target ≥ 1.0)}")"
  reuse_dispatch_rps=$(pick rps "${RPS[dispatch-reuse]}")
  dispatch_table="$dispatch_table
$(row dispatch-reuse "berth: the same, dispatch worker with warm reuse (\`[[dispatch]] isolation\`), user worker fresh" "÷ hello direct: $(div "$reuse_dispatch_rps" "$on_rps")${wt_rps:+; ÷ wasmtime serve single component: **$(div "$reuse_dispatch_rps" "$wt_rps")**}${WORKERD:+; ÷ workerd: **$(div "$reuse_dispatch_rps" "$(pick rps "${RPS[workerd-dispatch]}")")**}")"
  if [ -n "$WORKERD" ]; then
    dispatch_table="$dispatch_table
$(row workerd-dispatch "workerd $WORKERD_VERSION: dispatcher.js → env.USER.fetch() → hello.js" "berth (both fresh) ÷ workerd: **$(div "$dispatch_rps" "$(pick rps "${RPS[workerd-dispatch]}")")** (target ≥ 2.0, issue 29)")"
  else
    SKIPPED+=("Case 2's workerd peer: WORKERD was not set (bench/install-workerd.sh).")
  fi
  if [ -n "$WASI_HTTP_FLOOR" ]; then
    chain_rps=$(pick rps "${RPS[floor-chain]}")
    dispatch_table="$dispatch_table
$(row floor-chain "floor: two fresh hello instances per request through Wasmtime's wasi-http, nothing of Berth's (wasi_http_floor chain)" "berth (both fresh) ÷ floor: **$(div "$dispatch_rps" "$chain_rps")**${WORKERD:+; floor ÷ workerd: **$(div "$chain_rps" "$(pick rps "${RPS[workerd-dispatch]}")")**}")"
  fi
  echo "$dispatch_table"
else
  SKIPPED+=("Case 2 (dispatch worker → user worker): $WASM_DIR/dispatcher.wasm was missing.")
fi

js_table=
if [ -n "$CASEJS" ]; then
  js_rps=$(pick rps "${RPS[js]}")
  js_table="| Case | req/s (median of $ROUNDS) | p50 | p99 | ratio |
|---|---|---|---|---|
$(row js "berth: js_hello.wasm, fresh instance, limits on" "1.00${WORKERD:+; ÷ workerd: **$(div "$js_rps" "$(pick rps "${RPS[workerd-hello]}")")** (target ≥ 0.25)}")"
  if [ -n "${RPS[js-plain]:-}" ]; then
    js_table="$js_table
$(row js-plain "berth: the same hello uploaded as plain JS (bench/js/hello.js), built on the host, fresh instance" "$(div "$(pick rps "${RPS[js-plain]}")" "$js_rps")${WORKERD:+; ÷ workerd: **$(div "$(pick rps "${RPS[js-plain]}")" "$(pick rps "${RPS[workerd-hello]}")")** (target ≥ 0.46, the componentize-js build)}")"
  fi
  if [ -n "${RPS[js-reuse]:-}" ]; then
    js_table="$js_table
$(row js-reuse "berth: js_hello_reuse.wasm (exported incomingHandler), warm reuse" "$(div "$(pick rps "${RPS[js-reuse]}")" "$js_rps")${WORKERD:+; ÷ workerd: **$(div "$(pick rps "${RPS[js-reuse]}")" "$(pick rps "${RPS[workerd-hello]}")")** (target ≥ 0.5, issue 29)}")"
  fi
  if [ -n "${RPS[js-dispatch]:-}" ]; then
    js_table="$js_table
$(row js-dispatch "berth: js_dispatcher.wasm → js_hello.wasm (both JS, fresh)" "÷ direct JS hello: **$(div "$(pick rps "${RPS[js-dispatch]}")" "$js_rps")** (target ≥ 0.6, issue 29)")"
  fi
  if [ -n "$WASMTIME" ]; then
    js_table="$js_table
$(row wasmtime-js "wasmtime serve 48 -O pooling-allocator -S cli, same js_hello.wasm" "berth ÷ wasmtime: **$(div "$js_rps" "$(pick rps "${RPS[wasmtime-js]}")")**")"
  else
    SKIPPED+=("JS hello's wasmtime serve peer: WASMTIME was not set.")
  fi
  if [ -n "$WORKERD" ]; then
    js_table="$js_table
$(row workerd-hello "workerd $WORKERD_VERSION: hello.js (bench/workerd)" "berth ÷ workerd: **$(div "$js_rps" "$(pick rps "${RPS[workerd-hello]}")")**")"
  else
    SKIPPED+=("JS hello's workerd peer: WORKERD was not set (bench/install-workerd.sh).")
  fi
  echo "$js_table"
else
  SKIPPED+=("JS hello: $WASM_DIR/js_hello.wasm was missing (\`make js\`).")
fi

# Cost of limits again, in pairs: the rounds above swing ±15 % on a VM
# whose CPU speed drifts; bench/ab-pairs.sh (the same binary twice, limits
# off on one side) resolves a few percent.
LIMITS_PAIRS=${LIMITS_PAIRS:-30}
pairs_row=$(BASE="$BERTH" HEAD="$BERTH" HEAD_TOML=$'[limits]\nenforce = false' WASM_DIR="$WASM_DIR" \
  CASES=hello PAIRS="$LIMITS_PAIRS" SECS=2 "$BENCH_DIR/ab-pairs.sh" 2>/dev/null | grep '^| hello |' || true)
if [ -n "$pairs_row" ]; then
  pairs_ratio=$(awk -F'|' '{gsub(/ /, "", $6); print $6}' <<<"$pairs_row")
  pairs_faster=$(awk -F'|' '{gsub(/^ +| +$/, "", $7); print $7}' <<<"$pairs_row")
  pairs_cost=$(awk -v r="$pairs_ratio" 'BEGIN {printf "%.1f", (1 - 1/r) * 100}')
  echo "cost of limits, paired: off ÷ on $pairs_ratio ($pairs_faster), ${pairs_cost}%" >&2
else
  SKIPPED+=("Cost of limits in pairs: bench/ab-pairs.sh failed.")
fi

# Case 2 against workerd again, in pairs (both servers up, alternating
# 2 s runs): the rounds above moved 1.50-2.70x in one run.
DISPATCH_PAIRS=""
if [ -n "$WORKERD" ] && [ -f "$WASM_DIR/dispatcher.wasm" ]; then
  DISPATCH_PAIRS=$(BERTH="$BERTH" WASM_DIR="$WASM_DIR" WORKERD="$WORKERD" PAIRS="${LIMITS_PAIRS}" \
    "$BENCH_DIR/dispatch-pairs.sh" 2>/dev/null) \
    || { SKIPPED+=("Case 2 in pairs: bench/dispatch-pairs.sh failed."); DISPATCH_PAIRS=""; }
  echo "dispatch vs workerd, paired: $DISPATCH_PAIRS" >&2
fi

# What one request costs in system calls, faults, TLB flushes and IPIs:
# counts, so they hold on any machine (bench/per-request.sh; needs perf).
PER_REQUEST=""
if command -v perf > /dev/null; then
  PER_REQUEST=$(BERTH="$BERTH" WASM_DIR="$WASM_DIR" WASMTIME="$WASMTIME" AXUM_HELLO="$AXUM_HELLO" WASI_HTTP_FLOOR="$WASI_HTTP_FLOOR" SECS=5 "$BENCH_DIR/per-request.sh" 2>&1) \
    || { SKIPPED+=("Per-request counts: bench/per-request.sh failed: ${PER_REQUEST##*$'\n'}"); PER_REQUEST=""; }
  echo "$PER_REQUEST" >&2
else
  SKIPPED+=("Per-request counts: perf is not installed.")
fi

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MACHINE_FACTS=$("$BENCH_DIR/machine.sh")
echo "$MACHINE_FACTS" >&2
{
  echo "# Benchmarks"
  echo
  echo "Produced by \`make bench\` (bench/run.sh) on $(date -u +%Y-%m-%d)."
  echo "Machine: $(nproc) CPUs ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r);"
  echo "$(rustc --version); Wasmtime 48${WORKERD_VERSION:+; workerd $WORKERD_VERSION}. Load: \`wrk -t1 -c16 -d$DURATION\` on loopback, $ROUNDS alternating rounds."
  echo
  echo "Machine facts at the end of the run (bench/machine.sh; compare them before comparing two runs):"
  echo
  echo "$MACHINE_FACTS"
  echo
  echo "## Limits on vs off"
  echo
  echo "The hello component (examples/hello), a fresh instance per request through the"
  echo "built-in router. *Limits on* is the default; *limits off* is \`[limits] enforce = false\`"
  echo "(no CPU meter, no body caps, no admission control; the wall deadline,"
  echo "memory cap and epoch yields stay)."
  echo
  echo "$table"
  echo
  echo "Cost of limits: **${cost}%** of throughput in the rounds above."
  if [ -n "$pairs_row" ]; then
    echo "In pairs (\`bench/ab-pairs.sh\`, $LIMITS_PAIRS pairs of 2 s runs, the same binary with"
    echo "limits off on one side): limits off ÷ on **$pairs_ratio** (limits off faster in $pairs_faster"
    echo "pairs), i.e. limits cost **${pairs_cost}%** of hello's throughput (target: at most 5 %)."
  fi
  echo
  if [ -n "$PER_REQUEST" ]; then
    echo "## Per request, counted (bench/per-request.sh)"
    echo
    echo "Counts per request served (\`perf stat\` tracepoints on the server's threads while"
    echo "\`wrk -t1 -c16\` runs 5 s; IPIs counted machine-wide) and the server's CPU time per"
    echo "request from /proc. Counts do not depend on the machine's speed; multiply them by"
    echo "the costs in the machine facts above to see what a slower VM will charge for them."
    echo
    echo "$PER_REQUEST"
    echo
  fi
  echo "## Cold start (case 5)"
  echo
  echo "| Measure | Result | Target |"
  echo "|---|---|---|"
  echo "| Upload (compile + durable store) → first response | ${COLD_UPLOAD} ms | — |"
  echo "| First request after a restart (precompiled artifact, no compile) | ${COLD_RESTART} ms | < 5 ms |"
  if [ -n "$JS_UPLOAD1" ]; then
    echo "| JS: upload of a first componentize-js script (js_hello) → first response | ${JS_UPLOAD1} ms | — |"
    echo "| JS: upload of a second, different script (js_hello_reuse) → first response | ${JS_UPLOAD2} ms | < 1 s |"
    echo "| JS: first request to it after a restart (background preload) | ${JS_RESTART} ms | < 5 ms |"
  fi
  if [ -n "$JS_ENGINE_COLD" ]; then
    echo "| JS engine prepared at start, cold cache (compiles SpiderMonkey for serving and for builds) | ${JS_ENGINE_COLD} ms | once per host |"
    echo "| JS engine prepared at a restart (compiled code loaded from js.cache_dir) | ${JS_ENGINE_WARM} ms | — |"
    for i in "${!JS_PLAIN_UPLOADS[@]}"; do
      echo "| Plain JS upload #$((i + 1)) (a different script each) → first response; build phases: ${JS_PLAIN_PHASES[$i]} | ${JS_PLAIN_UPLOADS[$i]} ms | < 1 s (stretch < 300 ms) |"
    done
  fi
  echo
  echo "## Many scripts (case 6)"
  echo
  echo "$SCRIPTS copies of hello in one namespace (identical bytes: compiled once), requests"
  echo "spread uniformly at random over all of them (wrk + Lua), component_cache_size = $SCRIPTS."
  echo
  echo "| Measure | Result | Target |"
  echo "|---|---|---|"
  echo "| Deploying $SCRIPTS scripts (8 parallel uploads) | ${DEPLOY_MS} ms | — |"
  echo "| req/s | ${MANY_RPS} (p99 ${MANY_P99}) | ≥ 0.5 × single script: **${many_ratio}×** |"
  echo "| Resident memory after the run | ${MANY_RSS} | bounded |"
  echo
  if [ -n "$dispatch_table" ]; then
    echo "## Dispatch worker → user worker (case 2)"
    echo
    echo "Berth: a \`[[dispatch]]\` entry for \`*.platform.localhost\` with the example dispatch"
    echo "worker (examples/dispatcher, per-call limits CPU_MS=50 WALL_MS=5000 MEMORY_MB=64, as"
    echo "\`make run\` sets them; built against berth:platform@0.3.0, so it forwards the request"
    echo "and answers with the user worker's response through the host-side pass-through) and"
    echo "hello deployed as \`user\` in its namespace: each request runs two fresh instances. workerd: the dispatcher in bench/workerd/ hands the request to a"
    echo "user worker through a service binding (\`env.USER.fetch(request)\`), both JS, in one"
    echo "workerd process with its isolates kept warm between requests. workerd serves a"
    echo "process's requests on one thread; Berth's tokio runtime uses every core. The floor:"
    echo "host/examples/wasi_http_floor.rs in chain mode, two fresh instances of hello per"
    echo "request through Wasmtime's own wasi-http on Berth's pool settings, no dispatcher host"
    echo "call, no limits: what any dispatched request on Wasmtime 48 costs at least."
    echo
    echo "$dispatch_table"
    echo
    if [ -n "$DISPATCH_PAIRS" ]; then
      echo "In pairs (\`bench/dispatch-pairs.sh\`: both servers up, alternating 2 s runs; the"
      echo "median of the per-pair ratios, and how many pairs reached 2.0):"
      echo
      echo "| Berth's dispatch worker | pairs | berth req/s (median) | workerd req/s (median) | berth ÷ workerd (median of pairs; target ≥ 2.0) | pairs ≥ 2.0 |"
      echo "|---|---|---|---|---|---|"
      echo "$DISPATCH_PAIRS"
      echo
    fi
  fi
  if [ -n "$js_table" ]; then
    echo "## JavaScript hello"
    echo
    echo "examples/js-hello built with componentize-js (StarlingMonkey inside the component)"
    echo "in Berth and in \`wasmtime serve\`, against bench/workerd/hello.js in workerd (V8,"
    echo "one warm isolate, requests served on one thread). Berth and wasmtime start a fresh"
    echo "instance of the component (StarlingMonkey's snapshot) per request."
    echo
    echo "$js_table"
    echo
  fi
  # The hand-written part: the profile and what the numbers mean.
  if [ -f bench/analysis.md ]; then
    cat bench/analysis.md
    echo
  fi
  if [ "${#SKIPPED[@]}" -gt 0 ]; then
    echo "## Skipped in this run"
    echo
    printf -- '- %s\n' "${SKIPPED[@]}"
  fi
} > "$OUT"
echo "wrote $OUT" >&2
