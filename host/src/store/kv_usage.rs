//! The KV quota rule, one for every backend: what a bucket holds after a
//! write or a delete, and whether a write may happen.
//!
//! A bucket's usage is its live keys and bytes (keys plus values) and, for
//! backends that keep overwritten bytes on disk for a while (sled keeps
//! them until its segment cleaner rewrites their segment), the bytes it
//! overwrote or deleted in the current rewrite window. The byte quota
//! applies to the bytes *as stored*: live plus rewritten. A write that
//! would take either count past the quota, and grow it, is refused; a
//! delete is always allowed. Pure arithmetic; each backend keeps the usage
//! beside the bucket and updates it atomically with the write.

use crate::base::limits::KvQuota;

use super::StoreError;

/// How a backend stores the bytes a write replaces or a delete removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrites {
    /// Gone at once (a store keeping one revision per key).
    Dropped,
    /// Kept on disk for up to this window, so they count until it ends.
    KeptFor {
        /// The window, milliseconds.
        window_ms: u64,
    },
}

/// What a bucket holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KvUsage {
    /// Live keys.
    pub keys: u64,
    /// Live bytes: keys plus values.
    pub bytes: u64,
    /// Bytes overwritten or deleted in the current window.
    #[serde(default)]
    pub rewritten: u64,
    /// Start of the current window, milliseconds since the Unix epoch.
    #[serde(default)]
    pub window_start_ms: u64,
}

impl KvUsage {
    /// Bytes the bucket takes as stored: live plus rewritten.
    pub fn stored(&self) -> u64 {
        self.bytes + self.rewritten
    }

    /// Starts a new window at `now_ms` if the current one is over.
    fn at(mut self, now_ms: u64, rewrites: Rewrites) -> Self {
        match rewrites {
            Rewrites::Dropped => self.rewritten = 0,
            Rewrites::KeptFor { window_ms } => {
                if now_ms.saturating_sub(self.window_start_ms) >= window_ms {
                    self.rewritten = 0;
                    self.window_start_ms = now_ms;
                }
            }
        }
        self
    }

    fn rewrite(&mut self, bytes: u64, rewrites: Rewrites) {
        if let Rewrites::KeptFor { .. } = rewrites {
            self.rewritten += bytes;
        }
    }

    /// After `key` bytes of key (replacing `old` bytes of value, if it
    /// existed) is set to `new` bytes of value.
    pub fn after_set(
        self,
        key: usize,
        old: Option<usize>,
        new: usize,
        now_ms: u64,
        rewrites: Rewrites,
    ) -> Self {
        let mut next = self.at(now_ms, rewrites);
        match old {
            Some(old) => {
                let replaced = (key + old) as u64;
                next.bytes = next.bytes.saturating_sub(replaced);
                next.rewrite(replaced, rewrites);
            }
            None => next.keys += 1,
        }
        next.bytes += (key + new) as u64;
        next
    }

    /// After `key` bytes of key with `old` bytes of value are deleted.
    pub fn after_delete(self, key: usize, old: usize, now_ms: u64, rewrites: Rewrites) -> Self {
        let mut next = self.at(now_ms, rewrites);
        let removed = (key + old) as u64;
        next.keys = next.keys.saturating_sub(1);
        next.bytes = next.bytes.saturating_sub(removed);
        next.rewrite(removed, rewrites);
        next
    }

    /// Whether going from `before` to `self` stays within `quota`: a
    /// count past its quota is refused only when the write grows it, so a
    /// bucket over a quota lowered later can still shrink.
    pub fn check(&self, before: &KvUsage, quota: KvQuota) -> Result<(), StoreError> {
        if self.keys > quota.max_keys && self.keys > before.keys {
            return Err(StoreError::KvQuota(format!(
                "the bucket may hold {} keys",
                quota.max_keys
            )));
        }
        if self.stored() > quota.max_bytes && self.stored() > before.stored() {
            let rewritten = match self.rewritten {
                0 => String::new(),
                n => format!(
                    " ({} live, {n} overwritten or deleted recently)",
                    self.bytes
                ),
            };
            return Err(StoreError::KvQuota(format!(
                "the bucket may store {} bytes of keys and values; this write would make it {}{rewritten}",
                quota.max_bytes,
                self.stored(),
            )));
        }
        Ok(())
    }

