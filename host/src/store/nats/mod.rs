//! [`NatsStore`]: the namespace store shared by many Berth hosts, on NATS
//! JetStream (`[store] backend = "nats"`; docs/scale-out.md).
//!
//! - Records (namespaces, scripts, hostnames, asset ownership) live in one
//!   JetStream KV bucket. Each host keeps a [`mirror::Mirror`] of it fed by
//!   an ordered watch that resumes from the last revision it applied after
//!   any disconnect, so serving reads no record over the network and keeps
//!   working while NATS is down; other hosts' writes arrive as
//!   [`StoreChange`]s the runtime evicts on.
//! - Writes go to JetStream and return only once it acknowledged them
//!   (durable there). Writes that read-modify-write a record use
//!   compare-and-set on the key's revision and retry, so concurrent writers
//!   on different hosts end in one version everywhere. While NATS is
//!   unreachable they fail at once with [`StoreError::Unavailable`].
//! - Component bytes and assets live in the Object Store, fetched once per
//!   host into `data_dir/cache` and checked against their hash.
//! - Precompiled artifacts are native code: one is loaded from the store
//!   only if it carries a valid HMAC under the cluster's artifact key
//!   (`store.artifact_key_file`); without a key each host compiles for
//!   itself and keeps its artifacts in its own cache directory.
//! - Guest KV lives in a second KV bucket (see `kv.rs`).
//! - Hosts announce themselves to each other on a core NATS subject for
//!   the dashboard's cluster view (see `presence.rs`).
//!
//! The client runs on a small runtime of its own; the store's methods are
//! blocking like every [`NamespaceStore`](crate::store::NamespaceStore)'s and wait for it.
//! This module never touches the runtime, routing or the API.

mod blobs;
mod keys;
mod kv;
mod mirror;
mod presence;
mod relay;
#[cfg(test)]
mod tests;
mod watch;

pub use relay::NatsTailRelay;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv as jkv, object_store};
use bytes::Bytes;
use tokio::sync::{Notify, broadcast};

use super::config::StoreConfig;
use super::seal::Sealer;
use super::{
    Catalog, ClusterView, HostPresence, Hostnames, NamespaceRecord, NewScript, ScriptRecord,
    StoreChange, StoreError, StoreResult, next_script_record, now_ms,
};
use crate::base::Invalid;
use crate::base::names::Name;
use mirror::Mirror;

/// How often a compare-and-set write retries after losing a race.
const CAS_ROUNDS: usize = 32;

