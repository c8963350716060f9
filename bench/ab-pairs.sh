#!/usr/bin/env bash
# A/B in pairs: the base and head `berth` binaries serve the same case at
# the same time (each idle while the other is measured), and short wrk runs
# alternate between them — base then head, head then base, … — so each
# pair of runs is a few seconds apart. The figure is the median of the
# per-pair ratios head ÷ base.
#
# Why: on a shared 2-vCPU VM the CPU's own speed drifts (a fixed shell loop
# took 0.69–1.21 s in one minute on 2026-12-02), so whole rounds of
# bench/ab.sh moved ±15 % and could not resolve a 5 % change; a pair of
# 2 s runs sees much the same machine, and the median of 40–50 pairs
# resolves about ±2 %.
#
#   BASE=path/to/old/berth HEAD=path/to/new/berth WASM_DIR=build/wasm \
#     CASES="dispatch hello reuse js" PAIRS=40 SECS=2 bench/ab-pairs.sh
#
# BASE_TOML / HEAD_TOML are appended to that side's berth.toml: with the
# same binary on both sides they A/B two configurations, e.g. the cost of
# limits: BASE=$B HEAD=$B HEAD_TOML=$'[limits]\nenforce = false' CASES=hello.
#
# BASE_DISPATCHER / HEAD_DISPATCHER name the dispatch worker each side runs
# in the dispatch case (a file in WASM_DIR; default dispatcher.wasm), e.g.
# the example dispatcher built against berth:platform@0.1.0 (copying) and
# 0.3.0 (the pass-through) on the same binary.
#
# Cases as in bench/ab.sh: hello (built-in router, limits on), dispatch
# (dispatch worker → user worker), reuse (hello with warm reuse), js (JS
# hello, fresh instance). wrk -t1 -c16 for each run.
set -euo pipefail

AB_NAME=ab-pairs
. "$(dirname "$0")/ab-common.sh"
PAIRS=${PAIRS:-40}
SECS=${SECS:-2}
CASES=${CASES:-dispatch hello reuse js}

# start BIN SIDE CASE → prints the data-plane address
start() {
  local bin=$1 config=
  if [ "$3" = dispatch ]; then
    case $2 in
      base) config=$(dispatch_toml "" "${BASE_DISPATCHER:-dispatcher.wasm}") ;;
      head) config=$(dispatch_toml "" "${HEAD_DISPATCHER:-dispatcher.wasm}") ;;
    esac
  fi
  case $2 in
    base) config+=$'\n'"${BASE_TOML:-}" ;;
    head) config+=$'\n'"${HEAD_TOML:-}" ;;
  esac
  berth_serve "$bin" "$2-$3" "$config"
  local deploy=("$bin" deploy --admin-url "$BERTH_ADMIN" --token bench)
  case $3 in
    dispatch) "${deploy[@]}" -n customers user "$WASM_DIR/hello.wasm" > /dev/null ;;
    js) "${deploy[@]}" hello "$WASM_DIR/js_hello.wasm" > /dev/null ;;
    *) "${deploy[@]}" hello "$WASM_DIR/hello.wasm" > /dev/null ;;
  esac
  if [ "$3" = reuse ]; then
    "$bin" script settings hello '{"isolation": "reuse"}' --admin-url "$BERTH_ADMIN" --token bench > /dev/null
  fi
  echo "$BERTH_DATA"
}

echo "| Case | pairs | base req/s (median) | head req/s (median) | median of head ÷ base per pair | pairs head faster |"
echo "|---|---|---|---|---|---|"
for case in $CASES; do
  host=hello.localhost
  [ "$case" = dispatch ] && host=user.platform.localhost
  a=$(start "$BASE" base "$case")
  b=$(start "$HEAD" head "$case")
  rps "$a" "$host" 2 > /dev/null
  rps "$b" "$host" 2 > /dev/null
  ratios="" bases="" heads="" faster=0
  for i in $(seq 1 "$PAIRS"); do
    if [ $((i % 2)) = 1 ]; then
      ra=$(rps "$a" "$host" "$SECS"); rb=$(rps "$b" "$host" "$SECS")
    else
      rb=$(rps "$b" "$host" "$SECS"); ra=$(rps "$a" "$host" "$SECS")
    fi
    ratio=$(awk -v a="$ra" -v b="$rb" 'BEGIN {printf "%.4f", b/a}')
    echo "pair $i  $case  base $ra  head $rb  head ÷ base $ratio" >&2
    ratios+="$ratio " bases+="$ra " heads+="$rb "
    awk -v r="$ratio" 'BEGIN {exit !(r > 1)}' && faster=$((faster + 1))
  done
  kill $(cat "$WORK/pids") 2>/dev/null || true
  wait 2>/dev/null || true
  : > "$WORK/pids"
  echo "| $case | $PAIRS | $(median <<<"$bases") | $(median <<<"$heads") | $(median <<<"$ratios") | $faster of $PAIRS |"
done
