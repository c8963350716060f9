#!/usr/bin/env bash
# Starts a local Berth cluster: one nats-server (JetStream, loopback) and
# HOSTS berth hosts over it (`[store] backend = "nats"`), deploys the
# examples through host 1, prints every address, and stops everything on
# Ctrl-C. Used by `make cluster`; `bench/run.sh` starts the same layout.
#
# Env: BERTH (binary), WASM_DIR, DIR (state dir), HOSTS (default 3),
# BASE_PORT (default 8801: host i listens on BASE_PORT+i-1, admin on +100),
# NATS_PORT (default 4333).
set -euo pipefail
: "${BERTH:?}" "${WASM_DIR:?}" "${DIR:?}"
HOSTS=${HOSTS:-3}
BASE_PORT=${BASE_PORT:-8801}
NATS_PORT=${NATS_PORT:-4333}
TOKEN=${BERTH_ADMIN_TOKEN:-cluster-demo-token}
command -v nats-server >/dev/null || { echo "cluster: nats-server is missing (make nats-server)" >&2; exit 1; }

mkdir -p "$DIR"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup INT TERM EXIT

cat > "$DIR/nats.conf" <<CONF
host: 127.0.0.1
port: $NATS_PORT
# Guest KV values go up to 1 MiB; the default 1 MB max_payload is too small.
max_payload: 8MB
jetstream { store_dir: "$DIR/jetstream" }
CONF
nats-server -c "$DIR/nats.conf" > "$DIR/nats.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do grep -q 'Server is ready' "$DIR/nats.log" && break; sleep 0.1; done
grep -q 'Server is ready' "$DIR/nats.log" || { cat "$DIR/nats.log"; exit 1; }

[ -f "$DIR/artifact.key" ] || head -c 32 /dev/urandom > "$DIR/artifact.key"
[ -f "$DIR/secrets.key" ] || { head -c 32 /dev/urandom > "$DIR/secrets.key"; chmod 600 "$DIR/secrets.key"; }
for i in $(seq 1 "$HOSTS"); do
  port=$((BASE_PORT + i - 1)); admin=$((port + 100)); hdir="$DIR/host$i"
  mkdir -p "$hdir"
  cat > "$hdir/berth.toml" <<CONF
# Written by bench/cluster.sh: host $i of $HOSTS over one NATS JetStream.
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin"
data_dir = "$hdir/data"
secrets_key_file = "$DIR/secrets.key"

[store]
backend = "nats"
url = "nats://127.0.0.1:$NATS_PORT"
prefix = "berth"
artifact_key_file = "$DIR/artifact.key"
CONF
  BERTH_ADMIN_TOKEN=$TOKEN "$BERTH" serve --config "$hdir/berth.toml" > "$hdir/serve.out" 2> "$hdir/serve.log" & pids+=($!)
done
for i in $(seq 1 "$HOSTS"); do
  for _ in $(seq 1 200); do grep -q 'admin API listening' "$DIR/host$i/serve.out" 2>/dev/null && break; sleep 0.1; done
  grep -q 'admin API listening' "$DIR/host$i/serve.out" || { echo "host $i did not start:"; cat "$DIR/host$i/serve.log"; exit 1; }
done

export BERTH_ADMIN_TOKEN=$TOKEN
admin1="http://127.0.0.1:$((BASE_PORT + 100))"
"$BERTH" deploy hello "$WASM_DIR/hello.wasm" --admin-url "$admin1"
[ -f "$WASM_DIR/js_hello.wasm" ] && "$BERTH" deploy hello-js "$WASM_DIR/js_hello.wasm" --admin-url "$admin1"

echo
echo "Cluster up: nats://127.0.0.1:$NATS_PORT (JetStream in $DIR/jetstream)"
for i in $(seq 1 "$HOSTS"); do
  port=$((BASE_PORT + i - 1))
  echo "  host $i: data http://127.0.0.1:$port  admin http://127.0.0.1:$((port + 100))  log $DIR/host$i/serve.log"
done
echo "Deployed through host 1; every host serves it:"
for i in $(seq 1 "$HOSTS"); do
  echo "  curl -H 'Host: hello.localhost' http://127.0.0.1:$((BASE_PORT + i - 1))/"
done
echo "Admin token: $TOKEN   e.g. BERTH_ADMIN_TOKEN=$TOKEN $BERTH deploy NAME FILE.wasm --admin-url http://127.0.0.1:$((BASE_PORT + 101))"
if [ "${DETACH:-0}" = 1 ]; then trap - INT TERM EXIT; echo "${pids[*]}" > "$DIR/pids"; exit 0; fi
echo "Stop with Ctrl-C."
wait
