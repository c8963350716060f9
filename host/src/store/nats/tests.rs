//! Unit tests of the NATS store against a real `nats-server` (JetStream on
//! an ephemeral loopback port, temp store), started here the way the e2e
//! harness starts it: what a race or a crash leaves behind is set up
//! exactly, which the end-to-end tests cannot do.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::base::limits::KvQuota;
use crate::store::{AssetEntry, Blobs, Hostnames, KvBucket, KvStore, NamespaceStore};

/// A `nats-server` with JetStream; killed when dropped. CI has it
/// (`make nats-server`): a missing binary fails the test.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "host: 127.0.0.1\nport: -1\nmax_payload: 8MB\njetstream {{ store_dir: {:?} }}\n",
                dir.path().join("js").display().to_string()
            ),
        )
        .expect("write nats.conf");
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let mut child = Command::new(&binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {binary} ({e}); `make nats-server` installs it")
            });
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut port = None;
        for line in lines.by_ref() {
            let line = line.expect("nats-server log");
            if let Some((_, addr)) = line.split_once("Listening for client connections on ") {
                let addr: std::net::SocketAddr = addr.trim().parse().expect("nats address");
                port = Some(addr.port());
            }
            if line.contains("Server is ready") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            port: port.expect("nats-server printed its port"),
            _dir: dir,
        }
    }

    /// A store on this server (prefix `unit`), as one host opens it.
    fn open(&self, cache: &tempfile::TempDir) -> NatsStore {
        let config = StoreConfig {
            backend: crate::store::config::StoreBackend::Nats,
            url: format!("nats://127.0.0.1:{}", self.port),
            prefix: "unit".into(),
            ..Default::default()
        };
        NatsStore::open(&config, cache.path(), Some(Sealer::new(&[7; 32]))).expect("open")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn script(content: &[u8]) -> NewScript {
    NewScript {
        content: content.to_vec(),
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(content)),
        tags: None,
        vars: None,
        limits: None,
        egress: None,
        artifact: None,
    }
}

const ROOMY: KvQuota = KvQuota {
    max_keys: 100,
    max_bytes: 1 << 20,
};

/// A host whose every read-modify-write of a script record loses its race:
/// between reading the record and writing it back, another host (`rival`,
/// on the same NATS) writes it. Everything else goes straight to `inner`.
struct Outraced {
    inner: NatsStore,
    rival: NatsStore,
    rounds: Arc<AtomicUsize>,
}

impl Catalog for Outraced {
    fn create_namespace(&self, name: &Name) -> StoreResult<NamespaceRecord> {
        self.inner.create_namespace(name)
    }
    fn ensure_namespace(&self, name: &Name) -> StoreResult<NamespaceRecord> {
        self.inner.ensure_namespace(name)
    }
    fn get_namespace(&self, name: &Name) -> StoreResult<Option<NamespaceRecord>> {
        self.inner.get_namespace(name)
    }
    fn list_namespaces(&self) -> StoreResult<Vec<NamespaceRecord>> {
        self.inner.list_namespaces()
    }
    fn delete_namespace(&self, name: &Name, force: bool) -> StoreResult<Vec<Name>> {
        self.inner.delete_namespace(name, force)
    }
    fn put_script(&self, ns: &Name, name: &Name, script: NewScript) -> StoreResult<ScriptRecord> {
        self.inner.put_script(ns, name, script)
    }
    fn get_script(&self, ns: &Name, name: &Name) -> StoreResult<Option<ScriptRecord>> {
        self.inner.get_script(ns, name)
    }
    fn list_scripts(&self, ns: &Name) -> StoreResult<Vec<ScriptRecord>> {
        self.inner.list_scripts(ns)
    }
    fn update_script(
        &self,
        ns: &Name,
        name: &Name,
        change: &mut dyn FnMut(&mut ScriptRecord) -> Result<(), Invalid>,
    ) -> StoreResult<Option<Result<ScriptRecord, Invalid>>> {
        self.inner.update_script(ns, name, &mut |record| {
            let round = self.rounds.fetch_add(1, Ordering::SeqCst) + 1;
            self.rival
                .update_script(ns, name, &mut |theirs| {
                    theirs.vars.insert("RIVAL".into(), round.to_string());
                    Ok(())
                })
                .expect("the rival's write")
                .expect("the script exists")
                .expect("the rival's change");
            change(record)
        })
    }
    fn update_namespace(
        &self,
        name: &Name,
        change: &mut dyn FnMut(&mut NamespaceRecord) -> Result<(), Invalid>,
    ) -> StoreResult<Option<Result<NamespaceRecord, Invalid>>> {
        self.inner.update_namespace(name, change)
    }
    fn delete_script(&self, ns: &Name, name: &Name) -> StoreResult<bool> {
        self.inner.delete_script(ns, name)
    }
    fn changes(&self) -> Option<broadcast::Receiver<StoreChange>> {
        self.inner.changes()
    }
}

