#!/usr/bin/env bash
# Install workerd (Cloudflare's open-source Workers runtime, the peer of the
# dispatch and JS hello cases of bench/run.sh) from npm into a cache outside the clone.
#
#   bench/install-workerd.sh            # prints the binary's path on stdout
#
# Idempotent: does nothing when the pinned version is already installed.
# The npm package `workerd` pulls the native binary in through its
# per-platform optional dependency (@cloudflare/workerd-linux-64 here), so
# nothing is downloaded from outside the npm registry.
#
# Environment:
#   WORKERD_VERSION  npm version to install (default below)
#   WORKERD_DIR      install prefix (default ~/.cache/berth/tools/workerd)
#   NPM_CACHE        npm cache (default ~/.cache/berth/npm, as `make js` uses)
set -euo pipefail

WORKERD_VERSION=${WORKERD_VERSION:-1.20261117.1}
WORKERD_DIR=${WORKERD_DIR:-$HOME/.cache/berth/tools/workerd}
NPM_CACHE=${NPM_CACHE:-$HOME/.cache/berth/npm}

pkg="$WORKERD_DIR/node_modules/workerd/package.json"

installed_version() {
  [ -f "$pkg" ] && node -p "require(process.argv[1]).version" "$pkg" 2>/dev/null || true
}

# The native binary, not the node shim, so the benchmark measures workerd and
# not a node process in front of it.
native_binary() {
  local b
  for b in "$WORKERD_DIR"/node_modules/@cloudflare/workerd-linux-*/bin/workerd \
           "$WORKERD_DIR/node_modules/workerd/bin/workerd"; do
    if [ -x "$b" ] && [ "$(head -c 4 "$b" | od -An -c | tr -d ' ')" = '177ELF' ]; then
      echo "$b"; return 0
    fi
  done
  return 1
}

if [ "$(installed_version)" != "$WORKERD_VERSION" ] || ! native_binary > /dev/null; then
  if ! command -v npm > /dev/null; then
    echo "install-workerd: npm not found (install Node.js and npm)" >&2
    exit 1
  fi
  echo "install-workerd: installing workerd@$WORKERD_VERSION into $WORKERD_DIR" >&2
  mkdir -p "$WORKERD_DIR"
  # A package.json of our own keeps npm from walking up into another project.
  [ -f "$WORKERD_DIR/package.json" ] || echo '{"private": true}' > "$WORKERD_DIR/package.json"
  npm install --prefix "$WORKERD_DIR" --no-audit --no-fund --save-exact \
    --cache "$NPM_CACHE" "workerd@$WORKERD_VERSION" >&2
fi

bin=$(native_binary) || { echo "install-workerd: no native workerd binary under $WORKERD_DIR" >&2; exit 1; }
"$bin" --version > /dev/null 2>&1 || { echo "install-workerd: $bin does not run" >&2; exit 1; }
echo "$bin"