/// The NATS JetStream store.
pub struct NatsStore {
    inner: Arc<Inner>,
    handle: tokio::runtime::Handle,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

/// What the store's tasks share.
struct Inner {
    client: async_nats::Client,
    records: jkv::Store,
    guest_kv: jkv::Store,
    objects: object_store::ObjectStore,
    mirror: Mirror,
    sealer: Sealer,
    artifact_key: Option<Vec<u8>>,
    cache_dir: PathBuf,
    prefix: String,
    url: String,
    changes: broadcast::Sender<StoreChange>,
    /// The largest message the servers accept.
    max_payload: usize,
    /// This host's id and the other hosts' announcements.
    presence: Arc<presence::Presence>,
}

impl NatsStore {
    /// Connects to NATS, creates the cluster's buckets if missing, and
    /// mirrors the records bucket before returning. `sealer` seals
    /// secrets; `None` uses the cluster's shared sealing key (created by
    /// the first host). Blocking.
    pub fn open(
        config: &StoreConfig,
        cache_dir: &Path,
        sealer: Option<Sealer>,
    ) -> StoreResult<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("berth-nats")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::Backend(format!("cannot start the NATS client runtime: {e}"))
            })?;
        let handle = runtime.handle().clone();
        let artifact_key = match &config.artifact_key_file {
            Some(path) => Some(read_artifact_key(path)?),
            None => None,
        };
        for dir in ["blobs", "artifacts"] {
            std::fs::create_dir_all(cache_dir.join(dir)).map_err(|e| {
                StoreError::Backend(format!("cannot create {}: {e}", cache_dir.display()))
            })?;
        }
        let setup = Setup {
            config: config.clone(),
            cache_dir: cache_dir.to_owned(),
            sealer,
            artifact_key,
        };
        let inner = run_on(&handle, setup.connect())?;
        Ok(Self {
            inner,
            handle,
            runtime: Mutex::new(Some(runtime)),
        })
    }

    /// Runs `future` on the client's runtime and waits for it (callable
    /// from any thread, async or not).
    fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = StoreResult<T>> + Send + 'static,
    ) -> StoreResult<T> {
        run_on(&self.handle, future)
    }

    /// Fails fast unless the client is connected: an admin write must not
    /// hang in the client's reconnect buffer.
    fn writable(&self) -> StoreResult<()> {
        self.inner.connected()
    }

    /// The relay that carries live-tail events between hosts.
    pub fn tail_relay(&self) -> NatsTailRelay {
        NatsTailRelay::new(
            self.inner.client.clone(),
            self.inner.prefix.clone(),
            self.handle.clone(),
        )
    }

    fn decode_script(&self, key: &str, bytes: &[u8]) -> StoreResult<ScriptRecord> {
        self.inner.sealer.open_record(decode(key, bytes)?)
    }

    fn encode_script(&self, record: &ScriptRecord) -> Bytes {
        encode(&self.inner.sealer.seal_record(record))
    }

    /// Reads `key` from NATS itself (not the mirror): its value if present
    /// and the revision to compare-and-set against (also for a deletion).
    /// What it read goes into the mirror too, as this host's own writes do:
    /// a revision another host wrote, seen here before the watch brings it,
    /// is served from then on (the mirror ignores it if it already holds
    /// that revision or a later one). Without that, the host that lost the
    /// race to create the default namespace, at a cluster's first start,
    /// refused a deploy through it with namespace-not-found until its watch
    /// caught up (`make bench-cluster`, 2026-12-03).
    fn authoritative(&self, key: &str) -> StoreResult<(Option<Bytes>, Option<u64>)> {
        let inner = self.inner.clone();
        let k = key.to_owned();
        let (value, revision) = self.run(async move {
            let entry = inner
                .records
                .entry(k.clone())
                .await
                .map_err(|e| inner.failure(&format!("reading {k}"), e))?;
            Ok(match entry {
                None => (None, None),
                Some(e) if e.operation == jkv::Operation::Put => (Some(e.value), Some(e.revision)),
                Some(e) => (None, Some(e.revision)),
            })
        })?;
        if let Some(revision) = revision {
            self.inner.applied(key, revision, value.clone());
        }
        Ok((value, revision))
    }

    /// Writes `value` to `key` if its revision is still `revision` (`None`:
    /// the key must not exist). `Ok(None)` when another write came first.
    fn compare_and_set(
        &self,
        key: &str,
        value: Bytes,
        revision: Option<u64>,
    ) -> StoreResult<Option<u64>> {
        let inner = self.inner.clone();
        let (k, v) = (key.to_owned(), value.clone());
        let written = self.run(async move {
            let result = match revision {
                Some(revision) => inner.records.update(&k, v, revision).await.map_err(|e| {
                    (
                        e.kind() == jkv::UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                }),
                None => inner.records.create(&k, v).await.map_err(|e| {
                    (
                        e.kind() == jkv::CreateErrorKind::AlreadyExists,
                        e.to_string(),
                    )
                }),
            };
            match result {
                Ok(revision) => Ok(Some(revision)),
                Err((true, _)) => Ok(None),
                Err((false, message)) => Err(inner.failure(&format!("writing {k}"), message)),
            }
        })?;
        if let Some(revision) = written {
            self.inner.applied(key, revision, Some(value));
        }
        Ok(written)
    }

    /// Deletes `key` (a delete marker, so every mirror sees it).
    fn delete_key(&self, key: &str) -> StoreResult<()> {
        let inner = self.inner.clone();
        let k = key.to_owned();
        self.run(async move {
            inner
                .records
                .delete(&k)
                .await
                .map_err(|e| inner.failure(&format!("deleting {k}"), e))
        })?;
        self.inner.forgotten(key);
        Ok(())
    }

    /// Waits until the mirror holds every revision NATS had when called,
    /// so a scan of it is as complete as a listing from the server.
    fn caught_up(&self) -> StoreResult<()> {
        let inner = self.inner.clone();
        self.run(async move {
            let mut stream = inner.records.stream.clone();
            let last = stream
                .info()
                .await
                .map_err(|e| inner.failure("reading the records stream", e))?
                .state
                .last_sequence;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while inner.mirror.revision() < last {
                if tokio::time::Instant::now() > deadline {
                    return Err(StoreError::Unavailable(
                        "this host's copy of the records is behind NATS; retry".into(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        })
    }

    /// Removes every record of a namespace but the namespace's own: its
    /// scripts, hostnames and asset ownership, and its guest KV buckets.
    /// Run after deleting a namespace and before creating one, so a
    /// namespace re-created under an old name starts clean even if a crash
    /// interrupted the deletion.
    fn remove_namespace_contents(&self, name: &Name) -> StoreResult<Vec<Name>> {
        self.caught_up()?;
        let mut deleted = Vec::new();
        for (key, _) in self.inner.mirror.scan(&keys::scripts_of(name)) {
            self.delete_key(&key)?;
            if let keys::Parsed::Script(_, script) = keys::parse(&key) {
                deleted.push(script);
            }
        }
        for prefix in [keys::hostnames_of(name), keys::asset_owners_of(name)] {
            for (key, _) in self.inner.mirror.scan(&prefix) {
                self.delete_key(&key)?;
            }
        }
        self.purge_guest_kv(keys::kv_all_of_namespace(name))?;
        Ok(deleted)
    }
}

impl Drop for NatsStore {
    fn drop(&mut self) {
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }
}

impl Inner {
    fn connected(&self) -> StoreResult<()> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            _ => Err(StoreError::Unavailable(format!(
                "NATS ({}) is unreachable; writes are refused until it is back",
                self.url
            ))),
        }
    }

    /// A failed NATS call: `Unavailable` when the connection is down (the
    /// cause), else a backend error naming what failed.
    fn failure(&self, what: &str, error: impl std::fmt::Display) -> StoreError {
        match self.connected() {
            Err(unavailable) => unavailable,
            Ok(()) => StoreError::Backend(format!("NATS: {what}: {error}")),
        }
    }

    /// Applies a revision to the mirror and tells the runtime if it
    /// changed what a cached worker was built from.
    fn applied(&self, key: &str, revision: u64, value: Option<Bytes>) {
        if self.mirror.apply(key, revision, value) {
            self.announce(key);
        }
    }

    fn forgotten(&self, key: &str) {
        if self.mirror.forget(key) {
            self.announce(key);
        }
    }

    fn announce(&self, key: &str) {
        let change = match keys::parse(key) {
            keys::Parsed::Namespace(ns) => StoreChange::Namespace(ns),
            keys::Parsed::Script(namespace, name) => StoreChange::Script { namespace, name },
            keys::Parsed::Other => return,
        };
        // Nobody listening (no runtime yet) is fine.
        let _ = self.changes.send(change);
    }
}

/// Runs `future` on `handle` and blocks the calling thread for its result.
fn run_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    future: impl Future<Output = StoreResult<T>> + Send + 'static,
) -> StoreResult<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .map_err(|_| StoreError::Unavailable("the NATS client has shut down".into()))?
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        message: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("records serialize"))
}

