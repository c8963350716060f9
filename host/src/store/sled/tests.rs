//! Unit tests of the sled store: the store contract plus sled specifics.

use super::*;
use crate::base::limits::KvQuota;
use crate::store::{Blobs, Catalog, KvBucket, KvStore, NewScript};

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

#[test]
fn settings_update_keeps_code_and_version() {
    use crate::limits::ScriptLimits;
    use std::collections::BTreeMap;
    let (_dir, store) = open();
    let ns = Name::new("ns").unwrap();
    let name = Name::new("app").unwrap();
    store.create_namespace(&ns).unwrap();
    let first = store.put_script(&ns, &name, script(b"code")).unwrap();
    let limits = ScriptLimits {
        cpu_ms: Some(5),
        ..Default::default()
    };
    let vars: BTreeMap<String, String> = [("K".to_string(), "v".to_string())].into();
    let updated = store
        .update_script(&ns, &name, &mut |r| {
            r.vars = vars.clone();
            r.limits = limits;
            Ok(())
        })
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (updated.version, &updated.sha256),
        (first.version, &first.sha256)
    );
    assert_eq!((updated.vars, updated.limits), (vars.clone(), limits));
    let missing = Name::new("nope").unwrap();
    assert!(
        store
            .update_script(&ns, &missing, &mut |_| Ok(()))
            .unwrap()
            .is_none()
    );
    let refused = store.update_script(&ns, &name, &mut |r| {
        r.vars.clear();
        Err("no".into())
    });
    assert_eq!(refused.unwrap().unwrap().unwrap_err(), "no".into());
    assert_eq!(
        store.get_script(&ns, &name).unwrap().unwrap().vars,
        vars,
        "a refused change is not stored"
    );
}

fn script(content: &[u8]) -> NewScript {
    NewScript {
        content: content.to_vec(),
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(content)),
        tags: None,
        vars: None,
        limits: None,
        egress: None,
        artifact: Some(("engine".into(), b"artifact".to_vec())),
    }
}

fn open() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    (dir, store)
}

const ROOMY: KvQuota = KvQuota {
    max_keys: 1000,
    max_bytes: 1 << 20,
};

/// A script `app` in namespace `ns` and its bucket.
fn scripted(store: &SledStore, ns: &str, app: &str) -> KvBucket {
    let ns = name(ns);
    store.ensure_namespace(&ns).unwrap();
    store
        .put_script(&ns, &name(app), script(b"\0asm"))
        .unwrap()
        .kv_bucket()
}

#[test]
fn kv_quotas_count_keys_and_bytes_and_free_them_on_delete() {
    let (_dir, store) = open();
    let app = scripted(&store, "ns", "app");
    let quota = KvQuota {
        max_keys: 2,
        max_bytes: 100,
    };
    store.kv_set(&app, "a", &[0; 40], quota).unwrap();
    store.kv_set(&app, "b", &[0; 40], quota).unwrap();
    let err = store.kv_set(&app, "c", b"x", quota).unwrap_err();
    assert!(matches!(err, StoreError::KvQuota(_)), "{err}");
    assert!(err.to_string().starts_with("kv-limit: "), "{err}");
    // An overwrite stores its bytes beside the old ones (sled keeps
    // them until it cleans their segment): 82 live + 41 overwritten.
    let err = store.kv_set(&app, "a", &[1; 40], quota).unwrap_err();
    assert!(err.to_string().contains("100 bytes"), "{err}");
    assert_eq!(
        store.kv_get(&app, "a").unwrap(),
        Some(vec![0; 40]),
        "refused writes change nothing"
    );
    // A delete is always allowed and frees a key, but its bytes stay
    // stored for the window.
    assert!(store.kv_delete(&app, "b").unwrap());
    store.kv_set(&app, "c", b"x", quota).unwrap();
    let err = store.kv_set(&app, "c", &[2; 20], quota).unwrap_err();
    assert!(err.to_string().contains("overwritten or deleted"), "{err}");
    // Usage survives a reopen (it is stored, not recomputed).
    let usage = store.kv_usage_of(&bucket_prefix(&app)).unwrap();
    assert_eq!((usage.keys, usage.bytes, usage.rewritten), (2, 43, 41));
}

