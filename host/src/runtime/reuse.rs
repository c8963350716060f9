//! Opt-in warm instance reuse (`settings.isolation = "reuse"`).
//!
//! By default every request gets a fresh instance. A script that opts in
//! may have an instance serve several *sequential* requests, the way a
//! Cloudflare isolate keeps its globals: after a request that ended
//! cleanly (no trap, no limit hit), its store and instance go back to this
//! pool, bounded per script by `reuse_max_idle`. An idle instance is
//! dropped after `reuse_idle_ms` or once it has served
//! `reuse_max_requests`. Instances are never shared across scripts (the
//! pool belongs to one loaded worker) and never serve two requests at once.
//!
//! The trade-off: state a request leaves behind (globals, grown memory) is
//! visible to the next request of the *same* script, and an idle instance
//! holds pooling-allocator slots.
//!
//! Not every guest mechanism can take a second request. The decision is
//! per mechanism, not per toolchain: a componentize-js component whose
//! `wasi:http/incoming-handler` is StarlingMonkey's built-in fetch-event
//! handler (`addEventListener("fetch")`) keeps a single `FetchEvent` and
//! throws on the second `respondWith`, so [`reuse_blocker`] names it and the
//! runtime serves it fresh whatever its settings say. The same toolchain's
//! *exported* handler (the module exports `incomingHandler`; componentize-js
//! then generates the export binding, with a `cabi_post_…#handle`
//! post-return, and runs the event loop until the returned promise settles)
//! is an ordinary call into JS and can be reused. An instance that returned
//! without responding is never reused either (it may still hold the
//! response outparam).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::state::WorkerState;
use super::stdio::OutputCapture;
use crate::base::isolation::Isolation;

