#!/usr/bin/env bash
# `make bench`, cluster part: propagation of deploys across hosts, and the
# throughput of 3 hosts against 1 on this machine.
#
# Starts bench/cluster.sh (nats-server + HOSTS berth hosts, release build)
# detached, then:
# 1. propagation: DEPLOYS deploys through host 1, each timed from the
#    upload's acknowledgement until hosts 2..N serve it (p50/p99/max);
# 2. throughput: wrk -c16 against host 1 alone, then one wrk -c16 per host
#    at once (summed), alternating ROUNDS times; the median of each.
# All hosts share this machine's cores, so 3 hosts compete with each other
# and with wrk: the ratio shows the cost of the cluster, not its capacity.
set -euo pipefail
: "${BERTH:?}" "${WASM_DIR:?}" "${PROPAGATION:?}"
DIR=${DIR:-$(mktemp -d)}
HOSTS=${HOSTS:-3}
DEPLOYS=${DEPLOYS:-100}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
BASE_PORT=${BASE_PORT:-8811}
NATS_PORT=${NATS_PORT:-4343}
export BERTH_ADMIN_TOKEN=bench-cluster-token
command -v wrk >/dev/null || { echo "cluster-bench: wrk is missing (apt-get install wrk)" >&2; exit 1; }

DETACH=1 HOSTS=$HOSTS BASE_PORT=$BASE_PORT NATS_PORT=$NATS_PORT DIR=$DIR \
  BERTH=$BERTH WASM_DIR=$WASM_DIR bench/cluster.sh > "$DIR/cluster.out"
trap 'kill -TERM $(cat "$DIR/pids") 2>/dev/null || true' EXIT

data=()
for i in $(seq 2 "$HOSTS"); do data+=("http://127.0.0.1:$((BASE_PORT + i - 1))"); done
echo "## Scale-out ($HOSTS hosts over one nats-server, same machine)"
echo
echo "Propagation: deploy through host 1 → served by the others ($DEPLOYS deploys):"
echo
ADMIN="http://127.0.0.1:$((BASE_PORT + 100))" DATA=$(IFS=,; echo "${data[*]}") \
  DEPLOYS=$DEPLOYS WASM_DIR=$WASM_DIR "$PROPAGATION"
echo

rps() { awk '/Requests\/sec/ {print $2}'; }
one=(); all=()
for r in $(seq 1 "$ROUNDS"); do
  one+=("$(wrk -t1 -c16 -d"$DURATION" -H 'Host: hello.localhost' "http://127.0.0.1:$BASE_PORT/" | rps)")
  outs=(); wrks=()
  for i in $(seq 1 "$HOSTS"); do
    out="$DIR/wrk-$r-$i"; outs+=("$out")
    wrk -t1 -c16 -d"$DURATION" -H 'Host: hello.localhost' "http://127.0.0.1:$((BASE_PORT + i - 1))/" > "$out" &
    wrks+=($!)
  done
  wait "${wrks[@]}"
  all+=("$(cat "${outs[@]}" | rps | awk '{s += $1} END {printf "%.0f", s}')")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m1=$(median "${one[@]}"); m3=$(median "${all[@]}")
echo "Throughput, hello (wrk -t1 -c16 per host, $DURATION, median of $ROUNDS alternating rounds):"
echo
echo "| setup | req/s | ratio |"
echo "|---|---|---|"
echo "| 1 host | $m1 | 1.00× |"
echo "| $HOSTS hosts (sum) | $m3 | $(awk -v a="$m3" -v b="$m1" 'BEGIN {printf "%.2f", a / b}')× |"