fn read_artifact_key(path: &Path) -> StoreResult<Vec<u8>> {
    let key = std::fs::read(path).map_err(|e| {
        StoreError::Backend(format!(
            "cannot read store.artifact_key_file {}: {e}",
            path.display()
        ))
    })?;
    if key.len() < 32 {
        return Err(StoreError::Backend(format!(
            "store.artifact_key_file {} holds {} bytes; use at least 32 random bytes \
             (e.g. `head -c 32 /dev/urandom > {}`)",
            path.display(),
            key.len(),
            path.display()
        )));
    }
    Ok(key)
}

/// Connection and bucket set-up, run once on the client's runtime.
struct Setup {
    config: StoreConfig,
    cache_dir: PathBuf,
    sealer: Option<Sealer>,
    artifact_key: Option<Vec<u8>>,
}

impl Setup {
    async fn connect(self) -> StoreResult<Arc<Inner>> {
        let config = &self.config;
        let timeout = Duration::from_millis(config.timeout_ms);
        let url = config.url.clone();
        let reconnected = Arc::new(Notify::new());
        let notify = reconnected.clone();
        let seeds = config.seeds();
        let options = async_nats::ConnectOptions::new()
            .name("berth")
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            .event_callback(move |event| {
                let notify = notify.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("connected to NATS");
                            notify.notify_one();
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("lost the connection to NATS; serving from cache")
                        }
                        other => tracing::debug!(event = %other, "NATS client event"),
                    }
                }
            });
        let client = options.connect(seeds).await.map_err(|e| {
            StoreError::Unavailable(format!("cannot connect to NATS at {url}: {e}"))
        })?;
        let max_payload = client.server_info().max_payload;
        if max_payload < kv::NEEDED_PAYLOAD {
            tracing::warn!(
                max_payload,
                "the NATS server's max_payload is below 2 MiB: guest KV values and large script \
                 records above it will be refused; set `max_payload: 8MB` in nats-server's config"
            );
        }
        let mut js = jetstream::new(client.clone());
        js.set_timeout(timeout);
        let prefix = &config.prefix;
        let failed = |what: String| {
            move |e: &dyn std::fmt::Display| StoreError::Unavailable(format!("{what}: {e}"))
        };
        let records = ensure_kv(&js, format!("{prefix}-records"), config.replicas)
            .await
            .map_err(|e| failed("cannot open the records bucket".into())(&e))?;
        let guest_kv = ensure_kv(&js, format!("{prefix}-kv"), config.replicas)
            .await
            .map_err(|e| failed("cannot open the guest KV bucket".into())(&e))?;
        let objects = ensure_objects(&js, format!("{prefix}-blobs"), config.replicas)
            .await
            .map_err(|e| failed("cannot open the object store".into())(&e))?;
        let sealer = match self.sealer {
            Some(sealer) => sealer,
            None => shared_sealer(&records).await?,
        };
        let client_for_presence = client.clone();
        let inner = Arc::new(Inner {
            client,
            records,
            guest_kv,
            objects,
            mirror: Mirror::default(),
            sealer,
            artifact_key: self.artifact_key,
            cache_dir: self.cache_dir,
            prefix: prefix.clone(),
            url,
            changes: broadcast::channel(1024).0,
            max_payload,
            presence: presence::Presence::start(
                &client_for_presence,
                prefix,
                &tokio::runtime::Handle::current(),
            ),
        });
        let (ready, synced) = tokio::sync::oneshot::channel();
        tokio::spawn(watch::run(inner.clone(), reconnected, ready));
        tokio::time::timeout(timeout.max(Duration::from_secs(10)), synced)
            .await
            .map_err(|_| {
                StoreError::Unavailable("timed out reading the records bucket from NATS".into())
            })?
            .map_err(|_| StoreError::Unavailable("the records watch ended".into()))?;
        Ok(inner)
    }
}