/// Why a component cannot serve several requests from one instance, if it
/// cannot: a componentize-js component (its `producers` section) whose core
/// module exports `wasi:http/incoming-handler@…#handle` without the
/// `cabi_post_` export that componentize-js generates for a handler the
/// JavaScript module exports itself — that is, StarlingMonkey's fetch-event
/// handler.
pub fn reuse_blocker(component: &[u8]) -> Option<&'static str> {
    const HANDLE: &str = "wasi:http/incoming-handler@";
    let mut componentize_js = false;
    let mut handle = false;
    let mut post_return = false;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        match payload {
            // A plain JS upload built by this host (crate::js) imports the
            // engine's code and is built on the fetch event.
            Ok(wasmparser::Payload::ComponentImportSection(imports)) => {
                if imports
                    .into_iter()
                    .flatten()
                    .any(|i| i.name.name.starts_with("berth-js-engine-"))
                {
                    return Some(
                        "plain JavaScript is built on StarlingMonkey's fetch event, which serves one \
                         event per instance; such scripts are served fresh (docs/javascript.md)",
                    );
                }
            }
            Ok(wasmparser::Payload::CustomSection(section)) if section.name() == "producers" => {
                let data = section.data();
                let tool = b"ComponentizeJS";
                componentize_js |= data.windows(tool.len()).any(|w| w == tool);
            }
            Ok(wasmparser::Payload::ExportSection(exports)) => {
                for export in exports.into_iter().flatten() {
                    let name = export.name;
                    handle |= name.starts_with(HANDLE) && name.ends_with("#handle");
                    post_return |= name
                        .strip_prefix("cabi_post_")
                        .is_some_and(|n| n.starts_with(HANDLE) && n.ends_with("#handle"));
                }
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    (componentize_js && handle && !post_return).then_some(
        "componentize-js's fetch-event handler (addEventListener(\"fetch\")) serves one event \
         per instance; export `incomingHandler` from the module to allow reuse (docs/javascript.md)",
    )
}

/// An instance waiting for its next request.
pub struct Idle {
    /// Its store (state is reset per request).
    pub store: Store<WorkerState>,
    /// The instantiated component.
    pub proxy: Proxy,
    /// Its stdout capture (cleared per request).
    pub stdout: OutputCapture,
    /// Its stderr capture.
    pub stderr: OutputCapture,
    /// Requests served so far.
    pub served: u32,
    since: Instant,
}

impl Idle {
    /// An instance that has just served a request.
    pub fn new(
        store: Store<WorkerState>,
        proxy: Proxy,
        stdout: OutputCapture,
        stderr: OutputCapture,
        served: u32,
    ) -> Self {
        Self {
            store,
            proxy,
            stdout,
            stderr,
            served,
            since: Instant::now(),
        }
    }
}

/// Idle instances of one worker.
#[derive(Default)]
pub struct ReusePool {
    idle: Mutex<Vec<Idle>>,
}

impl ReusePool {
    /// A warm instance, if one is fresh enough.
    pub fn take(&self, isolation: &Isolation) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let max_idle = Duration::from_millis(isolation.reuse_idle_ms);
        idle.retain(|i| i.since.elapsed() <= max_idle);
        idle.pop()
    }

    /// Drops idle instances older than `isolation.reuse_idle_ms` (the
    /// runtime's reaper calls this every second, so an idle instance does
    /// not hold its pool slot until the next request happens to come).
    pub fn reap(&self, isolation: &Isolation) -> usize {
        let max_idle = Duration::from_millis(isolation.reuse_idle_ms);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let before = idle.len();
        idle.retain(|i| i.since.elapsed() <= max_idle);
        before - idle.len()
    }

    /// Instances idle right now.
    pub fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no instance is idle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns an instance after a clean request (dropped when it is worn
    /// out or the pool is full).
    pub fn put(&self, instance: Idle, isolation: &Isolation) {
        if instance.served >= isolation.reuse_max_requests {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < isolation.reuse_max_idle as usize {
            idle.push(instance);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reuse_blocker;
    use wasm_encoder::{
        CodeSection, CustomSection, ExportKind, ExportSection, Function, FunctionSection,
        Instruction, Module, TypeSection,
    };

    /// A module exporting `exports` (all the same empty function), with a
    /// producers section naming `tool`.
    fn module(tool: &str, exports: &[&str]) -> Vec<u8> {
        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], []);
        module.section(&types);
        let mut functions = FunctionSection::new();
        functions.function(0);
        module.section(&functions);
        let mut section = ExportSection::new();
        for name in exports {
            section.export(name, ExportKind::Func, 0);
        }
        module.section(&section);
        let mut code = CodeSection::new();
        let mut body = Function::new([]);
        body.instruction(&Instruction::End);
        code.function(&body);
        module.section(&code);
        let mut producers = vec![1u8, 12];
        producers.extend_from_slice(b"processed-by");
        producers.push(1);
        producers.push(tool.len() as u8);
        producers.extend_from_slice(tool.as_bytes());
        producers.extend_from_slice(&[1, b'1']);
        module.section(&CustomSection {
            name: "producers".into(),
            data: producers.into(),
        });
        module.finish()
    }

    const HANDLE: &str = "wasi:http/incoming-handler@0.2.10#handle";

    #[test]
    fn the_fetch_event_handler_is_refused_and_an_exported_handler_is_not() {
        let fetch_event = module("ComponentizeJS", &["memory-less", HANDLE]);
        let reason = reuse_blocker(&fetch_event).expect("fetch-event form refused");
        assert!(reason.contains("incomingHandler"), "{reason}");

        let post = format!("cabi_post_{HANDLE}");
        let exported = module("ComponentizeJS", &[HANDLE, &post]);
        assert_eq!(reuse_blocker(&exported), None);

        // Other toolchains are never refused, whatever they export.
        assert_eq!(reuse_blocker(&module("wit-component", &[HANDLE])), None);
        // Garbage is not this check's business (the compile step refuses it).
        assert_eq!(reuse_blocker(b"not wasm"), None);
    }

    #[test]
    fn host_built_javascript_is_refused_by_its_engine_import() {
        use wasm_encoder::{
            Component, ComponentImportSection, ComponentTypeRef, CoreTypeSection, ModuleType,
        };
        let component = |import: &str| {
            let mut component = Component::new();
            let mut types = CoreTypeSection::new();
            types.ty().module(&ModuleType::new());
            component.section(&types);
            let mut imports = ComponentImportSection::new();
            imports.import(import, ComponentTypeRef::Module(0));
            component.section(&imports);
            component.finish()
        };
        let reason = reuse_blocker(&component("berth-js-engine-c0123abcd"))
            .expect("a component importing the host's JS engine is refused");
        assert!(reason.contains("fetch event"), "{reason}");
        assert_eq!(reuse_blocker(&component("some-other-module")), None);
    }
}
