//! Cranelift's incremental compilation cache, on this host's disk.
//!
//! Every componentize-js component carries the same SpiderMonkey engine
//! (~12 MB of wasm); compiling each upload from scratch took 6.6 s here.
//! Wasmtime's incremental cache keys every function's compiled code by a
//! hash of the function and the compiler's settings, so a second JS upload
//! reuses the engine's functions and compiles only what differs.
//!
//! Entries are native code: this host writes them from its own
//! compilations into `data_dir/cache/compile` and reads only those — they
//! never go through a shared store. The cache is bounded
//! ([`MAX_BYTES`]); past it, it starts over empty (a cold compile costs
//! time, never correctness). Failures to read or write only cost a
//! compile.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes the cache may hold on disk before it starts over.
pub const MAX_BYTES: u64 = 1 << 30;

/// The incremental cache.
#[derive(Debug)]
pub struct CompileCache {
    db: sled::Db,
    /// Bytes written since open, on top of what was on disk then.
    written: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CompileCache {
    /// Opens (or creates) the cache in `dir`.
    pub fn open(dir: &Path) -> Result<Self, sled::Error> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 << 20)
            .open()?;
        let written = AtomicU64::new(db.size_on_disk().unwrap_or(0));
        Ok(Self {
            db,
            written,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Functions found in the cache and compiled, since start.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

impl wasmtime::CacheStore for CompileCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        match self.db.get(key) {
            Ok(Some(value)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(Cow::Owned(value.to_vec()))
            }
            _ => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let size = (key.len() + value.len()) as u64;
        if self.written.fetch_add(size, Ordering::Relaxed) + size > MAX_BYTES {
            tracing::info!("the compile cache is full; starting it over");
            if self.db.clear().is_err() {
                return false;
            }
            self.written.store(size, Ordering::Relaxed);
        }
        self.db.insert(key, value).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore;

    #[test]
    fn keeps_entries_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let cache = CompileCache::open(dir.path()).unwrap();
            assert!(cache.get(b"f").is_none());
            assert!(cache.insert(b"f", b"code".to_vec()));
            assert_eq!(cache.get(b"f").as_deref(), Some(&b"code"[..]));
            assert_eq!(cache.stats(), (1, 1));
        }
        let cache = CompileCache::open(dir.path()).unwrap();
        assert_eq!(cache.get(b"f").as_deref(), Some(&b"code"[..]));
    }
}
