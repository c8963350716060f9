//! The build sandbox: StarlingMonkey evaluates a script's top level inside
//! Wasmtime, and Wizer snapshots the result.
//!
//! The engine module is instrumented by Wizer and compiled once per host
//! (on its own engine: no pooling, epoch interruption); every build is a
//! fresh instance of it with
//!
//! - a memory cap (`js.build_memory_mb`, a [`wasmtime::ResourceLimiter`]),
//! - an epoch deadline (`js.build_timeout_ms`) for a top level that never
//!   ends,
//! - a cap on the snapshot (`js.max_snapshot_mb`) checked before the
//!   snapshot is written,
//! - WASI preview 1 with exactly the template's environment (the engine
//!   snapshots whatever it holds, so never a var or a secret), stdin holding
//!   the engine's arguments, stdout and stderr captured up to a bound, and
//!   one read-only preopen: the build's own directory (the upload's files
//!   and the bindings). Every other import traps.
//!
//! Must never: give the guest a host path beyond the build directory, the
//! network, or the host's environment.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine, InstanceAllocationStrategy, Linker, Module, Store, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};
use wasmtime_wizer::{InstanceState, ModuleContext, SnapshotVal, ValType, Wizer};

use super::JsError;
use crate::runtime::engine::EpochTicker;

/// How often the build engine's epoch advances.
const TICK: Duration = Duration::from_millis(10);
/// Bytes of the guest's stdout and stderr kept.
const LOG_BYTES: usize = 64 << 10;
/// The function componentize-js pre-initializes with.
const INIT_FUNC: &str = "componentize.wizer";

/// The limits of one build.
#[derive(Debug, Clone, Copy)]
pub struct BuildLimits {
    /// Linear memory the engine may grow to.
    pub memory_bytes: usize,
    /// Wall time for the top level (the guest is interrupted after it).
    pub timeout: Duration,
    /// Largest memory a snapshot may carry.
    pub max_snapshot_bytes: usize,
}

/// The snapshot of one build, and what the guest printed.
pub struct Snapshot {
    /// The pre-initialized core module Wizer wrote.
    pub module: Vec<u8>,
    /// Guest stdout (bounded).
    pub stdout: String,
    /// Time spent evaluating the top level, and writing the snapshot.
    pub init: Duration,
    /// Time to take the snapshot.
    pub snapshot: Duration,
}

struct BuildState {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

/// Caps linear memory and remembers that it refused.
struct Limiter {
    memory_bytes: usize,
    refused: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.memory_bytes;
        self.refused |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// The instrumented engine, compiled, and what every build shares.
pub struct Sandbox {
    engine: Engine,
    pre: wasmtime::InstancePre<BuildState>,
    wizer: Wizer,
    cx: ModuleContext<'static>,
    env: Vec<(String, String)>,
    limits: BuildLimits,
    _ticker: EpochTicker,
}

/// The engine builds run on: the serving engine's features, no pooling
/// (a build is rare and large), epoch interruption for the deadline.
pub fn build_engine() -> Result<Engine, JsError> {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .memory_init_cow(true)
        .max_wasm_stack(1 << 20)
        .allocation_strategy(InstanceAllocationStrategy::OnDemand);
    Engine::new(&config).map_err(|e| JsError::internal(format!("build engine: {e:#}")))
}

impl Sandbox {
    /// Instruments `engine_wasm` (leaked: Wizer's context borrows it for
    /// the host's lifetime), compiles or loads the instrumented module with
    /// `load`, and links WASI preview 1.
    pub fn new(
        engine: Engine,
        engine_wasm: &'static [u8],
        env: Vec<(String, String)>,
        limits: BuildLimits,
        load: impl FnOnce(&Engine, &[u8]) -> Result<Module, JsError>,
    ) -> Result<Self, JsError> {
        let mut wizer = Wizer::new();
        wizer.init_func(INIT_FUNC);
        let (cx, instrumented) = wizer
            .instrument(engine_wasm)
            .map_err(|e| JsError::internal(format!("instrumenting the JS engine: {e:#}")))?;
        let module = load(&engine, &instrumented)?;
        let mut linker: Linker<BuildState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| &mut s.wasi)
            .map_err(|e| JsError::internal(format!("linking WASI: {e:#}")))?;
        // Whatever the world imports (HTTP, KV, the environment) cannot be
        // called at build time: a top level that tries traps, and the
        // build names the import.
        linker
            .define_unknown_imports_as_traps(&module)
            .map_err(|e| JsError::internal(format!("linking: {e:#}")))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| JsError::internal(format!("linking the JS engine: {e:#}")))?;
        let ticker = EpochTicker::start(engine.clone(), TICK);
        Ok(Self {
            engine,
            pre,
            wizer,
            cx,
            env,
            limits,
            _ticker: ticker,
        })
    }

