//! Plain JavaScript uploads, built into components on the host, in Rust,
//! with no Node.js at run time (docs/javascript.md).
//!
//! `make js-engine` runs componentize-js's script-independent steps once
//! (splice, WASI stubbing, component wrapping) and leaves an engine
//! directory (`[js] engine_dir`). At start a [`JsEngine`] reads it in the
//! background: the seed component is taken apart ([`template`]), the
//! engine's code is compiled once for the serving engine and registered
//! with the runtime as an importable core module, and the Wizer-instrumented
//! engine is compiled once for the build sandbox ([`sandbox`]); both
//! compilations are cached on disk (`[js] cache_dir`), so a restart loads
//! them instead. Per upload only the script's top level runs (in the
//! sandbox), and its snapshot becomes a small module inside a component
//! that imports the engine: the new script compiles in milliseconds.
//!
//! What lives here: `[js]` config, [`JsError`], the engine's lifecycle and
//! its on-disk cache, the build. [`bundle`] holds the upload's rules and the
//! generated entry; `runtime.js` the Workers surface (`env`, `ctx`, KV).
//!
//! Must never: run tenant JavaScript outside the sandbox, snapshot a var or
//! a secret, or deserialize compiled code it did not write itself into a
//! directory only its user can write.

pub mod bundle;
pub mod sandbox;
pub mod template;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

pub use bundle::{JsBundle, JsModule};
pub use sandbox::ScriptFailure;

use crate::base::{Invalid, require_positive};
use crate::runtime::HostModules;
use sandbox::{BuildLimits, Sandbox};
use template::{SnapshotImage, Template};

/// The componentize-js version the host's template surgery was written
/// and tested for; an engine directory from another version is refused.
pub const COMPONENTIZE_JS: &str = "0.23.0";
/// Name of the custom section that keeps a JS script's sources inside
/// its component (JSON: main module, modules, bindings).
pub const SOURCES_SECTION: &str = "berth:js-bundle";
/// How long a build or a load waits for the engine a host is preparing.
const READY_WAIT: Duration = Duration::from_secs(600);

/// `[js]`: building plain JavaScript uploads.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JsConfig {
    /// The directory `make js-engine` writes (`build/js-engine`); relative
    /// paths are relative to the config file. Unset: plain JS uploads are
    /// refused with `js_unavailable` (components still work).
    pub engine_dir: Option<PathBuf>,
    /// Where the engine's compiled code is cached (default
    /// `data_dir/cache/js`). Holds native code: only Berth's user may
    /// write it (a group- or world-writable directory is not used).
    pub cache_dir: Option<PathBuf>,
    /// Wall time a script's top level may run during a build (ms).
    pub build_timeout_ms: u64,
    /// Memory a script's top level may use during a build (MiB).
    pub build_memory_mb: u64,
    /// Largest heap a build may snapshot (MiB); the snapshot is the
    /// script's memory image, so this bounds what every instance maps.
    pub max_snapshot_mb: u64,
    /// Source bytes per upload, all modules together (KiB).
    pub max_source_kb: u64,
    /// Builds running at once (each is a core busy for its duration).
    pub max_concurrent_builds: u32,
}

impl Default for JsConfig {
    fn default() -> Self {
        Self {
            engine_dir: None,
            cache_dir: None,
            build_timeout_ms: 5_000,
            build_memory_mb: 256,
            max_snapshot_mb: 64,
            max_source_kb: 10 << 10,
            max_concurrent_builds: 2,
        }
    }
}

impl JsConfig {
    /// Checks the limits.
    pub fn validate(&self) -> Result<(), Invalid> {
        require_positive(
            "js",
            &[
                ("build_timeout_ms", self.build_timeout_ms),
                ("build_memory_mb", self.build_memory_mb),
                ("max_snapshot_mb", self.max_snapshot_mb),
                ("max_source_kb", self.max_source_kb),
                (
                    "max_concurrent_builds",
                    u64::from(self.max_concurrent_builds),
                ),
            ],
        )?;
        if self.max_snapshot_mb > self.build_memory_mb {
            return Err(Invalid(format!(
                "js.max_snapshot_mb ({}) cannot exceed js.build_memory_mb ({})",
                self.max_snapshot_mb, self.build_memory_mb
            )));
        }
        Ok(())
    }

