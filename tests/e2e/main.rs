//! End-to-end tests: each starts the real `berth` binary on 127.0.0.1 with
//! ephemeral ports and a temp data dir, and drives it over HTTP with real
//! components from `examples/` and `tests/fixtures/` (built once per run by
//! `make test`, found through `BERTH_WASM_DIR`).

mod harness;

mod admin;
mod assets;
mod cli;
mod cluster;
mod compose;
mod containment;
mod dashboard;
mod dispatch;
mod egress;
mod embed;
mod fuel;
mod hostile;
mod javascript;
mod js;
mod lifecycle;
mod limits;
mod namespaces;
mod observe;
mod serving;
mod store_contract;
mod wrangler;