    /// A fresh store for one build: WASI preview 1 with the template's
    /// environment, the engine's arguments on stdin, output captured into
    /// `stdout`/`stderr`, `dir` as the only (read-only) preopen, and the
    /// memory limiter.
    fn store(
        &self,
        dir: &Path,
        entry: &str,
        stdout: &MemoryOutputPipe,
        stderr: &MemoryOutputPipe,
    ) -> Result<Store<BuildState>, JsError> {
        let args = format!(
            "--initializer-script-path /__berth/initializer.js --strip-path-prefix / {entry}"
        );
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(args))
            .stdout(stdout.clone())
            .stderr(stderr.clone());
        for (k, v) in &self.env {
            wasi.env(k, v);
        }
        wasi.preopened_dir(dir, "/", FsPerms::ReadOnly)
            .map_err(|e| JsError::internal(format!("preopening the build dir: {e:#}")))?;
        let mut store = Store::new(
            &self.engine,
            BuildState {
                wasi: wasi.build_p1(),
                limiter: Limiter {
                    memory_bytes: self.limits.memory_bytes,
                    refused: false,
                },
            },
        );
        store.limiter(|s| &mut s.limiter);
        Ok(store)
    }

    /// Evaluates `entry` (a path relative to `dir`, which holds every file
    /// the guest may read) and snapshots the engine.
    pub fn run(&self, dir: &Path, entry: &str) -> Result<Snapshot, JsError> {
        let stdout = MemoryOutputPipe::new(LOG_BYTES);
        let stderr = MemoryOutputPipe::new(LOG_BYTES);
        let mut store = self.store(dir, entry, &stdout, &stderr)?;
        let ticks = (self.limits.timeout.as_millis() / TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();

        let started = Instant::now();
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| JsError::internal(format!("instantiating the JS engine: {e:#}")))?;
        let failed = |e: wasmtime::Error, store: &Store<BuildState>| {
            classify(e, store.data().limiter.refused, &stderr, self.limits)
        };
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call(&mut store, ()).map_err(|e| failed(e, &store))?;
        }
        let init = instance
            .get_typed_func::<(), ()>(&mut store, INIT_FUNC)
            .map_err(|e| JsError::internal(format!("the JS engine lacks {INIT_FUNC}: {e:#}")))?;
        init.call(&mut store, ()).map_err(|e| failed(e, &store))?;
        let init_time = started.elapsed();

        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| JsError::internal("the JS engine exports no memory"))?;
        let size = memory.data_size(&store);
        if size > self.limits.max_snapshot_bytes {
            return Err(JsError::Limit {
                limit: "js.max_snapshot_mb",
                message: format!(
                    "the script's top level left a {} MiB heap; snapshots are capped at {} MiB (js.max_snapshot_mb)",
                    size >> 20,
                    self.limits.max_snapshot_bytes >> 20
                ),
            });
        }

        let started = Instant::now();
        let mut state = WizerState {
            store: &mut store,
            instance,
            missing: None,
        };
        let module = futures::executor::block_on(self.wizer.snapshot(&self.cx, &mut state))
            .map_err(|e| JsError::internal(format!("snapshot: {e:#}")))?;
        if let Some(missing) = state.missing {
            return Err(JsError::internal(format!(
                "snapshot: the engine lacks {missing}"
            )));
        }
        let snapshot_time = started.elapsed();

        // componentize-js's own check: the bindings found the exports they
        // expect. Run after the snapshot so its effects are not in it, with
        // a deadline of its own (the snapshot took some of the first).
        store.set_epoch_deadline(ticks);
        check_init(&mut store, instance, &stderr, self.limits)?;
        Ok(Snapshot {
            module,
            stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
            init: init_time,
            snapshot: snapshot_time,
        })
    }
}