impl Blobs for Outraced {
    fn script_content(&self, ns: &Name, name: &Name) -> StoreResult<Option<Vec<u8>>> {
        self.inner.script_content(ns, name)
    }
    fn put_assets(
        &self,
        ns: &Name,
        name: &Name,
        manifest: BTreeMap<String, AssetEntry>,
        files: BTreeMap<String, Vec<u8>>,
    ) -> StoreResult<Option<ScriptRecord>> {
        self.inner.put_assets(ns, name, manifest, files)
    }
    fn blob(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
        self.inner.blob(sha256)
    }
    fn get_artifact(&self, sha256: &str, engine_hash: &str) -> StoreResult<Option<Vec<u8>>> {
        self.inner.get_artifact(sha256, engine_hash)
    }
    fn has_artifact(&self, sha256: &str, engine_hash: &str) -> StoreResult<bool> {
        self.inner.has_artifact(sha256, engine_hash)
    }
    fn put_artifact(&self, sha256: &str, engine_hash: &str, bytes: &[u8]) -> StoreResult<()> {
        self.inner.put_artifact(sha256, engine_hash, bytes)
    }
}

impl Hostnames for Outraced {
    fn put_hostname(&self, ns: &Name, hostname: &str, script: &Name) -> StoreResult<()> {
        self.inner.put_hostname(ns, hostname, script)
    }
    fn delete_hostname(&self, ns: &Name, hostname: &str) -> StoreResult<bool> {
        self.inner.delete_hostname(ns, hostname)
    }
    fn get_hostname(&self, ns: &Name, hostname: &str) -> StoreResult<Option<Name>> {
        self.inner.get_hostname(ns, hostname)
    }
    fn list_hostnames(&self, ns: &Name) -> StoreResult<Vec<(String, Name)>> {
        self.inner.list_hostnames(ns)
    }
}

impl KvStore for Outraced {
    fn kv_get(&self, bucket: &KvBucket, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.inner.kv_get(bucket, key)
    }
    fn kv_set(
        &self,
        bucket: &KvBucket,
        key: &str,
        value: &[u8],
        quota: KvQuota,
    ) -> StoreResult<()> {
        self.inner.kv_set(bucket, key, value, quota)
    }
    fn kv_delete(&self, bucket: &KvBucket, key: &str) -> StoreResult<bool> {
        self.inner.kv_delete(bucket, key)
    }
    fn kv_list(
        &self,
        bucket: &KvBucket,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<String>, bool)> {
        self.inner.kv_list(bucket, after, limit)
    }
}