    fn limits(&self) -> BuildLimits {
        BuildLimits {
            memory_bytes: (self.build_memory_mb as usize) << 20,
            timeout: Duration::from_millis(self.build_timeout_ms),
            max_snapshot_bytes: (self.max_snapshot_mb as usize) << 20,
        }
    }
}

/// Why a JS upload did not build.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JsError {
    /// This host cannot build JS (no engine directory, or it failed to
    /// load); components still deploy.
    #[error("{0}")]
    Unavailable(String),
    /// The upload breaks a rule (module names, sizes, bindings).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The script threw, failed to parse or failed to load a module at its
    /// top level.
    #[error("{}", .0.summary())]
    Script(ScriptFailure),
    /// The top level called a host API (env, KV, fetch) that only exists
    /// while handling a request.
    #[error(
        "the script's top level called {import}, which is only available while handling a request; move the call into the fetch handler"
    )]
    HostCallAtTopLevel {
        /// The import (`wasi:cli/environment@0.2.12#get-environment`).
        import: String,
    },
    /// A build limit: time, memory or snapshot size; names the key.
    #[error("{message}")]
    Limit {
        /// The `[js]` key.
        limit: &'static str,
        /// What happened.
        message: String,
    },
    /// The build machinery failed (a bug or a broken engine directory).
    #[error("building the JS component failed: {0}")]
    Internal(String),
}

impl JsError {
    fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }
}

/// Time per phase of one build.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BuildTimings {
    /// Writing the modules and Berth's entry into the build directory.
    pub files_ms: f64,
    /// Instantiating the engine and evaluating the top level.
    pub init_ms: f64,
    /// Wizer's snapshot of memory and globals.
    pub snapshot_ms: f64,
    /// Building the script's component around the snapshot.
    pub assemble_ms: f64,
}

/// A built component.
#[derive(Debug, Clone)]
pub struct JsBuild {
    /// The component (imports the host's JS engine).
    pub component: Vec<u8>,
    /// What the top level printed.
    pub stdout: String,
    /// Bytes of heap the snapshot carries.
    pub snapshot_bytes: usize,
    /// Per phase.
    pub timings: BuildTimings,
}

/// `manifest.json` of an engine directory.
#[derive(Debug, Deserialize)]
struct Manifest {
    format: u32,
    componentize_js: String,
    files: std::collections::BTreeMap<String, String>,
}

struct Prepared {
    template: Template,
    sandbox: Sandbox,
    initializer: Vec<u8>,
}

enum State {
    Preparing,
    Ready(Arc<Prepared>),
    Unavailable(String),
}

/// Builds JS uploads; prepared in the background from `[js] engine_dir`.
pub struct JsEngine {
    config: JsConfig,
    state: Mutex<State>,
    ready: Condvar,
    builds: tokio::sync::Semaphore,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

impl JsEngine {
    /// Starts preparing the engine on a background thread: the serving
    /// code module is registered with `modules` under its import name when
    /// ready. `cache_dir` is used unless `config.cache_dir` names one.
    pub fn start(
        config: &JsConfig,
        serving: &Engine,
        modules: &Arc<HostModules>,
        cache_dir: PathBuf,
    ) -> Arc<Self> {
        let initial = match &config.engine_dir {
            None => State::Unavailable(
                "plain JavaScript uploads need the JS engine: set [js] engine_dir (or `berth serve --js-engine-dir`) to the directory `make js-engine` writes (build/js-engine)"
                    .into(),
            ),
            Some(_) => State::Preparing,
        };
        let preparing = matches!(initial, State::Preparing);
        let this = Arc::new(Self {
            config: config.clone(),
            state: Mutex::new(initial),
            ready: Condvar::new(),
            builds: tokio::sync::Semaphore::new(config.max_concurrent_builds.max(1) as usize),
        });
        if preparing {
            let guard = modules.preparing();
            let (engine, modules, weak) = (serving.clone(), modules.clone(), Arc::downgrade(&this));
            let config = config.clone();
            let cache = config.cache_dir.clone().unwrap_or(cache_dir);
            let spawned = std::thread::Builder::new()
                .name("berth-js-engine".into())
                .spawn(move || {
                    let started = Instant::now();
                    let result = prepare(&config, &engine, &modules, &cache);
                    drop(guard);
                    let Some(this) = weak.upgrade() else { return };
                    let state = match result {
                        Ok(prepared) => {
                            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64,
                                "JS engine ready: plain JavaScript uploads build on this host");
                            State::Ready(Arc::new(prepared))
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "JS engine unavailable; plain JavaScript uploads are refused");
                            State::Unavailable(format!("the JS engine failed to load on this host: {e}"))
                        }
                    };
                    *this.lock() = state;
                    this.ready.notify_all();
                });
            if let Err(e) = spawned {
                *this.lock() =
                    State::Unavailable(format!("cannot start the JS engine thread: {e}"));
            }
        }
        this
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether builds can run now (`None`: still preparing).
    pub fn ready(&self) -> Option<Result<(), String>> {
        match &*self.lock() {
            State::Preparing => None,
            State::Ready(_) => Some(Ok(())),
            State::Unavailable(why) => Some(Err(why.clone())),
        }
    }

