#!/usr/bin/env bash
# A/B: the same Berth cases against two `berth` binaries on this machine,
# alternating rounds (base, head, base, head, …) so drift hits both alike.
# Used to check that a change (e.g. a restructuring) slows no case down.
#
#   BASE=path/to/old/berth HEAD=path/to/new/berth WASM_DIR=build/wasm bench/ab.sh
#
# `make bench-ab BASE_REV=<git rev>` builds the base binary and runs this.
# Cases: hello through the built-in router (limits on), dispatch worker →
# user worker, hello with warm reuse, JS hello (fresh instance), and
# "noisy": hello while another tenant spins at concurrency 8 (cpu_ms 50) —
# its ratio to "hello" is the noisy-neighbour figure; "fuel": hello with
# [limits] fuel (the engine counts instructions; its ratio to "hello" is
# the cost of fuel metering). Each round
# is wrk -t1 -c16 for DURATION after a 2 s warm-up; the table reports the
# median req/s and p99 of ROUNDS rounds and head ÷ base.
set -euo pipefail

AB_NAME=ab
. "$(dirname "$0")/ab-common.sh"
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8s}

# measure URL HOST → "rps p99"
measure() {
  wrk -t1 -c16 -d2s -H "Host: $2" "$1/" > /dev/null
  local result
  result=$(wrk -t1 -c16 -d"$DURATION" --latency -H "Host: $2" "$1/")
  if grep -q 'Non-2xx' <<<"$result"; then echo "ab: non-2xx responses from $2" >&2; exit 1; fi
  echo "$(awk '/^Requests\/sec:/ {print $2}' <<<"$result") $(awk '$1 == "99%" {print $2}' <<<"$result")"
}

# one_case BIN CASE → "rps p99", printed once its server is gone: the
# caller reads it through a process substitution, which does not wait for
# the subshell, so a server still draining would overlap the next case.
one_case() {
  local bin=$1 result
  case $2 in
    hello)
      berth_serve "$bin" hello ""
      "$bin" deploy hello "$WASM_DIR/hello.wasm" --admin-url "$BERTH_ADMIN" --token bench > /dev/null
      result=$(measure "$BERTH_DATA" hello.localhost) || exit 1 ;;
    reuse)
      berth_serve "$bin" reuse ""
      "$bin" deploy hello "$WASM_DIR/hello.wasm" --admin-url "$BERTH_ADMIN" --token bench > /dev/null
      "$bin" script settings hello '{"isolation": "reuse"}' --admin-url "$BERTH_ADMIN" --token bench > /dev/null
      result=$(measure "$BERTH_DATA" hello.localhost) || exit 1 ;;
    dispatch)
      berth_serve "$bin" dispatch "$(dispatch_toml)"
      "$bin" deploy -n customers user "$WASM_DIR/hello.wasm" --admin-url "$BERTH_ADMIN" --token bench > /dev/null
      result=$(measure "$BERTH_DATA" user.platform.localhost) || exit 1 ;;
    noisy)
      # Another tenant loops at concurrency 8, each request cut at
      # cpu_ms = 50: the light tenant's hello throughput next to it.
      berth_serve "$bin" noisy "[limits]
cpu_ms = 50"
      "$bin" deploy hello "$WASM_DIR/hello.wasm" --admin-url "$BERTH_ADMIN" --token bench > /dev/null
      "$bin" deploy spinner "$WASM_DIR/tenant.wasm" --admin-url "$BERTH_ADMIN" --token bench > /dev/null
      wrk -t1 -c8 -d"$(( ${DURATION%s} + 4 ))s" -H "Host: spinner.localhost" "$BERTH_DATA/spin" > /dev/null &
      local spin=$!
      sleep 1
      result=$(measure "$BERTH_DATA" hello.localhost) || exit 1
      wait "$spin" 2>/dev/null || true ;;
    fuel)
      berth_serve "$bin" fuel "[limits]
fuel = 1_000_000_000"
      "$bin" deploy hello "$WASM_DIR/hello.wasm" --admin-url "$BERTH_ADMIN" --token bench > /dev/null
      result=$(measure "$BERTH_DATA" hello.localhost) || exit 1 ;;
    js)
      berth_serve "$bin" js ""
      "$bin" deploy hello-js "$WASM_DIR/js_hello.wasm" --admin-url "$BERTH_ADMIN" --token bench > /dev/null
      result=$(measure "$BERTH_DATA" hello-js.localhost) || exit 1 ;;
  esac
  berth_stop
  echo "$result"
}

ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f\n", v}'; }

CASES=${CASES:-hello dispatch reuse js}
declare -A RPS P99
for round in $(seq 1 "$ROUNDS"); do
  for case in $CASES; do
    for side in base head; do
      bin=$BASE; [ "$side" = head ] && bin=$HEAD
      read -r rps p99 < <(one_case "$bin" "$case")
      echo "round $round  $case  $side  $rps req/s  p99 $p99" >&2
      RPS[$case-$side]+="$rps "; P99[$case-$side]+="$(ms <<<"$p99") "
    done
  done
done

echo "| Case | base req/s | head req/s | head ÷ base | base p99 ms | head p99 ms |"
echo "|---|---|---|---|---|---|"
for case in $CASES; do
  b=$(median <<<"${RPS[$case-base]}"); h=$(median <<<"${RPS[$case-head]}")
  echo "| $case | $b | $h | $(awk -v a="$h" -v b="$b" 'BEGIN {printf "%.3f", a/b}') | $(median <<<"${P99[$case-base]}") | $(median <<<"${P99[$case-head]}") |"
done
