//! Key and object names in the cluster's buckets: the one place that knows
//! the layout, so every reader and writer agrees.
//!
//! Records bucket `<prefix>-records` (JetStream KV, history 1):
//! - `ns.<ns>` → JSON namespace record
//! - `sc.<ns>.<script>` → JSON script record (secrets sealed)
//! - `hn.<ns>.<hex(hostname)>` → script name (hostnames hold `*` and `.`,
//!   which KV keys cannot)
//! - `ao.<ns>.<sha256>` → empty: the namespace uploaded this asset content
//! - `sys.sealing-key` → hex key sealing secrets, when no
//!   `server.secrets_key_file` is configured
//!
//! Guest KV bucket `<prefix>-kv`: `d.<ns>.<script>.<gen>.k<hex(key)>` →
//! value, `u.<ns>.<script>.<gen>` → JSON usage. `<gen>` is the script's
//! `created_ms`, so a script deleted and created again never sees the old
//! bucket even if a crash interrupted the purge. Hex keeps byte order, so
//! sorted keys list in the guest's key order.
//!
//! Object store `<prefix>-blobs`: `blob/<sha256>` (components and assets,
//! checked against their hash on every fetch) and
//! `artifact/<engine-hash>/<sha256>` (native code: a 32-byte HMAC tag, then
//! the artifact). Names ([`Name`]) are `[a-z0-9-]`, safe as subject tokens.

use crate::base::names::Name;
use crate::base::records::KvBucket;

/// Key of a namespace record.
pub fn namespace(ns: &Name) -> String {
    format!("ns.{ns}")
}

/// Prefix of every namespace record.
pub const NAMESPACES: &str = "ns.";

/// Key of a script record.
pub fn script(ns: &Name, name: &Name) -> String {
    format!("sc.{ns}.{name}")
}

/// Prefix of a namespace's script records.
pub fn scripts_of(ns: &Name) -> String {
    format!("sc.{ns}.")
}

/// Key of a hostname mapping.
pub fn hostname(ns: &Name, hostname: &str) -> String {
    format!("hn.{ns}.{}", hex::encode(hostname))
}

/// Prefix of a namespace's hostname mappings.
pub fn hostnames_of(ns: &Name) -> String {
    format!("hn.{ns}.")
}

/// Key recording that a namespace uploaded asset content `sha256`.
pub fn asset_owner(ns: &Name, sha256: &str) -> String {
    format!("ao.{ns}.{sha256}")
}

/// Prefix of a namespace's asset ownership keys.
pub fn asset_owners_of(ns: &Name) -> String {
    format!("ao.{ns}.")
}

/// Key of the shared sealing key.
pub const SEALING_KEY: &str = "sys.sealing-key";

/// Key of a guest KV value.
pub fn kv_value(bucket: &KvBucket, key: &str) -> String {
    format!("{}k{}", kv_values_of(bucket), hex::encode(key))
}

/// Prefix of one bucket's values.
pub fn kv_values_of(bucket: &KvBucket) -> String {
    let KvBucket {
        namespace,
        script,
        generation,
    } = bucket;
    format!("d.{namespace}.{script}.{generation}.")
}

/// The guest key of a stored KV key under `prefix`, if it is one.
pub fn kv_key_from(prefix: &str, stored: &str) -> Option<String> {
    let hex = stored.strip_prefix(prefix)?.strip_prefix('k')?;
    String::from_utf8(hex::decode(hex).ok()?).ok()
}

/// Key of a bucket's usage record.
pub fn kv_usage(bucket: &KvBucket) -> String {
    let KvBucket {
        namespace,
        script,
        generation,
    } = bucket;
    format!("u.{namespace}.{script}.{generation}")
}

/// Subject filter (inside the KV stream) of everything a script's buckets
/// hold, every generation.
pub fn kv_all_of_script(ns: &Name, script: &Name) -> String {
    format!("*.{ns}.{script}.>")
}

/// Subject filter of everything a namespace's buckets hold.
pub fn kv_all_of_namespace(ns: &Name) -> String {
    format!("*.{ns}.>")
}

/// Object name of a blob.
pub fn blob(sha256: &str) -> String {
    format!("blob/{sha256}")
}

/// Object name of an artifact.
pub fn artifact(sha256: &str, engine_hash: &str) -> String {
    format!("artifact/{engine_hash}/{sha256}")
}

/// What a records-bucket key names, for cache invalidation.
pub enum Parsed {
    /// `ns.<ns>`
    Namespace(Name),
    /// `sc.<ns>.<script>`
    Script(Name, Name),
    /// Anything else (hostnames, owners, system keys).
    Other,
}

/// Parses a records-bucket key.
pub fn parse(key: &str) -> Parsed {
    let mut parts = key.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("ns"), Some(ns), None, None) => match Name::new(ns) {
            Ok(ns) => Parsed::Namespace(ns),
            Err(_) => Parsed::Other,
        },
        (Some("sc"), Some(ns), Some(name), None) => match (Name::new(ns), Name::new(name)) {
            (Ok(ns), Ok(name)) => Parsed::Script(ns, name),
            _ => Parsed::Other,
        },
        _ => Parsed::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_keys_round_trip_and_keep_order() {
        let bucket = KvBucket {
            namespace: Name::new("ns").unwrap(),
            script: Name::new("s").unwrap(),
            generation: 7,
        };
        let prefix = kv_values_of(&bucket);
        let mut stored: Vec<String> = ["b", "", "a/b c", "a", "ü*>."]
            .iter()
            .map(|k| kv_value(&bucket, k))
            .collect();
        stored.sort();
        let keys: Vec<String> = stored
            .iter()
            .map(|k| kv_key_from(&prefix, k).unwrap())
            .collect();
        assert_eq!(keys, ["", "a", "a/b c", "b", "ü*>."]);
        assert!(
            stored
                .iter()
                .all(|k| k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'))
        );
        assert_eq!(kv_key_from(&prefix, "d.ns.s.8.k61"), None);
    }

    #[test]
    fn parses_record_keys() {
        assert!(matches!(parse("ns.web"), Parsed::Namespace(n) if n.as_str() == "web"));
        assert!(
            matches!(parse("sc.web.app"), Parsed::Script(n, s) if n.as_str() == "web" && s.as_str() == "app")
        );
        assert!(matches!(parse("hn.web.2a"), Parsed::Other));
        assert!(matches!(parse("sc.web.app.x"), Parsed::Other));
        assert!(matches!(parse("sc.WEB.app"), Parsed::Other));
    }
}