/// The measured case, scaled down: re-setting the same keys over and
/// over stops at the quota instead of growing the store without bound.
#[test]
fn rewriting_the_same_keys_cannot_grow_the_store_past_the_quota() {
    let (_dir, store) = open();
    let app = scripted(&store, "ns", "app");
    let quota = KvQuota {
        max_keys: 100,
        max_bytes: 1 << 20,
    };
    let value = vec![7u8; 64 << 10];
    let mut written = 0u64;
    'rounds: for _ in 0..10 {
        for key in ["k1", "k2", "k3", "k4"] {
            match store.kv_set(&app, key, &value, quota) {
                Ok(()) => written += value.len() as u64,
                Err(StoreError::KvQuota(_)) => break 'rounds,
                Err(other) => panic!("{other}"),
            }
        }
    }
    // 256 KiB live; writes stop once 1 MiB has been stored.
    assert!(written <= 1 << 20, "{written}");
    assert!(written >= (1 << 20) - (64 << 10) - 64, "{written}");
}

#[test]
fn kv_pages_resume_after_the_last_key_and_stay_in_their_bucket() {
    let (_dir, store) = open();
    // Keys that are prefixes of each other, and a neighbouring bucket.
    let a = scripted(&store, "ns", "a");
    let b = scripted(&store, "ns", "ab");
    let keys = ["k", "k\u{1}", "ka", "kb", "l", "z"];
    for key in keys {
        store.kv_set(&a, key, b"v", ROOMY).unwrap();
    }
    store.kv_set(&b, "k", b"other", ROOMY).unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, more) = store.kv_list(&a, after.as_deref(), 2).unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().cloned());
        after = page.last().cloned();
        if !more {
            break;
        }
    }
    assert_eq!(
        seen, keys,
        "every key once, in order, none of the other bucket"
    );
    let (rest, more) = store.kv_list(&a, Some("z"), 10).unwrap();
    assert!(rest.is_empty() && !more);
}

/// The issue-25 attack on sled: an instance of a deleted script keeps
/// writing; the next script of that name must not see (or pay for) it.
#[test]
fn a_deleted_generation_can_neither_write_nor_be_inherited() {
    let (_dir, store) = open();
    let old = scripted(&store, "ns", "app");
    store.kv_set(&old, "k", b"before", ROOMY).unwrap();
    assert!(store.delete_script(&name("ns"), &name("app")).unwrap());
    let late = store.kv_set(&old, "late", b"after the delete", ROOMY);
    assert!(
        matches!(late, Err(StoreError::BucketGone { .. })),
        "{late:?}"
    );
    std::thread::sleep(std::time::Duration::from_millis(2));
    let new = scripted(&store, "ns", "app");
    assert_ne!(new.generation, old.generation);
    assert_eq!(store.kv_list(&new, None, 10).unwrap().0.len(), 0);
    assert!(matches!(
        store.kv_set(&old, "k", b"x", ROOMY),
        Err(StoreError::BucketGone { .. })
    ));
    assert_eq!(store.kv_get(&old, "k").unwrap(), None);
    store.kv_set(&new, "k", b"new", ROOMY).unwrap();
    assert_eq!(
        store.kv_get(&old, "k").unwrap(),
        None,
        "old sees nothing new"
    );
    store.delete_namespace(&name("ns"), true).unwrap();
    assert!(store.kv.is_empty() && store.kv_usage.is_empty());
}

/// Buckets written before they were scoped by generation move under
/// their script's generation when the store opens; a bucket whose
/// script is gone does not survive the move.
#[test]
fn buckets_of_the_old_layout_move_under_their_generation() {
    let dir = tempfile::tempdir().unwrap();
    let app = {
        let store = SledStore::open(dir.path()).unwrap();
        let app = scripted(&store, "ns", "app");
        store
            .legacy_kv
            .insert(b"ns/app\0greeting".as_slice(), b"hi".as_slice())
            .unwrap();
        store
            .legacy_kv
            .insert(b"ns/gone\0k".as_slice(), b"x".as_slice())
            .unwrap();
        store.flush().unwrap();
        app
    };
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        store.kv_get(&app, "greeting").unwrap(),
        Some(b"hi".to_vec())
    );
    assert!(store.legacy_kv.is_empty());
    assert_eq!(store.kv.len(), 1, "the orphaned bucket is dropped");
}

#[test]
fn namespace_lifecycle() {
    let (_d, s) = open();
    let ns = name("ns");
    s.create_namespace(&ns).unwrap();
    assert!(matches!(
        s.create_namespace(&ns),
        Err(StoreError::NamespaceExists(_))
    ));
    s.ensure_namespace(&ns).unwrap();
    assert_eq!(s.list_namespaces().unwrap().len(), 1);
    s.put_script(&ns, &name("a"), script(b"one")).unwrap();
    assert!(matches!(
        s.delete_namespace(&ns, false),
        Err(StoreError::NamespaceNotEmpty { scripts: 1, .. })
    ));
    assert_eq!(s.delete_namespace(&ns, true).unwrap(), vec![name("a")]);
    assert!(s.get_namespace(&ns).unwrap().is_none());
    assert!(s.list_scripts(&ns).unwrap().is_empty());
    assert!(s.blobs.is_empty() && s.blob_refs.is_empty() && s.artifacts.is_empty());
}