/// docs/scale-out.md: "the loser of a race re-reads and retries (32
/// rounds, then `409 conflict`)". A settings change through the admin API
/// of a host that loses every round: exactly 32 attempts, then 409
/// `conflict`; the rival's writes all landed, the loser's none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_loses_every_compare_and_set_round_answers_409_conflict() {
    let server = Server::start();
    let (cache, rival_cache, data) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (ns, app) = (name("default"), name("app"));
    let outraced = {
        let (inner, rival) = (server.open(&cache), server.open(&rival_cache));
        inner.ensure_namespace(&ns).unwrap();
        inner.put_script(&ns, &app, script(b"\0asm cas")).unwrap();
        Outraced {
            inner,
            rival,
            rounds: Arc::default(),
        }
    };
    let rounds = outraced.rounds.clone();
    let store: Arc<dyn NamespaceStore> = Arc::new(outraced);
    let mut config = crate::Config::default();
    config.server.data_dir = data.path().to_path_buf();
    let berth = crate::Berth::builder(config)
        .store(store.clone())
        .admin_token("unit")
        .build()
        .await
        .expect("build");
    let request = http::Request::builder()
        .method("PATCH")
        .uri("/v1/namespaces/default/scripts/app/settings")
        .header("authorization", "Bearer unit")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(r#"{"vars": {"MINE": "lost"}}"#))
        .unwrap();
    let response = tower::ServiceExt::oneshot(berth.admin_router(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::CONFLICT);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errors"][0]["code"], "conflict", "{body}");
    assert_eq!(rounds.load(Ordering::SeqCst), CAS_ROUNDS);
    drop(store);
    // Read what NATS holds (not a mirror): the rival's last round, and
    // nothing of the loser's.
    let check = server.open(&tempfile::tempdir().unwrap());
    let key = keys::script(&ns, &app);
    let (bytes, _) = check.authoritative(&key).unwrap();
    let record = check.decode_script(&key, &bytes.unwrap()).unwrap();
    assert_eq!(record.vars.get("RIVAL"), Some(&CAS_ROUNDS.to_string()));
    assert_eq!(record.vars.get("MINE"), None);
    berth.shutdown().await;
}

/// docs/scale-out.md: a namespace deletion a host did not finish (it died
/// after removing the namespace record) leaves scripts, hostnames, asset
/// ownership and guest KV behind; they are removed before a namespace of
/// that name is created again, by any host.
#[test]
fn a_namespace_deletion_cut_short_is_finished_before_the_name_is_used_again() {
    let server = Server::start();
    let (dying_cache, other_cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dying = server.open(&dying_cache);
    let shop = name("shop");
    dying.create_namespace(&shop).unwrap();
    let cart = dying
        .put_script(&shop, &name("cart"), script(b"\0asm cart"))
        .unwrap();
    dying
        .put_hostname(&shop, "shop.example.org", &name("cart"))
        .unwrap();
    let asset = b"<h1>shop</h1>".to_vec();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&asset));
    let manifest = BTreeMap::from([(
        "/index.html".to_owned(),
        AssetEntry {
            sha256: sha.clone(),
            size: asset.len() as u64,
        },
    )]);
    dying
        .put_assets(
            &shop,
            &name("cart"),
            manifest,
            BTreeMap::from([(sha.clone(), asset)]),
        )
        .unwrap()
        .expect("the script exists");
    let bucket = cart.kv_bucket();
    dying.kv_set(&bucket, "k", b"old", ROOMY).unwrap();
    // The deletion's first write, then the host dies.
    dying.delete_key(&keys::namespace(&shop)).unwrap();
    drop(dying);

    let other = server.open(&other_cache);
    // What the crash left: unreachable (no namespace), but there.
    assert!(other.get_namespace(&shop).unwrap().is_none());
    let leftovers = |store: &NatsStore| {
        let mut keys: Vec<String> = [
            keys::scripts_of(&shop),
            keys::hostnames_of(&shop),
            keys::asset_owners_of(&shop),
        ]
        .iter()
        .flat_map(|prefix| store.inner.mirror.scan(prefix))
        .map(|(key, _)| key)
        .collect();
        if store.kv_get(&bucket, "k").unwrap().is_some() {
            keys.push(keys::kv_value(&bucket, "k"));
        }
        let usage = keys::kv_usage(&bucket);
        let inner = store.inner.clone();
        let usage_left = store
            .run(async move {
                let entry = inner
                    .guest_kv
                    .entry(usage.clone())
                    .await
                    .map_err(|e| StoreError::Backend(format!("reading {usage}: {e}")))?;
                Ok(entry
                    .filter(|e| e.operation == jkv::Operation::Put)
                    .map(|_| usage))
            })
            .unwrap();
        keys.extend(usage_left);
        keys.sort();
        keys
    };
    let left = leftovers(&other);
    assert_eq!(
        left.len(),
        5,
        "script, hostname, owner, value, usage: {left:?}"
    );

    other.create_namespace(&shop).unwrap();
    assert_eq!(leftovers(&other), Vec::<String>::new());
    assert!(other.list_scripts(&shop).unwrap().is_empty());
    assert!(other.list_hostnames(&shop).unwrap().is_empty());
    // Not even the same generation would find its old values.
    assert_eq!(other.kv_list(&bucket, None, 10).unwrap(), (vec![], false));
}

/// Hosts of a new cluster start together and each ensures the default
/// namespace: the one that loses the race to create it must serve it at
/// once (its mirror holds the winner's record when `ensure_namespace`
/// returns), not only once its watch brings the winner's write — a deploy
/// through it right after its start was refused with namespace-not-found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_that_loses_the_race_to_create_a_namespace_serves_it_at_once() {
    let server = Server::start();
    let (first_cache, second_cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, second) = (server.open(&first_cache), server.open(&second_cache));
    for round in 0..20 {
        let ns = name(&format!("ns{round}"));
        let created = first.ensure_namespace(&ns).unwrap();
        let ensured = second.ensure_namespace(&ns).unwrap();
        assert_eq!(ensured.created_ms, created.created_ms, "one record");
        assert!(
            second.get_namespace(&ns).unwrap().is_some(),
            "round {round}: ensured but not served"
        );
    }
}