/// Opens a KV bucket (history 1), creating it if missing. The stream is
/// created directly with the KV layout (ADR-8) rather than through the
/// client's `create_key_value`, whose account query does not parse
/// nats-server 2.9's reply (Debian's version).
async fn ensure_kv(
    js: &jetstream::Context,
    bucket: String,
    replicas: usize,
) -> Result<jkv::Store, async_nats::Error> {
    if let Ok(store) = js.get_key_value(&bucket).await {
        return Ok(store);
    }
    let created = js
        .create_stream(jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_message_size: -1,
            storage: jetstream::stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: true,
            num_replicas: replicas,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await;
    match created {
        Ok(_) => Ok(js.get_key_value(&bucket).await?),
        // Another host created it meanwhile.
        Err(error) => js.get_key_value(&bucket).await.map_err(|_| error.into()),
    }
}

/// Opens the object store, creating it if missing.
async fn ensure_objects(
    js: &jetstream::Context,
    bucket: String,
    replicas: usize,
) -> Result<object_store::ObjectStore, async_nats::Error> {
    if let Ok(store) = js.get_object_store(&bucket).await {
        return Ok(store);
    }
    let created = js
        .create_object_store(object_store::Config {
            bucket: bucket.clone(),
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await;
    match created {
        Ok(store) => Ok(store),
        Err(error) => js.get_object_store(&bucket).await.map_err(|_| error.into()),
    }
}

/// The cluster's sealing key: read from the records bucket, or created
/// there by the first host to need it (create-if-absent, so two hosts
/// starting together agree).
async fn shared_sealer(records: &jkv::Store) -> StoreResult<Sealer> {
    for _ in 0..CAS_ROUNDS {
        let existing = records
            .get(keys::SEALING_KEY)
            .await
            .map_err(|e| StoreError::Unavailable(format!("reading the sealing key: {e}")))?;
        if let Some(hex_key) = existing {
            let key: [u8; 32] = hex::decode(&hex_key)
                .ok()
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt {
                    key: keys::SEALING_KEY.into(),
                    message: "not 32 hex-encoded bytes".into(),
                })?;
            return Ok(Sealer::new(&key));
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| StoreError::Backend(format!("no randomness for a sealing key: {e}")))?;
        match records
            .create(keys::SEALING_KEY, Bytes::from(hex::encode(key)))
            .await
        {
            Ok(_) => return Ok(Sealer::new(&key)),
            Err(e) if e.kind() == jkv::CreateErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(StoreError::Unavailable(format!(
                    "storing the sealing key: {e}"
                )));
            }
        }
    }
    Err(StoreError::Conflict(keys::SEALING_KEY.into()))
}

impl Catalog for NatsStore {
    fn create_namespace(&self, name: &Name) -> StoreResult<NamespaceRecord> {
        self.writable()?;
        let key = keys::namespace(name);
        let (existing, revision) = self.authoritative(&key)?;
        if existing.is_some() {
            return Err(StoreError::NamespaceExists(name.clone()));
        }
        // Leftovers of an earlier namespace of this name (a deletion a
        // crash interrupted) go first. They never touch the namespace's own
        // key, so `revision` still guards the create below.
        self.remove_namespace_contents(name)?;
        let record = NamespaceRecord {
            name: name.clone(),
            created_ms: now_ms(),
            egress: Default::default(),
            trusted: false,
        };
        match self.compare_and_set(&key, encode(&record), revision)? {
            Some(_) => Ok(record),
            None => Err(StoreError::NamespaceExists(name.clone())),
        }
    }

    fn ensure_namespace(&self, name: &Name) -> StoreResult<NamespaceRecord> {
        if let Some(record) = self.get_namespace(name)? {
            return Ok(record);
        }
        match self.create_namespace(name) {
            // Another host created it first (hosts of a new cluster start
            // together); reading it from NATS puts it in this host's mirror.
            Err(StoreError::NamespaceExists(_)) => {
                let key = keys::namespace(name);
                match self.authoritative(&key)?.0 {
                    Some(bytes) => decode(&key, &bytes),
                    None => Err(StoreError::NamespaceNotFound(name.clone())),
                }
            }
            other => other,
        }
    }

    fn get_namespace(&self, name: &Name) -> StoreResult<Option<NamespaceRecord>> {
        let key = keys::namespace(name);
        self.inner
            .mirror
            .get(&key)
            .map(|bytes| decode(&key, &bytes))
            .transpose()
    }

    fn list_namespaces(&self) -> StoreResult<Vec<NamespaceRecord>> {
        self.inner
            .mirror
            .scan(keys::NAMESPACES)
            .into_iter()
            .map(|(key, bytes)| decode(&key, &bytes))
            .collect()
    }

    fn delete_namespace(&self, name: &Name, force: bool) -> StoreResult<Vec<Name>> {
        self.writable()?;
        let key = keys::namespace(name);
        if self.authoritative(&key)?.0.is_none() {
            return Err(StoreError::NamespaceNotFound(name.clone()));
        }
        self.caught_up()?;
        let scripts = self.inner.mirror.scan(&keys::scripts_of(name)).len();
        if scripts > 0 && !force {
            return Err(StoreError::NamespaceNotEmpty {
                name: name.clone(),
                scripts,
            });
        }
        // The namespace record first: from then on nothing of it is served
        // (a script is served only inside an existing namespace), whatever
        // happens to the rest.
        self.delete_key(&key)?;
        self.remove_namespace_contents(name)
    }

    fn put_script(
        &self,
        namespace: &Name,
        name: &Name,
        script: NewScript,
    ) -> StoreResult<ScriptRecord> {
        self.writable()?;
        if self.authoritative(&keys::namespace(namespace))?.0.is_none() {
            return Err(StoreError::NamespaceNotFound(namespace.clone()));
        }
        self.put_blob(&script.sha256, &script.content)?;
        let key = keys::script(namespace, name);
        let mut written = None;
        for _ in 0..CAS_ROUNDS {
            let (old, revision) = self.authoritative(&key)?;
            let old = old
                .map(|bytes| self.decode_script(&key, &bytes))
                .transpose()?;
            let record = next_script_record(namespace, name, &script, old.as_ref(), now_ms());
            if self
                .compare_and_set(&key, self.encode_script(&record), revision)?
                .is_some()
            {
                written = Some(record);
                break;
            }
        }
        let record = written.ok_or_else(|| StoreError::Conflict(key.clone()))?;
        if let Some((engine_hash, artifact)) = &script.artifact {
            crate::store::Blobs::put_artifact(self, &script.sha256, engine_hash, artifact)?;
        }
        Ok(record)
    }

    fn get_script(&self, namespace: &Name, name: &Name) -> StoreResult<Option<ScriptRecord>> {
        let key = keys::script(namespace, name);
        self.inner
            .mirror
            .get(&key)
            .map(|bytes| self.decode_script(&key, &bytes))
            .transpose()
    }

    fn list_scripts(&self, namespace: &Name) -> StoreResult<Vec<ScriptRecord>> {
        self.inner
            .mirror
            .scan(&keys::scripts_of(namespace))
            .into_iter()
            .map(|(key, bytes)| self.decode_script(&key, &bytes))
            .collect()
    }

    fn update_script(
        &self,
        namespace: &Name,
        name: &Name,
        change: &mut dyn FnMut(&mut ScriptRecord) -> Result<(), Invalid>,
    ) -> StoreResult<Option<Result<ScriptRecord, Invalid>>> {
        self.writable()?;
        let key = keys::script(namespace, name);
        for _ in 0..CAS_ROUNDS {
            let (bytes, revision) = self.authoritative(&key)?;
            let Some(bytes) = bytes else {
                return Ok(None);
            };
            let mut record = self.decode_script(&key, &bytes)?;
            if let Err(refusal) = change(&mut record) {
                return Ok(Some(Err(refusal)));
            }
            record.modified_ms = now_ms();
            if self
                .compare_and_set(&key, self.encode_script(&record), revision)?
                .is_some()
            {
                return Ok(Some(Ok(record)));
            }
        }
        Err(StoreError::Conflict(key))
    }

    fn update_namespace(
        &self,
        name: &Name,
        change: &mut dyn FnMut(&mut NamespaceRecord) -> Result<(), Invalid>,
    ) -> StoreResult<Option<Result<NamespaceRecord, Invalid>>> {
        self.writable()?;
        let key = keys::namespace(name);
        for _ in 0..CAS_ROUNDS {
            let (bytes, revision) = self.authoritative(&key)?;
            let Some(bytes) = bytes else {
                return Ok(None);
            };
            let mut record = decode(&key, &bytes)?;
            if let Err(refusal) = change(&mut record) {
                return Ok(Some(Err(refusal)));
            }
            if self
                .compare_and_set(&key, encode(&record), revision)?
                .is_some()
            {
                return Ok(Some(Ok(record)));
            }
        }
        Err(StoreError::Conflict(key))
    }

    fn delete_script(&self, namespace: &Name, name: &Name) -> StoreResult<bool> {
        self.writable()?;
        let key = keys::script(namespace, name);
        if self.authoritative(&key)?.0.is_none() {
            return Ok(false);
        }
        self.delete_key(&key)?;
        // Its buckets (every generation) go too; a crash before this line
        // leaves only keys no later script of this name can see.
        self.purge_guest_kv(keys::kv_all_of_script(namespace, name))?;
        Ok(true)
    }

    fn changes(&self) -> Option<broadcast::Receiver<StoreChange>> {
        Some(self.inner.changes.subscribe())
    }

    fn backend(&self) -> &'static str {
        "nats"
    }

    /// Publishes this host's presence (the records revision it applied,
    /// how far behind the bucket that was, what it has loaded) and keeps it
    /// as its own entry, so the view shows this host even while NATS is
    /// down.
    fn announce(&self, loaded_scripts: u64) -> StoreResult<()> {
        let applied = self.inner.mirror.revision();
        let mut me = HostPresence {
            host_id: self.inner.presence.host_id().to_owned(),
            last_seen_ms: now_ms(),
            revision: Some(applied),
            lag: 0,
            loaded_scripts,
        };
        if let Err(down) = self.writable() {
            self.inner.presence.remember(me);
            return Err(down);
        }
        let inner = self.inner.clone();
        self.run(async move {
            let mut stream = inner.records.stream.clone();
            let last = stream
                .info()
                .await
                .map_err(|e| inner.failure("reading the records stream", e))?
                .state
                .last_sequence;
            me.lag = last.saturating_sub(applied);
            inner.presence.remember(me.clone());
            let payload = Bytes::from(serde_json::to_vec(&me).unwrap_or_default());
            let subject = inner.presence.subject().to_owned();
            inner
                .client
                .publish(subject, payload)
                .await
                .map_err(|e| inner.failure("announcing this host", e))
        })
    }

    fn cluster(&self) -> StoreResult<Option<ClusterView>> {
        let hosts = self.inner.presence.hosts();
        let revision = hosts
            .iter()
            .filter_map(|h| h.revision)
            .chain([self.inner.mirror.revision()])
            .max();
        Ok(Some(ClusterView {
            backend: "nats",
            revision,
            hosts,
        }))
    }
}