    /// The 32-byte binary form (sled's `kv_usage` values).
    pub fn encode(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..8].copy_from_slice(&self.keys.to_be_bytes());
        out[8..16].copy_from_slice(&self.bytes.to_be_bytes());
        out[16..24].copy_from_slice(&self.rewritten.to_be_bytes());
        out[24..].copy_from_slice(&self.window_start_ms.to_be_bytes());
        out
    }

    /// Reads [`Self::encode`]'s form; records written before the rewrite
    /// window have two words, and read as nothing rewritten yet.
    pub fn decode(bytes: &[u8]) -> Self {
        let word = |i: usize| {
            bytes
                .get(i..i + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes)
        };
        Self {
            keys: word(0),
            bytes: word(8),
            rewritten: word(16),
            window_start_ms: word(24),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = 60_000;
    const KEPT: Rewrites = Rewrites::KeptFor { window_ms: WINDOW };

    #[test]
    fn rewritten_bytes_count_until_their_window_ends() {
        let t0 = 1_000_000;
        let usage = KvUsage::default().after_set(1, None, 99, t0, KEPT);
        assert_eq!((usage.keys, usage.bytes, usage.stored()), (1, 100, 100));
        // Three overwrites of the same key: 100 live, 400 as stored.
        let mut usage = usage;
        for _ in 0..3 {
            usage = usage.after_set(1, Some(99), 99, t0 + 10, KEPT);
        }
        assert_eq!((usage.keys, usage.bytes, usage.stored()), (1, 100, 400));
        let deleted = usage.after_delete(1, 99, t0 + 20, KEPT);
        assert_eq!((deleted.keys, deleted.bytes, deleted.stored()), (0, 0, 400));
        // A window later the garbage is forgiven; only what is live and
        // new counts.
        let later = usage.after_set(1, Some(99), 9, t0 + WINDOW, KEPT);
        assert_eq!((later.bytes, later.rewritten), (10, 100));
        assert_eq!(later.window_start_ms, t0 + WINDOW);
        // Old two-word records read as no rewrites yet.
        let mut old = [0u8; 16];
        old[..8].copy_from_slice(&3u64.to_be_bytes());
        old[8..].copy_from_slice(&30u64.to_be_bytes());
        assert_eq!(
            KvUsage::decode(&old),
            KvUsage {
                keys: 3,
                bytes: 30,
                ..KvUsage::default()
            }
        );
        assert_eq!(KvUsage::decode(&later.encode()), later);
    }

    #[test]
    fn a_store_that_drops_rewrites_counts_live_bytes_only() {
        let usage = KvUsage::default().after_set(1, None, 99, 5, Rewrites::Dropped);
        let again = usage.after_set(1, Some(99), 99, 6, Rewrites::Dropped);
        assert_eq!((again.keys, again.bytes, again.stored()), (1, 100, 100));
        let gone = again.after_delete(1, 99, 7, Rewrites::Dropped);
        assert_eq!(gone, KvUsage::default());
    }

    #[test]
    fn only_growth_past_a_quota_is_refused() {
        let quota = KvQuota {
            max_keys: 2,
            max_bytes: 100,
        };
        let two = KvUsage::default()
            .after_set(1, None, 39, 0, Rewrites::Dropped)
            .after_set(1, None, 39, 0, Rewrites::Dropped);
        let three = two.after_set(1, None, 0, 0, Rewrites::Dropped);
        let refused = three.check(&two, quota).unwrap_err();
        assert!(refused.to_string().contains("2 keys"), "{refused}");
        let big = two.after_set(1, Some(39), 80, 0, Rewrites::Dropped);
        assert!(
            big.check(&two, quota)
                .unwrap_err()
                .to_string()
                .contains("100 bytes")
        );
        // Over a lowered quota: shrinking and equal rewrites still pass.
        let tight = KvQuota {
            max_keys: 1,
            max_bytes: 10,
        };
        let smaller = two.after_set(1, Some(39), 1, 0, Rewrites::Dropped);
        assert!(smaller.check(&two, tight).is_ok());
    }
}
