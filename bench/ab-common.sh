# What bench/ab.sh and bench/ab-pairs.sh share (sourced, not run): their
# inputs, a work folder whose servers die with the script, and the median.
# Expects AB_NAME (the script's name in messages).

: "${BASE:?BASE=path of the base berth binary}"
: "${HEAD:?HEAD=path of the head berth binary}"
: "${WASM_DIR:?WASM_DIR=folder of the built guests}"
WORK=$(mktemp -d)
WASM_ABS=$(cd "$WASM_DIR" && pwd)
trap 'kill $(cat "$WORK/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT
command -v wrk >/dev/null || { echo "$AB_NAME: wrk is missing (apt-get install wrk)" >&2; exit 1; }

# median < "numbers separated by spaces"
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