/// componentize-js's `check_init`: 0 when the bindings found the exports
/// they expect, else a script error with the engine's report.
fn check_init(
    store: &mut Store<BuildState>,
    instance: wasmtime::Instance,
    stderr: &MemoryOutputPipe,
    limits: BuildLimits,
) -> Result<(), JsError> {
    let check = instance
        .get_typed_func::<(), i32>(&mut *store, "check_init")
        .map_err(|e| JsError::internal(format!("the JS engine lacks check_init: {e:#}")))?;
    let code = check
        .call(&mut *store, ())
        .map_err(|e| classify(e, store.data().limiter.refused, stderr, limits))?;
    let detail = match code {
        0 => return Ok(()),
        1 => "unable to extract the expected exports list",
        2 => "unable to parse the core ABI export types",
        _ => "unknown failure",
    };
    Err(JsError::Script(ScriptFailure::from_stderr(
        &stderr.contents(),
        Some(detail),
    )))
}

/// Reads the instance for Wizer; a missing export is remembered instead of
/// panicking (Wizer's trait has no error path).
struct WizerState<'a> {
    store: &'a mut Store<BuildState>,
    instance: wasmtime::Instance,
    missing: Option<String>,
}

impl InstanceState for WizerState<'_> {
    async fn global_get(&mut self, name: &str, _type_hint: ValType) -> SnapshotVal {
        let value = self
            .instance
            .get_global(&mut *self.store, name)
            .map(|g| g.get(&mut *self.store));
        match value {
            Some(wasmtime::Val::I32(x)) => SnapshotVal::I32(x),
            Some(wasmtime::Val::I64(x)) => SnapshotVal::I64(x),
            Some(wasmtime::Val::F32(x)) => SnapshotVal::F32(x),
            Some(wasmtime::Val::F64(x)) => SnapshotVal::F64(x),
            Some(wasmtime::Val::V128(x)) => SnapshotVal::V128(x.as_u128()),
            _ => {
                self.missing = Some(format!("global {name}"));
                SnapshotVal::I32(0)
            }
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        match self.instance.get_memory(&mut *self.store, name) {
            Some(memory) => contents(memory.data(&*self.store)),
            None => {
                self.missing = Some(format!("memory {name}"));
                contents(&[]);
            }
        }
    }
}

/// A script that failed at its top level: what the engine said, and where.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScriptFailure {
    /// The JS error (`SyntaxError: expected expression, got ';'`).
    pub message: String,
    /// The module it happened in (`index.js`), when the engine said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// 1-based line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// 1-based column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// The engine's whole report (bounded).
    pub log: String,
}