impl Hostnames for NatsStore {
    fn put_hostname(&self, namespace: &Name, hostname: &str, script: &Name) -> StoreResult<()> {
        self.writable()?;
        if self.authoritative(&keys::namespace(namespace))?.0.is_none() {
            return Err(StoreError::NamespaceNotFound(namespace.clone()));
        }
        let key = keys::hostname(namespace, hostname);
        let inner = self.inner.clone();
        let (k, value) = (key.clone(), Bytes::from(script.as_str().to_owned()));
        let v = value.clone();
        let revision = self.run(async move {
            inner
                .records
                .put(&k, v)
                .await
                .map_err(|e| inner.failure(&format!("writing {k}"), e))
        })?;
        self.inner.applied(&key, revision, Some(value));
        Ok(())
    }

    fn delete_hostname(&self, namespace: &Name, hostname: &str) -> StoreResult<bool> {
        self.writable()?;
        let key = keys::hostname(namespace, hostname);
        if self.authoritative(&key)?.0.is_none() {
            return Ok(false);
        }
        self.delete_key(&key)?;
        Ok(true)
    }

    fn get_hostname(&self, namespace: &Name, hostname: &str) -> StoreResult<Option<Name>> {
        let key = keys::hostname(namespace, hostname);
        self.inner
            .mirror
            .get(&key)
            .map(|v| decode_name(&key, &v))
            .transpose()
    }

    fn list_hostnames(&self, namespace: &Name) -> StoreResult<Vec<(String, Name)>> {
        let prefix = keys::hostnames_of(namespace);
        let mut out = Vec::new();
        for (key, value) in self.inner.mirror.scan(&prefix) {
            let hostname = hex::decode(&key[prefix.len()..])
                .ok()
                .and_then(|h| String::from_utf8(h).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    key: key.clone(),
                    message: "hostname key is not hex".into(),
                })?;
            out.push((hostname, decode_name(&key, &value)?));
        }
        out.sort();
        Ok(out)
    }
}

fn decode_name(key: &str, value: &[u8]) -> StoreResult<Name> {
    Name::new(&String::from_utf8_lossy(value)).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        message: e.to_string(),
    })
}
