//! The store contract, once, against both backends: sled on this machine
//! and NATS JetStream shared by many hosts. Only the public API
//! (`berth_host::*`) is used, as an embedder writing a backend of its own
//! would: what one backend promises, the other keeps.

use std::sync::Arc;

use berth_host::{
    KvBucket, KvQuota, Name, NamespaceStore, NatsStore, NewScript, SledStore, StoreBackend,
    StoreConfig, StoreError,
};

use crate::harness::Nats;

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

/// `ns/app` created (afresh) and its bucket.
fn created(store: &dyn NamespaceStore, ns: &str, app: &str) -> KvBucket {
    let ns = name(ns);
    store.ensure_namespace(&ns).unwrap();
    store
        .put_script(&ns, &name(app), script(b"\0asm contract"))
        .unwrap()
        .kv_bucket()
}

const ROOMY: KvQuota = KvQuota {
    max_keys: 1000,
    max_bytes: 1 << 20,
};

/// A deleted script's instances can neither write anywhere nor leave
/// anything for the next script of that name.
fn a_deleted_generation_is_gone(store: &dyn NamespaceStore) {
    let old = created(store, "gen", "app");
    store.kv_set(&old, "k", b"before", ROOMY).unwrap();
    assert!(store.delete_script(&name("gen"), &name("app")).unwrap());
    let late = store.kv_set(&old, "late", b"after the delete", ROOMY);
    assert!(
        matches!(late, Err(StoreError::BucketGone { .. })),
        "{late:?}"
    );
    // A new generation (created_ms moves on).
    std::thread::sleep(std::time::Duration::from_millis(5));
    let new = created(store, "gen", "app");
    assert_ne!(new.generation, old.generation);
    assert_eq!(store.kv_list(&new, None, 10).unwrap(), (vec![], false));
    assert_eq!(store.kv_get(&new, "late").unwrap(), None);
    assert_eq!(store.kv_get(&new, "k").unwrap(), None);
    store.kv_set(&new, "k", b"new", ROOMY).unwrap();
    assert_eq!(
        store.kv_get(&old, "k").unwrap(),
        None,
        "the old one sees nothing"
    );
}

/// However many writers race, the quota counts every key once: concurrent
/// deletes of one key free it once, concurrent sets of one new key take
/// one key. (A shared backend may refuse some of those racing writers at
/// the quota's edge — it reserves before it writes — but never admits more
/// than the quota.)
fn racing_writers_keep_the_quota_exact(store: Arc<dyn NamespaceStore>) {
    let bucket = created(store.as_ref(), "race", "app");
    let quota = KvQuota {
        max_keys: 2,
        max_bytes: 1 << 20,
    };
    store.kv_set(&bucket, "a", b"1", quota).unwrap();
    store.kv_set(&bucket, "b", b"2", quota).unwrap();
    let deletes: Vec<_> = (0..8)
        .map(|_| {
            let (store, bucket) = (store.clone(), bucket.clone());
            std::thread::spawn(move || store.kv_delete(&bucket, "a").unwrap())
        })
        .collect();
    let deleted = deletes
        .into_iter()
        .map(|d| d.join().unwrap())
        .filter(|removed| *removed)
        .count();
    assert_eq!(deleted, 1, "one delete removed it");
    // One key is free: c fits, d does not.
    store.kv_set(&bucket, "c", b"3", quota).unwrap();
    let refused = store.kv_set(&bucket, "d", b"4", quota).unwrap_err();
    assert!(matches!(refused, StoreError::KvQuota(_)), "{refused}");
    // Eight writers of one new key take one key.
    store.kv_delete(&bucket, "c").unwrap();
    let sets: Vec<_> = (0..8)
        .map(|i| {
            let (store, bucket) = (store.clone(), bucket.clone());
            std::thread::spawn(move || store.kv_set(&bucket, "e", format!("{i}").as_bytes(), quota))
        })
        .collect();
    let mut stored = 0;
    for set in sets {
        match set.join().unwrap() {
            Ok(()) => stored += 1,
            Err(StoreError::KvQuota(_)) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert!(stored >= 1, "one of them wrote it");
    let refused = store.kv_set(&bucket, "f", b"6", quota).unwrap_err();
    assert!(matches!(refused, StoreError::KvQuota(_)), "{refused}");
    let (keys, _) = store.kv_list(&bucket, None, 10).unwrap();
    assert_eq!(keys, ["b", "e"]);
}

fn the_contract(store: Arc<dyn NamespaceStore>) {
    a_deleted_generation_is_gone(store.as_ref());
    racing_writers_keep_the_quota_exact(store);
}

#[test]
fn sled_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    the_contract(Arc::new(SledStore::open(dir.path()).unwrap()));
}

#[test]
fn nats_keeps_the_store_contract() {
    let nats = Nats::start();
    let cache = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        backend: StoreBackend::Nats,
        url: nats.url(),
        prefix: "contract".into(),
        ..StoreConfig::default()
    };
    let store = NatsStore::open(&config, cache.path(), None).unwrap();
    the_contract(Arc::new(store));
}
