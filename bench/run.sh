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
#   3  limits on vs off ([limits] enforce) on hello
#   5  cold start: upload → first response; first request after a restart
#   6  SCRIPTS (10,000) scripts in one namespace, requests spread at random:
#      req/s and resident memory
#   4  berth with warm reuse (isolation = "reuse") vs a raw axum hello server
# Not yet: 2 (dispatch worker vs workerd).
set -euo pipefail

BERTH=${BERTH:?path to the release berth binary}
WASMTIME=${WASMTIME:-}
AXUM_HELLO=${AXUM_HELLO:-}
SCRIPTS=${SCRIPTS:-10000}
WASM_DIR=${WASM_DIR:?directory with hello.wasm}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
OUT=${OUT:-docs/benchmarks.md}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y --no-install-recommends wrk >&2
  else sudo apt-get install -y --no-install-recommends wrk >&2; fi
fi

# run_case NAME CONFIG_TEXT → prints "req_per_sec p50 p99"
run_case() {
  local name=$1 config=$2 dir="$WORK/$1-$RANDOM"
  mkdir -p "$dir"
  printf '%s\n' "$config" > "$dir/berth.toml"
  BERTH_ADMIN_TOKEN=bench "$BERTH" serve --config "$dir/berth.toml" --data-dir "$dir/data" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 > "$dir/out" 2> "$dir/log" &
  local pid=$!
  for _ in $(seq 1 200); do grep -q 'admin API listening' "$dir/out" 2>/dev/null && break; sleep 0.05; done
  local data admin
  data=$(sed -n 's/^berth: data plane listening on //p' "$dir/out")
  admin=$(sed -n 's/^berth: admin API listening on //p' "$dir/out")
  "$BERTH" deploy hello "$WASM_DIR/hello.wasm" --admin-url "$admin" --token bench > /dev/null
  if [ "${3:-}" = reuse ]; then
    "$BERTH" script settings hello '{"isolation": {"mode": "reuse"}}' --admin-url "$admin" --token bench > /dev/null
  fi
  wrk -t1 -c16 -d2s -H 'Host: hello.localhost' "$data/" > /dev/null
  local result
  result=$(wrk -t1 -c16 -d"$DURATION" --latency -H 'Host: hello.localhost' "$data/")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$result")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$result")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$result")
  errors=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$result")
  if [ -n "$errors" ]; then echo "bench: $name had $errors non-2xx responses" >&2; exit 1; fi
  echo "$rps $p50 $p99"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A RPS P50 P99
