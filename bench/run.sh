#!/usr/bin/env bash
# Berth benchmarks (`make bench`; never part of `make test`).
#
# Each case starts a fresh release `berth serve` on loopback with its own
# config and data dir, deploys the hello component, warms up, then drives it
# with wrk (1 thread, 16 connections). Paired cases run alternately, several
# rounds, so drift on the machine hits both sides alike; the table reports
# the median round. Results go to stdout and to docs/benchmarks.md.
#
# Cases today:
#   limits-on / limits-off   the cost of CPU accounting, body caps and
#                            admission control ([limits] enforce) on hello
set -euo pipefail

BERTH=${BERTH:?path to the release berth binary}
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
} > "$OUT"
echo "wrote $OUT" >&2