    /// The config builds run under.
    pub fn config(&self) -> &JsConfig {
        &self.config
    }

    /// Waits for the engine (blocking).
    fn prepared(&self) -> Result<Arc<Prepared>, JsError> {
        let deadline = Instant::now() + READY_WAIT;
        let mut state = self.lock();
        loop {
            match &*state {
                State::Ready(p) => return Ok(p.clone()),
                State::Unavailable(why) => return Err(JsError::Unavailable(why.clone())),
                State::Preparing => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(JsError::Unavailable(
                            "the JS engine is still being prepared on this host; retry shortly"
                                .into(),
                        ));
                    }
                    state = self
                        .ready
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    /// Builds `bundle` into a component that imports the host's engine.
    /// Nothing is stored here: a failed build leaves no trace.
    pub async fn build(self: &Arc<Self>, bundle: JsBundle) -> Result<JsBuild, JsError> {
        self.run(bundle, false).await
    }

    /// Builds `bundle` into a self-contained component, the one
    /// componentize-js would have produced (for export; larger, and every
    /// copy compiles the engine again).
    pub async fn build_standalone(self: &Arc<Self>, bundle: JsBundle) -> Result<JsBuild, JsError> {
        self.run(bundle, true).await
    }

    async fn run(self: &Arc<Self>, bundle: JsBundle, standalone: bool) -> Result<JsBuild, JsError> {
        bundle.validate((self.config.max_source_kb as usize) << 10)?;
        let _permit = self
            .builds
            .acquire()
            .await
            .map_err(|_| JsError::internal("the build queue is closed"))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let prepared = this.prepared()?;
            prepared.build(&bundle, standalone)
        })
        .await
        .map_err(|e| JsError::internal(format!("the build task failed: {e}")))?
    }
}

impl Prepared {
    fn build(&self, bundle: &JsBundle, standalone: bool) -> Result<JsBuild, JsError> {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("berth-js-build-")
            .tempdir()
            .map_err(|e| JsError::internal(format!("build dir: {e}")))?;
        let entry = bundle
            .write_to(dir.path(), &self.initializer)
            .map_err(|e| JsError::internal(format!("writing the modules: {e}")))?;
        let files = started.elapsed();
        let snapshot = self.sandbox.run(dir.path(), &entry)?;
        let started = Instant::now();
        let image = SnapshotImage::parse(snapshot.module, self.template.globals())
            .map_err(|e| JsError::internal(e.to_string()))?;
        let component = if standalone {
            self.template.standalone(&image)
        } else {
            let sources = serde_json::to_vec(&serde_json::json!({
                "format": 1,
                "main_module": bundle.main_module,
                "modules": bundle.modules.iter().map(|m| serde_json::json!({
                    "name": m.name, "source": m.source,
                })).collect::<Vec<_>>(),
                "kv_bindings": bundle.kv_bindings,
                "componentize_js": COMPONENTIZE_JS,
            }))
            .map_err(|e| JsError::internal(e.to_string()))?;
            self.template
                .assemble(&image, &[(SOURCES_SECTION, sources.as_slice())])
        }
        .map_err(|e| JsError::internal(e.to_string()))?;
        Ok(JsBuild {
            component,
            stdout: snapshot.stdout,
            snapshot_bytes: image.data_bytes(),
            timings: BuildTimings {
                files_ms: ms(files),
                init_ms: ms(snapshot.init),
                snapshot_ms: ms(snapshot.snapshot),
                assemble_ms: ms(started.elapsed()),
            },
        })
    }
}