for round in $(seq 1 "$ROUNDS"); do
  for case in limits-on limits-off; do
    enforce=true; [ "$case" = limits-off ] && enforce=false
    read -r rps p50 p99 < <(run_case "$case" "[limits]
enforce = $enforce")
    echo "round $round  $case  ${rps} req/s  p50 ${p50}  p99 ${p99}" >&2
    RPS[$case]+="$rps "; P50[$case]+="$p50 "; P99[$case]+="$p99 "
  done
done

# wasmtime serve on the same component, same wrk settings.
run_wasmtime() {
  local port=$((20000 + RANDOM % 20000))
  # -S cli: hello (Rust std) imports wasi:cli, which serve links only on request.
  "$WASMTIME" serve -O pooling-allocator -S cli --addr "127.0.0.1:$port" "$WASM_DIR/hello.wasm" > "$WORK/wasmtime.log" 2>&1 &
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
run_axum() {
  "$AXUM_HELLO" 127.0.0.1:0 > "$WORK/axum.out" 2>&1 &
  local pid=$!
  for _ in $(seq 1 200); do grep -q 'listening on' "$WORK/axum.out" 2>/dev/null && break; sleep 0.05; done
  local url; url=$(sed -n 's/^listening on //p' "$WORK/axum.out")
  wrk -t1 -c16 -d2s "$url/" > /dev/null
  local result; result=$(wrk -t1 -c16 -d"$DURATION" --latency "$url/")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo "$(awk '/^Requests\/sec:/ {print $2}' <<<"$result") $(awk '$1 == "50%" {print $2}' <<<"$result") $(awk '$1 == "99%" {print $2}' <<<"$result")"
}
for round in $(seq 1 "$ROUNDS"); do
  read -r rps p50 p99 < <(run_case reuse "" reuse)
  echo "round $round  berth-reuse  ${rps} req/s  p50 ${p50}  p99 ${p99}" >&2
  RPS[reuse]+="$rps "; P50[reuse]+="$p50 "; P99[reuse]+="$p99 "
  if [ -n "$AXUM_HELLO" ]; then
    read -r rps p50 p99 < <(run_axum)
    echo "round $round  raw-axum  ${rps} req/s  p50 ${p50}  p99 ${p99}" >&2
    RPS[axum]+="$rps "; P50[axum]+="$p50 "; P99[axum]+="$p99 "
  fi
done

now_ms() { date +%s%3N; }

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

table="| Case | req/s (median of $ROUNDS) | p50 | p99 | vs limits-off |
|---|---|---|---|---|
| hello, fresh instance, limits on | $on_rps | $(pick lat "${P50[limits-on]}") | $(pick lat "${P99[limits-on]}") | $ratio |
| hello, fresh instance, limits off | $off_rps | $(pick lat "${P50[limits-off]}") | $(pick lat "${P99[limits-off]}") | 1.000 |"
if [ -n "$WASMTIME" ]; then
  wt_rps=$(pick rps "${RPS[wasmtime]}")
  vs_wt=$(awk -v a="$on_rps" -v b="$wt_rps" 'BEGIN {printf "%.2f", a/b}')
  table="$table
| wasmtime serve 48 -O pooling-allocator -S cli (case 1 peer) | $wt_rps | $(pick lat "${P50[wasmtime]}") | $(pick lat "${P99[wasmtime]}") | berth ÷ wasmtime: **$vs_wt** (target ≥ 2.0) |"
fi
reuse_rps=$(pick rps "${RPS[reuse]}")
table="$table
| hello, warm reuse (case 4) | $reuse_rps | $(pick lat "${P50[reuse]}") | $(pick lat "${P99[reuse]}") | $(awk -v a="$reuse_rps" -v b="$off_rps" 'BEGIN {printf "%.3f", a/b}') |"
if [ -n "$AXUM_HELLO" ]; then
  axum_rps=$(pick rps "${RPS[axum]}")
  table="$table
| raw axum hello, no wasm (case 4 ceiling) | $axum_rps | $(pick lat "${P50[axum]}") | $(pick lat "${P99[axum]}") | warm reuse ÷ axum: **$(awk -v a="$reuse_rps" -v b="$axum_rps" 'BEGIN {printf "%.2f", a/b}')** (target ≥ 0.6) |"
fi
many_ratio=$(awk -v a="$MANY_RPS" -v b="$on_rps" 'BEGIN {printf "%.2f", a/b}')
echo "$table"
echo "limits cost: ${cost}% of throughput (target: at most 10%)"

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
{
  echo "# Benchmarks"
  echo
  echo "Produced by \`make bench\` (bench/run.sh) on $(date -u +%Y-%m-%d)."
  echo "Machine: $(nproc) CPUs ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r);"
  echo "$(rustc --version); Wasmtime 48. Load: \`wrk -t1 -c16 -d$DURATION\` on loopback, $ROUNDS alternating rounds."
  echo
  echo "## Limits on vs off"
  echo
  echo "The hello component (examples/hello), a fresh instance per request through the"
  echo "built-in router. *Limits on* is the default; *limits off* is \`[limits] enforce = false\`"
  echo "(no CPU accounting call hooks, no body caps, no admission control; the wall deadline,"
  echo "memory cap and epoch yields stay)."
  echo
  echo "$table"
  echo
  echo "Cost of limits: **${cost}%** of throughput (target: at most 10%)."
  echo
  echo "## Cold start (case 5)"
  echo
  echo "| Measure | Result | Target |"
  echo "|---|---|---|"
  echo "| Upload (compile + durable store) → first response | ${COLD_UPLOAD} ms | — |"
  echo "| First request after a restart (precompiled artifact, no compile) | ${COLD_RESTART} ms | < 5 ms |"
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
  echo "## Not measured yet"
  echo
  echo "Case 2 (dispatch worker → user worker vs workerd's dispatcher → service"
  echo "binding) needs the workerd setup, which is not built yet."
} > "$OUT"
echo "wrote $OUT" >&2