#[test]
fn put_requires_namespace_and_stores_nothing_otherwise() {
    let (_d, s) = open();
    let err = s
        .put_script(&name("nope"), &name("a"), script(b"x"))
        .unwrap_err();
    assert!(matches!(err, StoreError::NamespaceNotFound(_)));
    assert!(s.blobs.is_empty() && s.scripts.is_empty() && s.artifacts.is_empty());
}

#[test]
fn redeploy_bumps_version_and_shares_blobs() {
    let (_d, s) = open();
    let ns = name("ns");
    s.create_namespace(&ns).unwrap();
    let v1 = s.put_script(&ns, &name("a"), script(b"one")).unwrap();
    s.put_script(&ns, &name("b"), script(b"one")).unwrap();
    assert_eq!(s.blobs.len(), 1, "identical content is stored once");
    let v2 = s.put_script(&ns, &name("a"), script(b"two")).unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(v2.created_ms, v1.created_ms);
    assert_eq!(s.script_content(&ns, &name("a")).unwrap().unwrap(), b"two");
    assert_eq!(s.script_content(&ns, &name("b")).unwrap().unwrap(), b"one");
    assert!(s.delete_script(&ns, &name("b")).unwrap());
    assert!(!s.delete_script(&ns, &name("b")).unwrap());
    assert_eq!(s.blobs.len(), 1, "content of deleted script is dropped");
    assert!(s.get_artifact(&v1.sha256, "engine").unwrap().is_none());
    assert!(s.get_artifact(&v2.sha256, "engine").unwrap().is_some());
}

#[test]
fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ns = name("ns");
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.create_namespace(&ns).unwrap();
        s.put_script(&ns, &name("a"), script(b"one")).unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    let rec = s.get_script(&ns, &name("a")).unwrap().unwrap();
    assert_eq!(
        s.get_artifact(&rec.sha256, "engine").unwrap().unwrap(),
        b"artifact"
    );
}

#[test]
fn orphan_artifacts_are_swept_and_not_resurrected() {
    let (_d, s) = open();
    s.put_artifact("deadbeef", "engine", b"x").unwrap();
    assert!(
        s.artifacts.is_empty(),
        "artifact for unknown content is refused"
    );
    s.artifacts
        .insert("deadbeef/engine", b"x".as_slice())
        .unwrap();
    s.sweep_orphan_artifacts().unwrap();
    assert!(s.artifacts.is_empty());
}

#[test]
fn the_hostname_table_in_memory_follows_every_write_and_survives_reopen() {
    use crate::store::Hostnames;
    let dir = tempfile::tempdir().unwrap();
    let (ns, app, other) = (name("ns"), name("app"), name("other"));
    {
        let store = SledStore::open(dir.path()).unwrap();
        store.create_namespace(&ns).unwrap();
        store.put_hostname(&ns, "shop.example.com", &app).unwrap();
        store.put_hostname(&ns, "*.example.com", &other).unwrap();
        assert_eq!(
            store.lookup(&ns, "Shop.Example.com:8080").unwrap(),
            Some(app.clone())
        );
        assert_eq!(
            store.lookup(&ns, "a.b.example.com").unwrap(),
            Some(other.clone())
        );
        store.put_hostname(&ns, "shop.example.com", &other).unwrap();
        assert_eq!(
            store.lookup(&ns, "shop.example.com").unwrap(),
            Some(other.clone())
        );
        assert!(store.delete_hostname(&ns, "*.example.com").unwrap());
        assert_eq!(store.lookup(&ns, "a.example.com").unwrap(), None);
    }
    // Reopened: read back from disk, and a corrupt entry is reported, not
    // skipped or served.
    {
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            store.lookup(&ns, "shop.example.com").unwrap(),
            Some(other.clone())
        );
        assert_eq!(store.lookup(&ns, "a.example.com").unwrap(), None);
        store
            .hostnames
            .insert(b"ns/bad.example.com", b"Not A Name")
            .unwrap();
        store.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert!(matches!(
        store.get_hostname(&ns, "bad.example.com"),
        Err(StoreError::Corrupt { .. })
    ));
    // Deleting the namespace takes its table along: re-created, it is empty.
    store.delete_namespace(&ns, true).unwrap();
    store.create_namespace(&ns).unwrap();
    assert_eq!(store.lookup(&ns, "shop.example.com").unwrap(), None);
    assert!(
        store
            .get_hostname(&ns, "bad.example.com")
            .unwrap()
            .is_none()
    );
}
