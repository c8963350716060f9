#!/usr/bin/env bash
# What one request costs the machine, counted rather than timed (issue 29):
# per request served, how many system calls, page faults, TLB flushes,
# inter-processor interrupts and context switches each server causes, and
# how much CPU time (user / system) it takes. The counts do not depend on
# the machine's speed, so they say which machine property a server leans
# on: multiply them by the costs bench/machine.sh measures (a system call,
# a page fault) and a slower VM's figure can be predicted before it is
# seen, and two servers compared on it.
#
#   BERTH=target/release/berth WASM_DIR=build/wasm WASMTIME=…/wasmtime \
#     AXUM_HELLO=…/axum_hello WASI_HTTP_FLOOR=…/wasi_http_floor \
#     [SECS=5] [CASES="hello reuse …"] bench/per-request.sh
#
# Cases: hello (built-in router, fresh instance, limits on), nolimits (the
# same with `[limits] enforce = false`), reuse (hello with warm reuse),
# dispatch (dispatch worker → user worker), wasmtime (`wasmtime serve -O
# pooling-allocator -S cli` on the same hello.wasm), axum (the raw axum
# hello of case 4, no wasm: what serving HTTP alone costs), floor (the
# same hello.wasm in a warm instance behind axum with Wasmtime's wasi-http
# and nothing of Berth's: what warm reuse cannot go below), floor-fresh
# (the same server, a fresh instance per request on Berth's pool settings:
# under hello), floor-chain (two fresh instances per request: under
# dispatch). Needs `perf` with
# tracepoints (root, or perf_event_paranoid ≤ -1) and wrk. Prints Markdown.
set -euo pipefail

: "${BERTH:?BERTH=path of the berth binary}"
: "${WASM_DIR:?WASM_DIR=folder of the built guests}"
WASMTIME=${WASMTIME:-}
AXUM_HELLO=${AXUM_HELLO:-}
WASI_HTTP_FLOOR=${WASI_HTTP_FLOOR:-}
SECS=${SECS:-5}
CASES=${CASES:-hello floor-fresh nolimits reuse floor dispatch floor-chain wasmtime axum}
command -v perf >/dev/null || { echo "per-request: perf is missing (apt-get install linux-perf)" >&2; exit 1; }
BENCH_NAME=per-request
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Per-process counters (this server's threads only) and system-wide ones
# (IPIs land on whichever CPU they are sent to, so they are counted for the
# whole machine while only this server and wrk run).
PROC_EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_clock_gettime,syscalls:sys_enter_ioctl,syscalls:sys_enter_madvise,syscalls:sys_enter_futex,exceptions:page_fault_user,tlb:tlb_flush,context-switches,cpu-migrations
SYS_EVENTS=irq_vectors:call_function_entry,irq_vectors:call_function_single_entry,irq_vectors:reschedule_entry
perf stat -e "$PROC_EVENTS" -- true > /dev/null 2>&1 \
  || { echo "per-request: perf cannot count tracepoints here (run as root or lower kernel.perf_event_paranoid)" >&2; exit 1; }

# start_berth CASE → data-plane address; the server's pid goes to $WORK/pid
start_berth() {
  local config=
  case $1 in
    dispatch) config=$(dispatch_toml) ;;
    nolimits) config=$'[limits]\nenforce = false' ;;
  esac
  berth_serve "$BERTH" "$1" "$config"
  echo "$BERTH_PID" > "$WORK/pid"
  local deploy=("$BERTH" deploy --admin-url "$BERTH_ADMIN" --token bench)
  if [ "$1" = dispatch ]; then
    "${deploy[@]}" -n customers user "$WASM_DIR/hello.wasm" > /dev/null
  else
    "${deploy[@]}" hello "$WASM_DIR/hello.wasm" > /dev/null
  fi
  if [ "$1" = reuse ]; then
    "$BERTH" script settings hello '{"isolation": "reuse"}' --admin-url "$BERTH_ADMIN" --token bench > /dev/null
  fi
  echo "$BERTH_DATA"
}

start_wasmtime() {
  local port=$((20000 + RANDOM % 20000))
  "$WASMTIME" serve -O pooling-allocator -S cli --addr "127.0.0.1:$port" "$WASM_DIR/hello.wasm" > "$WORK/wasmtime.log" 2>&1 &
  echo $! > "$WORK/pid"; echo $! >> "$WORK/pids"
  for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
  echo "http://127.0.0.1:$port"
}

