# What the bench scripts share (sourced, not run): a work folder whose
# servers die with the script, the median, starting (and stopping) a berth
# or a workerd, one wrk run's req/s, and the dispatch entry every dispatch
# case configures. Set BENCH_NAME (the script's name in messages) before
# sourcing; WASM_DIR must name the built guests.

: "${BENCH_NAME:?set BENCH_NAME before sourcing bench/lib.sh}"
: "${WASM_DIR:?WASM_DIR=folder of the built guests}"
WORK=$(mktemp -d)
WASM_ABS=$(cd "$WASM_DIR" && pwd)
# Every server a helper starts lists its pid in $WORK/pids.
trap 'kill $(jobs -p) $(cat "$WORK/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT
command -v wrk > /dev/null || { echo "$BENCH_NAME: wrk is missing (apt-get install wrk)" >&2; exit 1; }

# median < "numbers separated by spaces or lines"
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# dispatch_toml [VARS] [WORKER] → the [[dispatch]] entry of the dispatch
# cases: WORKER (a file in WASM_DIR, default dispatcher.wasm, i.e.
# examples/dispatcher) in front of namespace "customers" on
# *.platform.localhost; VARS are more `vars` entries (`CPU_MS = "50"`, …).
dispatch_toml() {
  printf '[[dispatch]]\nhostnames = ["*.platform.localhost"]\nworker = "%s/%s"\nnamespace = "customers"\n' "$WASM_ABS" "${2:-dispatcher.wasm}"
  printf 'vars = { PLATFORM_DOMAIN = "platform.localhost"%s }\n' "${1:+, $1}"
}

# berth_serve BIN NAME CONFIG_TEXT: starts BIN with that config in a fresh
# data folder on ephemeral loopback ports and waits for both listeners;
# sets BERTH_PID, BERTH_DATA (data-plane URL) and BERTH_ADMIN (admin URL,
# token "bench"). Exits naming the server when it does not start.
berth_serve() {
  local bin=$1 dir="$WORK/$2-$RANDOM"
  mkdir -p "$dir"
  printf '%s\n' "$3" > "$dir/berth.toml"
  BERTH_ADMIN_TOKEN=bench "$bin" serve --config "$dir/berth.toml" --data-dir "$dir/data" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 > "$dir/out" 2> "$dir/log" &
  BERTH_PID=$!
  echo "$BERTH_PID" >> "$WORK/pids"
  # Up to 60 s: a [[dispatch]] worker is compiled before the listeners
  # open, and a componentize-js one (js_dispatcher.wasm, ~10 MB) took more
  # than the 10 s this used to allow on a busy spell (2026-12-03).
  for _ in $(seq 1 1200); do grep -q 'admin API listening' "$dir/out" 2>/dev/null && break; sleep 0.05; done
  BERTH_DATA=$(sed -n 's/^berth: data plane listening on //p' "$dir/out")
  BERTH_ADMIN=$(sed -n 's/^berth: admin API listening on //p' "$dir/out")
  if [ -z "$BERTH_ADMIN" ] || [ -z "$BERTH_DATA" ]; then
    echo "$BENCH_NAME: berth ($bin, $2) did not start:" >&2
    cat "$dir/log" >&2
    exit 1
  fi
}

# berth_stop: stops the server berth_serve started last (SIGTERM, then
# waits while it drains).
berth_stop() { kill -TERM "$BERTH_PID"; wait "$BERTH_PID" 2>/dev/null || true; }

# rps URL HOST SECONDS → req/s of one `wrk -t1 -c16` run of SECONDS (HOST
# empty: no Host header); exits on any non-2xx answer.
rps() {
  local args=() result
  [ -n "$2" ] && args=(-H "Host: $2")
  result=$(wrk -t1 -c16 -d"$3s" "${args[@]}" "$1/")
  if grep -q 'Non-2xx' <<<"$result"; then echo "$BENCH_NAME: non-2xx responses from $1 ($2)" >&2; exit 1; fi
  awk '/^Requests\/sec:/ {print $2}' <<<"$result"
}

# workerd_serve WORKERD CONFIG [PORT]: serves bench/workerd/config.capnp's
# const CONFIG (hello | dispatch) on 127.0.0.1:PORT (default 0: a free
# port, which workerd reports on its control fd); sets WORKERD_PID and
# WORKERD_URL.
workerd_serve() {
  local dir="$WORK/workerd-$2-$RANDOM" port=
  mkdir -p "$dir"
  "$1" serve "$(dirname "${BASH_SOURCE[0]}")/workerd/config.capnp" "$2" \
    --socket-addr "http=127.0.0.1:${3:-0}" --control-fd 3 3> "$dir/control" > "$dir/log" 2>&1 &
  WORKERD_PID=$!
  echo "$WORKERD_PID" >> "$WORK/pids"
  for _ in $(seq 1 200); do
    port=$(grep -o '"port":[0-9]*' "$dir/control" 2>/dev/null | head -1 | cut -d: -f2 || true)
    [ -n "$port" ] && break
    sleep 0.05
  done
  if [ -z "$port" ]; then echo "$BENCH_NAME: workerd ($2) did not start:" >&2; cat "$dir/log" >&2; exit 1; fi
  WORKERD_URL="http://127.0.0.1:$port"
}
