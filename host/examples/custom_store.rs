//! A store of the embedder's own behind Berth: the store seam implemented
//! outside the crate, with nothing but `berth_host`'s public API — so the
//! compiler keeps the promise that the four area traits can be implemented
//! by anyone.
//!
//! `AuditedStore` wraps [`SledStore`] and keeps an audit trail of every
//! write (what a platform might send to its own audit log), delegating
//! every call. Berth serves through it like through any backend: deploys,
//! requests, guest KV, deletes.
//!
//! ```sh
//! make guests
//! cargo run -p berth-host --example custom_store -- build/wasm/hello.wasm build/wasm/tenant.wasm
//! ```
//!
//! It runs a self-test in process and prints what it saw (the end-to-end
//! tests run it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use axum::body::Body;
use berth_host::{
    AssetEntry, Berth, Blobs, Catalog, Config, Hostnames, Invalid, KvBucket, KvQuota, KvStore,
    Name, NamespaceRecord, NewScript, ScriptRecord, SledStore, StoreChange, StoreResult,
};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// A sled store that records every write.
struct AuditedStore {
    inner: SledStore,
    trail: Mutex<Vec<String>>,
}

impl AuditedStore {
    fn audit(&self, entry: String) {
        self.trail.lock().expect("the trail lock").push(entry);
    }

    fn trail(&self) -> Vec<String> {
        self.trail.lock().expect("the trail lock").clone()
    }
}

impl Catalog for AuditedStore {
    fn create_namespace(&self, name: &Name) -> StoreResult<NamespaceRecord> {
        self.audit(format!("create namespace {name}"));
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
        self.audit(format!("delete namespace {name}"));
        self.inner.delete_namespace(name, force)
    }
    fn put_script(&self, ns: &Name, name: &Name, script: NewScript) -> StoreResult<ScriptRecord> {
        self.audit(format!(
            "put script {ns}/{name} sha256 {}",
            &script.sha256[..12]
        ));
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
        self.audit(format!("update script {ns}/{name}"));
        self.inner.update_script(ns, name, change)
    }
    fn update_namespace(
        &self,
        name: &Name,
        change: &mut dyn FnMut(&mut NamespaceRecord) -> Result<(), Invalid>,
    ) -> StoreResult<Option<Result<NamespaceRecord, Invalid>>> {
        self.audit(format!("update namespace {name}"));
        self.inner.update_namespace(name, change)
    }
    fn delete_script(&self, ns: &Name, name: &Name) -> StoreResult<bool> {
        self.audit(format!("delete script {ns}/{name}"));
        self.inner.delete_script(ns, name)
    }
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<StoreChange>> {
        self.inner.changes()
    }
}

impl Blobs for AuditedStore {
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
        self.audit(format!("put assets {ns}/{name}"));
        self.inner.put_assets(ns, name, manifest, files)
    }
    fn blob(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
        self.inner.blob(sha256)
    }
    fn get_artifact(&self, sha256: &str, engine_hash: &str) -> StoreResult<Option<Vec<u8>>> {
        self.inner.get_artifact(sha256, engine_hash)
    }
    fn put_artifact(&self, sha256: &str, engine_hash: &str, bytes: &[u8]) -> StoreResult<()> {
        self.inner.put_artifact(sha256, engine_hash, bytes)
    }
}

impl Hostnames for AuditedStore {
    fn put_hostname(&self, ns: &Name, hostname: &str, script: &Name) -> StoreResult<()> {
        self.audit(format!("map {hostname} to {ns}/{script}"));
        self.inner.put_hostname(ns, hostname, script)
    }
    fn delete_hostname(&self, ns: &Name, hostname: &str) -> StoreResult<bool> {
        self.audit(format!("unmap {hostname}"));
        self.inner.delete_hostname(ns, hostname)
    }
    fn get_hostname(&self, ns: &Name, hostname: &str) -> StoreResult<Option<Name>> {
        self.inner.get_hostname(ns, hostname)
    }
    fn list_hostnames(&self, ns: &Name) -> StoreResult<Vec<(String, Name)>> {
        self.inner.list_hostnames(ns)
    }
}

impl KvStore for AuditedStore {
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
        self.audit(format!(
            "kv set {}/{} {key} ({} bytes)",
            bucket.namespace,
            bucket.script,
            value.len()
        ));
        self.inner.kv_set(bucket, key, value, quota)
    }
    fn kv_delete(&self, bucket: &KvBucket, key: &str) -> StoreResult<bool> {
        self.audit(format!(
            "kv delete {}/{} {key}",
            bucket.namespace, bucket.script
        ));
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [hello, tenant] = args.as_slice() else {
        bail!("usage: custom_store HELLO.wasm TENANT.wasm");
    };
    let read = |path: &str| std::fs::read(path).with_context(|| format!("reading {path}"));
    let dir = tempfile::tempdir()?;
    let store = Arc::new(AuditedStore {
        inner: SledStore::open(&dir.path().join("store"))?,
        trail: Mutex::default(),
    });
    let mut config = Config::default();
    config.server.data_dir = dir.path().join("data");
    config.runtime.instances = 20;
    let berth = Berth::builder(config)
        .store(store.clone())
        .admin_token("custom-store")
        .build()
        .await?;

    let default = Name::new("default")?;
    berth
        .deploy(
            &default,
            &Name::new("hello")?,
            read(hello)?,
            Default::default(),
        )
        .await?;
    berth
        .deploy(
            &default,
            &Name::new("notes")?,
            read(tenant)?,
            Default::default(),
        )
        .await?;
    let data = berth.data_router();
    let get = |host: &'static str, path: &'static str| {
        let data = data.clone();
        async move {
            let request = http::Request::builder()
                .uri(path)
                .header(http::header::HOST, host)
                .body(Body::empty())?;
            let response = data.oneshot(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, anyhow::Error>((status, String::from_utf8_lossy(&body).trim().to_owned()))
        }
    };
    let checks = [
        ("hello.localhost", "/", 200, None),
        ("notes.localhost", "/kv/set?key=k&value=v1", 200, None),
        ("notes.localhost", "/kv/get?key=k", 200, Some("v1")),
    ];
    for (host, path, status, body) in checks {
        let (got, text) = get(host, path).await?;
        println!("{host}{path}: {got} {text}");
        if got != status || body.is_some_and(|b| b != text) {
            bail!("{host}{path}: expected {status} {body:?}, got {got} {text:?}");
        }
    }
    berth.delete(&default, &Name::new("hello")?).await?;
    let (gone, _) = get("hello.localhost", "/").await?;
    println!("hello.localhost/ after delete: {gone}");
    if gone != 404 {
        bail!("a deleted script still answers ({gone})");
    }
    for entry in store.trail() {
        println!("audit: {entry}");
    }
    drop(data);
    berth.shutdown().await;
    println!("self-test passed");
    Ok(())
}