# start_plain NAME BINARY ARGS… → the URL a server that prints `listening
# on URL` (axum_hello, wasi_http_floor) listens on
start_plain() {
  local name=$1; shift
  "$@" > "$WORK/$name.out" 2>&1 &
  echo $! > "$WORK/pid"; echo $! >> "$WORK/pids"
  for _ in $(seq 1 200); do grep -q 'listening on' "$WORK/$name.out" 2>/dev/null && break; sleep 0.05; done
  sed -n 's/^listening on //p' "$WORK/$name.out"
}

# cpu_ticks PID → utime stime (clock ticks) of the whole process
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }

# count NAME → the counter's value from a perf stat -x, file
count() { awk -F, -v e="$2" '$3 == e {gsub(/ /, "", $1); print $1}' "$1"; }

echo "| Case | req/s | CPU µs/request (user + sys) | syscalls | clock_gettime | ioctl | madvise | futex | page faults | TLB flushes | IPIs (machine) | context switches |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
hz=$(getconf CLK_TCK)
for case in $CASES; do
  host=hello.localhost
  case $case in
    wasmtime)
      [ -n "$WASMTIME" ] || { echo "per-request: WASMTIME not set, skipping the wasmtime case" >&2; continue; }
      url=$(start_wasmtime) ;;
    axum)
      [ -n "$AXUM_HELLO" ] || { echo "per-request: AXUM_HELLO not set, skipping the axum case" >&2; continue; }
      url=$(start_plain axum "$AXUM_HELLO" 127.0.0.1:0) ;;
    floor)
      [ -n "$WASI_HTTP_FLOOR" ] || { echo "per-request: WASI_HTTP_FLOOR not set, skipping the floor case" >&2; continue; }
      url=$(start_plain floor "$WASI_HTTP_FLOOR" "$WASM_DIR/hello.wasm" 127.0.0.1:0) ;;
    floor-fresh|floor-chain)
      [ -n "$WASI_HTTP_FLOOR" ] || { echo "per-request: WASI_HTTP_FLOOR not set, skipping the $case case" >&2; continue; }
      url=$(start_plain "$case" "$WASI_HTTP_FLOOR" "$WASM_DIR/hello.wasm" 127.0.0.1:0 "${case#floor-}") ;;
    dispatch) url=$(start_berth dispatch); host=user.platform.localhost ;;
    *) url=$(start_berth "$case") ;;
  esac
  pid=$(cat "$WORK/pid")
  wrk -t1 -c16 -d2s -H "Host: $host" "$url/" > /dev/null
  read -r u0 s0 < <(cpu_ticks "$pid")
  perf stat -x, -o "$WORK/sys.csv" -a -e "$SYS_EVENTS" -- \
    perf stat -x, -o "$WORK/proc.csv" -p "$pid" -e "$PROC_EVENTS" -- \
    wrk -t1 -c16 -d"${SECS}s" -H "Host: $host" "$url/" > "$WORK/wrk.out"
  read -r u1 s1 < <(cpu_ticks "$pid")
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  grep -q 'Non-2xx' "$WORK/wrk.out" && { echo "per-request: non-2xx responses in case $case" >&2; exit 1; }
  n=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
  rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$WORK/wrk.out")
  per() { awk -v c="${1:-0}" -v n="$n" 'BEGIN {printf "%.2f", c / n}'; }
  cpu=$(awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$hz" -v n="$n" \
    'BEGIN {printf "%.1f (%.1f + %.1f)", (u + s) / hz / n * 1e6, u / hz / n * 1e6, s / hz / n * 1e6}')
  ipis=$(( $(count "$WORK/sys.csv" irq_vectors:call_function_entry) \
    + $(count "$WORK/sys.csv" irq_vectors:call_function_single_entry) \
    + $(count "$WORK/sys.csv" irq_vectors:reschedule_entry) ))
  p="$WORK/proc.csv"
  echo "| $case | $rps | $cpu | $(per "$(count "$p" raw_syscalls:sys_enter)") | $(per "$(count "$p" syscalls:sys_enter_clock_gettime)") | $(per "$(count "$p" syscalls:sys_enter_ioctl)") | $(per "$(count "$p" syscalls:sys_enter_madvise)") | $(per "$(count "$p" syscalls:sys_enter_futex)") | $(per "$(count "$p" exceptions:page_fault_user)") | $(per "$(count "$p" tlb:tlb_flush)") | $(per "$ipis") | $(per "$(count "$p" context-switches)") |"
done
