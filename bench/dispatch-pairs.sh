#!/usr/bin/env bash
# Case 2 in pairs: Berth's dispatch path (dispatcher.wasm → dispatcher.get
# → hello.wasm, both fresh, configured as in bench/run.sh) against
# workerd's dispatcher → service binding → hello (bench/workerd/), both
# servers up at once, alternating short wrk runs (Berth first in odd
# pairs, workerd first in even ones). Prints the median of the per-pair
# ratios Berth ÷ workerd as one Markdown table row.
#
# Why: bench/run.sh's rounds of 10 s see a VM whose CPU speed drifts
# ±25 % within a minute (2026-12-02: rounds 1.50 / 2.70 / 1.85 in one
# run); a pair of 2 s runs sees much the same machine (see
# bench/ab-pairs.sh for the method and its floor).
#
#   BERTH=target/release/berth WASM_DIR=build/wasm WORKERD=…/workerd \
#     [PAIRS=30] [SECS=2] [ISOLATION=reuse] bench/dispatch-pairs.sh
#
# ISOLATION=reuse keeps Berth's dispatch worker warm ([[dispatch]]
# isolation); the user worker stays fresh either way.
set -euo pipefail

: "${BERTH:?BERTH=path of the berth binary}"
: "${WASM_DIR:?WASM_DIR=folder of the built guests}"
: "${WORKERD:?WORKERD=path of the workerd binary (bench/install-workerd.sh)}"
PAIRS=${PAIRS:-30}
SECS=${SECS:-2}
ISOLATION=${ISOLATION:-}
BENCH_NAME=dispatch-pairs
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Berth, as bench/run.sh's run_berth_dispatch configures it.
config=$(dispatch_toml 'CPU_MS = "50", WALL_MS = "5000", MEMORY_MB = "64"')
[ "$ISOLATION" = reuse ] && config+=$'\nisolation = "reuse"'
berth_serve "$BERTH" berth "$config"
berth_url=$BERTH_DATA
"$BERTH" deploy -n customers user "$WASM_DIR/hello.wasm" --admin-url "$BERTH_ADMIN" --token bench > /dev/null

# workerd, as bench/run.sh's start_workerd serves it.
workerd_serve "$WORKERD" dispatch
workerd_url=$WORKERD_URL

rps "$berth_url" user.platform.localhost "$SECS" > /dev/null
rps "$workerd_url" "" "$SECS" > /dev/null
ratios="" berths="" workerds="" faster=0
for i in $(seq 1 "$PAIRS"); do
  if [ $((i % 2)) = 1 ]; then
    b=$(rps "$berth_url" user.platform.localhost "$SECS"); w=$(rps "$workerd_url" "" "$SECS")
  else
    w=$(rps "$workerd_url" "" "$SECS"); b=$(rps "$berth_url" user.platform.localhost "$SECS")
  fi
  ratio=$(awk -v b="$b" -v w="$w" 'BEGIN {printf "%.3f", b/w}')
  echo "pair $i  berth $b  workerd $w  berth ÷ workerd $ratio" >&2
  ratios+="$ratio " berths+="$b " workerds+="$w "
  awk -v r="$ratio" 'BEGIN {exit !(r >= 2)}' && faster=$((faster + 1))
done
echo "| ${ISOLATION:-fresh} | $PAIRS | $(median <<<"$berths") | $(median <<<"$workerds") | $(median <<<"$ratios") | $faster of $PAIRS |"