/// What `make js-engine` leaves in an engine directory, each file checked
/// against `manifest.json`.
struct EngineFiles {
    seed: Vec<u8>,
    engine_wasm: Vec<u8>,
    initializer: Vec<u8>,
    env: std::collections::BTreeMap<String, String>,
}

/// Reads and checks an engine directory; the error names the file and how
/// to fix it.
fn read_engine_dir(dir: &Path) -> Result<EngineFiles, String> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(|e| {
            format!(
                "cannot read {} ({e}); build the engine with `make js-engine`",
                dir.join(name).display()
            )
        })
    };
    let manifest: Manifest = serde_json::from_slice(&read("manifest.json")?)
        .map_err(|e| format!("{}: {e}", dir.join("manifest.json").display()))?;
    if manifest.format != 1 || manifest.componentize_js != COMPONENTIZE_JS {
        return Err(format!(
            "{} was made by componentize-js {} (format {}); this Berth needs {COMPONENTIZE_JS}: rerun `make js-engine`",
            dir.display(),
            manifest.componentize_js,
            manifest.format
        ));
    }
    let checked = |name: &str| -> Result<Vec<u8>, String> {
        let bytes = read(name)?;
        let want = manifest
            .files
            .get(name)
            .ok_or_else(|| format!("manifest.json does not list {name}"))?;
        if hex::encode(Sha256::digest(&bytes)) != *want {
            return Err(format!(
                "{} does not match manifest.json (partly written?); rerun `make js-engine`",
                dir.join(name).display()
            ));
        }
        Ok(bytes)
    };
    Ok(EngineFiles {
        seed: checked("seed.wasm")?,
        engine_wasm: checked("engine.wasm")?,
        initializer: checked("initializer.js")?,
        env: serde_json::from_slice(&checked("wizer_env.json")?)
            .map_err(|e| format!("wizer_env.json: {e}"))?,
    })
}

/// Reads the engine directory, compiles (or loads) both modules and
/// registers the serving one.
fn prepare(
    config: &JsConfig,
    serving: &Engine,
    modules: &HostModules,
    cache_dir: &Path,
) -> Result<Prepared, String> {
    let dir = config
        .engine_dir
        .as_deref()
        .ok_or_else(|| "no [js] engine_dir".to_owned())?;
    let EngineFiles {
        seed,
        engine_wasm,
        initializer,
        env,
    } = read_engine_dir(dir)?;

    let cache = usable_cache(cache_dir);
    let started = Instant::now();
    let template = Template::new(seed).map_err(|e| e.to_string())?;
    let code = cached_module(serving, cache.as_deref(), "engine", &template.code_module)
        .map_err(|e| format!("compiling the JS engine: {e}"))?;
    modules.provide(&template.import_name, code);
    tracing::info!(import = %template.import_name, elapsed_ms = started.elapsed().as_millis() as u64,
        "JS engine code ready for serving");

    let started = Instant::now();
    let build_engine = sandbox::build_engine().map_err(|e| e.to_string())?;
    // Wizer's context borrows the engine bytes for as long as the sandbox
    // lives; one per process and engine directory content.
    let engine_wasm: &'static [u8] = leaked(engine_wasm);
    let sandbox = Sandbox::new(
        build_engine,
        engine_wasm,
        env.into_iter().collect(),
        config.limits(),
        |engine, bytes| {
            cached_module(engine, cache.as_deref(), "wizer", bytes)
                .map_err(|e| JsError::internal(format!("compiling the build engine: {e}")))
        },
    )
    .map_err(|e| e.to_string())?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "JS build sandbox ready"
    );
    Ok(Prepared {
        template,
        sandbox,
        initializer,
    })
}

/// The engine bytes, leaked once per distinct content (Wizer's context
/// borrows them for the process's lifetime).
fn leaked(bytes: Vec<u8>) -> &'static [u8] {
    static LEAKED: Mutex<Vec<&'static [u8]>> = Mutex::new(Vec::new());
    let mut all = LEAKED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(same) = all.iter().find(|b| **b == bytes.as_slice()) {
        return same;
    }
    let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    all.push(leaked);
    leaked
}