impl ScriptFailure {
    /// Reads StarlingMonkey's report: `Exception while evaluating top-level
    /// script`, then `<module>:<line>:<col> <Error>: <message>` (or the
    /// error alone), then optional notes and a stack.
    pub fn from_stderr(stderr: &[u8], fallback: Option<&str>) -> Self {
        let log = String::from_utf8_lossy(stderr).trim().to_owned();
        let mut lines = log
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("Exception while evaluating"));
        let first = lines.next().unwrap_or_default().to_owned();
        let (mut module, mut line, mut column, mut message) = (None, None, None, first.clone());
        if let Some((location, rest)) = first.split_once(' ') {
            let mut parts = location.rsplitn(3, ':');
            let col = parts.next().and_then(|c| c.parse::<u32>().ok());
            let ln = parts.next().and_then(|l| l.parse::<u32>().ok());
            let file = parts.next();
            if let (Some(col), Some(ln), Some(file)) = (col, ln, file) {
                module = Some(file.trim_start_matches('/').to_owned());
                line = Some(ln);
                column = Some(col);
                message = rest.trim().trim_end_matches(':').to_owned();
            }
        }
        if message.is_empty() {
            message = fallback
                .unwrap_or("the script failed during initialization")
                .to_owned();
        }
        Self {
            message,
            module,
            line,
            column,
            log,
        }
    }

    /// One line: `index.js:2:25: Error: top-level boom`.
    pub fn summary(&self) -> String {
        match (&self.module, self.line, self.column) {
            (Some(m), Some(l), Some(c)) => format!("{m}:{l}:{c}: {}", self.message),
            _ => self.message.clone(),
        }
    }
}

fn classify(
    e: wasmtime::Error,
    memory_refused: bool,
    stderr: &MemoryOutputPipe,
    limits: BuildLimits,
) -> JsError {
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        let mut failure = ScriptFailure::from_stderr(&stderr.contents(), None);
        if memory_refused && failure.log.to_ascii_lowercase().contains("memory") {
            return memory_limit(limits);
        }
        if exit.0 == 0 && failure.log.is_empty() {
            failure.message = "the script exited during initialization".into();
        }
        return JsError::Script(failure);
    }
    if let Some(import) = e.downcast_ref::<wasmtime::UnknownImportError>() {
        return JsError::HostCallAtTopLevel {
            import: format!("{}#{}", import.module(), import.name()),
        };
    }
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return JsError::Limit {
            limit: "js.build_timeout_ms",
            message: format!(
                "the script's top level ran longer than {} ms (js.build_timeout_ms); move long work into the fetch handler",
                limits.timeout.as_millis()
            ),
        };
    }
    if memory_refused {
        return memory_limit(limits);
    }
    let mut failure = ScriptFailure::from_stderr(&stderr.contents(), None);
    let trap = match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => crate::base::error::one_line(&format!("{e:#}")),
    };
    failure.message = format!("the script's top level trapped: {trap}");
    JsError::Script(failure)
}

fn memory_limit(limits: BuildLimits) -> JsError {
    JsError::Limit {
        limit: "js.build_memory_mb",
        message: format!(
            "the script's top level needed more than {} MiB (js.build_memory_mb)",
            limits.memory_bytes >> 20
        ),
    }
}

/// The compiled instrumented engine is the same for every build: shared.
pub type SharedSandbox = Arc<Sandbox>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_reports_are_read_into_message_and_location() {
        let f = ScriptFailure::from_stderr(
            b"Exception while evaluating top-level script\nindex.js:2:25 Error: top-level boom\nAdditionally, some promises were rejected\nStack:\n  boom@index.js:2:25\n",
            None,
        );
        assert_eq!(f.message, "Error: top-level boom");
        assert_eq!(f.module.as_deref(), Some("index.js"));
        assert_eq!((f.line, f.column), (Some(2), Some(25)));
        assert_eq!(f.summary(), "index.js:2:25: Error: top-level boom");

        let f = ScriptFailure::from_stderr(
            b"Exception while evaluating top-level script\nsrc/bad.js:1:19 SyntaxError: expected expression, got ';':\n",
            None,
        );
        assert_eq!(f.message, "SyntaxError: expected expression, got ';'");
        assert_eq!(f.module.as_deref(), Some("src/bad.js"));

        let f = ScriptFailure::from_stderr(
            b"Exception while evaluating top-level script\nReferenceError: Error loading module \"./missing.js\" (resolved path \"missing.js\"): No such file or directory\n",
            None,
        );
        assert!(
            f.message
                .starts_with("ReferenceError: Error loading module"),
            "{}",
            f.message
        );
        assert_eq!(f.line, None);

        let f = ScriptFailure::from_stderr(b"", Some("fallback"));
        assert_eq!(f.message, "fallback");
    }
}
