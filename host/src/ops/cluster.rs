//! The hosts sharing this host's store, for the dashboard's cluster view
//! (`GET /v1/cluster`): what a shared store heard from them, or this host
//! alone on a store only it uses.

use super::{Ops, OpsResult};
use crate::base::cluster::{ClusterView, HostPresence};
use crate::store::{machine_name, now_ms};

impl Ops {
    /// The hosts of this host's cluster, this one included.
    pub async fn cluster(&self) -> OpsResult<ClusterView> {
        let loaded_scripts = self.runtime.loaded_scripts() as u64;
        self.with_store(move |store| {
            if let Some(view) = store.cluster()? {
                return Ok(view);
            }
            Ok(ClusterView {
                backend: store.backend(),
                revision: None,
                hosts: vec![HostPresence {
                    host_id: machine_name(),
                    last_seen_ms: now_ms(),
                    revision: None,
                    lag: 0,
                    loaded_scripts,
                }],
            })
        })
        .await
    }
}