/// `dir`, created private, unless a group or others could write to it
/// (then compiled code is not cached: it would be loaded as native code).
fn usable_cache(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if let Err(e) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "JS engine cache unusable; compiling in memory");
        return None;
    }
    match std::fs::metadata(dir) {
        Ok(meta) if meta.mode() & 0o022 == 0 => Some(dir.to_owned()),
        Ok(_) => {
            tracing::warn!(dir = %dir.display(),
                "JS engine cache is writable by others; not used (compiled code would be loaded from it)");
            None
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "JS engine cache unusable");
            None
        }
    }
}

/// `bytes` compiled for `engine`: loaded from `cache` when this host
/// compiled it before, else compiled and written there (atomically).
fn cached_module(
    engine: &Engine,
    cache: Option<&Path>,
    kind: &str,
    bytes: &[u8],
) -> Result<Module, String> {
    let digest = hex::encode(&Sha256::digest(bytes)[..16]);
    let file = cache.map(|dir| {
        dir.join(format!(
            "{kind}-{digest}-{}.cwasm",
            crate::runtime::engine::compatibility_hash(engine)
        ))
    });
    if let Some(path) = &file
        && path.exists()
    {
        // SAFETY: the file is this host's own `Module::serialize` output
        // for an engine with the same compatibility hash (in the name),
        // in a directory only Berth's user can write (`usable_cache`).
        match unsafe { Module::deserialize_file(engine, path) } {
            Ok(module) => return Ok(module),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cached JS engine code unusable; recompiling");
                let _ = std::fs::remove_file(path);
            }
        }
    }
    let started = Instant::now();
    let module = Module::new(engine, bytes).map_err(|e| format!("{e:#}"))?;
    tracing::info!(
        kind,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "compiled the JS engine"
    );
    if let Some(path) = &file {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = module
            .serialize()
            .map_err(|e| format!("{e:#}"))
            .and_then(|artifact| std::fs::write(&tmp, artifact).map_err(|e| e.to_string()))
            .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| e.to_string()));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(path = %path.display(), error = %e, "cannot cache the compiled JS engine");
        }
    }
    Ok(module)
}

/// The JS sources a component built by this host carries (its
/// [`SOURCES_SECTION`]), or `None` for any other component. Display only:
/// a tenant can put anything in a custom section.
pub fn bundle_of(component: &[u8]) -> Option<JsBundle> {
    #[derive(Deserialize)]
    struct Stored {
        main_module: String,
        modules: Vec<StoredModule>,
        #[serde(default)]
        kv_bindings: Vec<String>,
    }
    #[derive(Deserialize)]
    struct StoredModule {
        name: String,
        source: String,
    }
    let sections = template::sections(component).ok()?;
    sections.iter().rev().filter(|s| s.id == 0).find_map(|s| {
        let payload = &component[s.payload.clone()];
        let (name, rest) = template::custom_name(payload)?;
        if name != SOURCES_SECTION {
            return None;
        }
        let stored: Stored = serde_json::from_slice(rest).ok()?;
        Some(JsBundle {
            main_module: stored.main_module,
            modules: stored
                .modules
                .into_iter()
                .map(|m| JsModule {
                    name: m.name,
                    source: m.source,
                })
                .collect(),
            kv_bindings: stored.kv_bindings,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_limits_are_checked() {
        JsConfig::default().validate().expect("defaults");
        let zero = JsConfig {
            build_timeout_ms: 0,
            ..JsConfig::default()
        };
        assert!(
            zero.validate()
                .expect_err("zero")
                .0
                .contains("js.build_timeout_ms")
        );
        let inverted = JsConfig {
            max_snapshot_mb: 512,
            ..JsConfig::default()
        };
        assert!(
            inverted
                .validate()
                .expect_err("snapshot")
                .0
                .contains("max_snapshot_mb")
        );
    }

    #[test]
    fn a_group_writable_cache_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let cache = dir.path().join("js");
        assert_eq!(usable_cache(&cache).as_deref(), Some(cache.as_path()));
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert_eq!(usable_cache(&cache), None);
    }

    #[tokio::test]
    async fn without_an_engine_dir_builds_are_refused_by_name() {
        let engine = Engine::default();
        let modules = Arc::new(HostModules::default());
        let js = JsEngine::start(
            &JsConfig::default(),
            &engine,
            &modules,
            std::env::temp_dir(),
        );
        let e = js
            .build(JsBundle::single("index.js", "export default {}"))
            .await
            .expect_err("no engine");
        assert!(
            matches!(e, JsError::Unavailable(ref m) if m.contains("engine_dir")),
            "{e}"
        );
    }
}
