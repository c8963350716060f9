//! The `[[dispatch]]` table: which dispatch worker serves which hostnames,
//! bound to which namespace.
//!
//! Built once at start-up from the config. Workers given as files are
//! compiled then (a broken file stops the start with a clear error);
//! workers given as `namespace/script` are loaded from the store on first
//! use and follow redeploys like any script.

use std::sync::Arc;

use crate::base::error::WorkerError;
use crate::base::host_pattern::{HostPattern, Specificity, normalize_host};
use crate::base::names::Name;
use crate::capabilities::OutboundWorker;
use crate::config::{DispatchConfig, DispatchWorkerSource};
use crate::limits::Admission;
use crate::limits::CallLimits;
use crate::runtime::{Role, Runtime, Worker};

/// Where an entry's dispatch worker comes from, once loaded.
pub enum DispatchWorker {
    /// Compiled from a file at start-up.
    Loaded(Arc<Worker>),
    /// A script in the store, loaded (and reloaded after redeploys) on use.
    Stored {
        /// Its namespace.
        namespace: Name,
        /// Its name.
        name: Name,
    },
}

/// One `[[dispatch]]` entry, ready to route to.
pub struct DispatchEntry {
    patterns: Vec<HostPattern>,
    /// The namespace `dispatcher.get` reaches.
    pub namespace: Name,
    /// The dispatch worker.
    pub worker: DispatchWorker,
    /// Limits the dispatch worker itself runs under.
    pub limits: CallLimits,
    /// The outbound worker for the user workers it dispatches to.
    pub outbound_worker: Option<OutboundWorker>,
    /// The entry's own admission gate (`max_concurrency`): its dispatch
    /// worker's requests take a slot here, not in a tenant-sized gate.
    pub gate: Arc<Admission>,
}

impl DispatchEntry {
    /// The loaded dispatch worker.
    pub async fn worker(&self, runtime: &Arc<Runtime>) -> Result<Arc<Worker>, WorkerError> {
        match &self.worker {
            DispatchWorker::Loaded(worker) => Ok(worker.clone()),
            DispatchWorker::Stored { namespace, name } => runtime
                .worker_as(namespace, name, Role::Dispatch)
                .await
                .map_err(|e| match e {
                    WorkerError::NotFound(_) => WorkerError::Internal(format!(
                        "dispatch worker {namespace}/{name} is not deployed"
                    )),
                    other => other,
                }),
        }
    }
}

/// All `[[dispatch]]` entries.
#[derive(Default)]
pub struct DispatchTable {
    entries: Vec<DispatchEntry>,
}

impl DispatchTable {
    /// Builds the table, compiling file-based workers (blocking).
    pub fn load(configs: &[DispatchConfig], runtime: &Arc<Runtime>) -> anyhow::Result<Self> {
        let mut entries = Vec::with_capacity(configs.len());
        for (i, config) in configs.iter().enumerate() {
            let patterns = config
                .hostnames
                .iter()
                .map(|p| HostPattern::parse(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("dispatch[{i}]: {e}"))?;
            let worker = match config.source()? {
                DispatchWorkerSource::File(path) => DispatchWorker::Loaded(
                    runtime
                        .load_file(
                            &path,
                            &config.namespace,
                            &config.vars,
                            Role::Dispatch,
                            config.resolved_isolation().unwrap_or_default(),
                        )
                        .map_err(|e| anyhow::anyhow!("dispatch[{i}].worker: {e}"))?,
                ),
                DispatchWorkerSource::Script { namespace, name } => {
                    DispatchWorker::Stored { namespace, name }
                }
            };
            let outbound_worker = match &config.outbound_worker {
                Some(path) => Some(OutboundWorker {
                    invoker: runtime.invoker(),
                    worker: Worker::into_ref(
                        runtime
                            .load_file(
                                path,
                                &config.namespace,
                                &Default::default(),
                                Role::User,
                                Default::default(),
                            )
                            .map_err(|e| anyhow::anyhow!("dispatch[{i}].outbound_worker: {e}"))?,
                    ),
                }),
                None => None,
            };
            tracing::info!(
                hostnames = ?config.hostnames, namespace = %config.namespace,
                worker = %config.worker, "dispatch entry ready"
            );
            entries.push(DispatchEntry {
                patterns,
                namespace: config.namespace.clone(),
                worker,
                limits: CallLimits {
                    cpu_ms: config.cpu_ms,
                    wall_ms: config.wall_ms,
                    memory_mb: config.memory_mb,
                    subrequests: None,
                },
                outbound_worker,
                gate: Arc::new(runtime.dispatch_gate(config.max_concurrency)),
            });
        }
        Ok(Self { entries })
    }

    /// The most specific entry matching a `Host` header value, if any.
    pub fn route(&self, host: &str) -> Option<&DispatchEntry> {
        let host = normalize_host(host);
        let mut best: Option<(Specificity, &DispatchEntry)> = None;
        for entry in &self.entries {
            for pattern in &entry.patterns {
                if let Some(score) = pattern.matches(&host)
                    && best.as_ref().is_none_or(|(s, _)| score > *s)
                {
                    best = Some((score, entry));
                }
            }
        }
        best.map(|(_, entry)| entry)
    }
}
