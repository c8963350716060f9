//! Secrets at rest: script secrets are sealed with an AEAD
//! (ChaCha20-Poly1305) under a key kept apart from the store, so a copy of
//! the store alone does not reveal them.
//!
//! A sealed value is `sealed:v1:<hex(nonce ‖ ciphertext ‖ tag)>`; the
//! associated data binds it to its namespace, script and variable name, so
//! a value cannot be moved to another script or variable. Values written
//! before sealing existed (plain text) still read, and are sealed on the
//! script's next write. The key is 32 random bytes in a file (by default
//! `<data_dir>/secrets.key`, created `0600` on first start); losing it
//! loses the secrets, not the rest of the store.

use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use super::{ScriptRecord, StoreError, StoreResult};

/// Prefix of a sealed value.
const SEALED: &str = "sealed:v1:";
const NONCE_LEN: usize = 12;

/// Seals and opens script secrets.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl Sealer {
    /// A sealer for a 32-byte key.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// Reads the key at `path`, or creates it (32 random bytes, mode 0600)
    /// when the file does not exist.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::other(format!(
                        "{} holds {} bytes; a secrets key is 32 bytes",
                        path.display(),
                        bytes.len()
                    ))
                })?;
                Ok(Self::new(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                options.open(path)?.write_all(&key)?;
                tracing::info!(path = %path.display(), "created the secrets key");
                Ok(Self::new(&key))
            }
            Err(e) => Err(e),
        }
    }

    fn seal(&self, aad: &str, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // A repeated nonce under one key would leak; without an OS RNG
        // there is no safe way to seal, and the store write fails loudly.
        getrandom::fill(&mut nonce).expect("the OS random number generator failed");
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("ChaCha20-Poly1305 sealing cannot fail for in-memory input");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{SEALED}{}", hex::encode(out))
    }

    fn open(&self, aad: &str, text: &str) -> Result<String, String> {
        let Some(sealed) = text.strip_prefix(SEALED) else {
            return Ok(text.to_owned()); // written before sealing existed
        };
        let bytes = hex::decode(sealed).map_err(|_| "not hex".to_owned())?;
        if bytes.len() < NONCE_LEN {
            return Err("too short".into());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| "does not open with this host's secrets key".to_owned())?;
        String::from_utf8(plain).map_err(|_| "not UTF-8".to_owned())
    }

    /// The record as it is written: secrets sealed.
    pub fn seal_record(&self, record: &ScriptRecord) -> ScriptRecord {
        let mut sealed = record.clone();
        for (name, value) in sealed.secrets.iter_mut() {
            if !value.starts_with(SEALED) {
                *value = self.seal(&aad(record, name), value);
            }
        }
        sealed
    }

    /// The record as it was written, secrets opened.
    pub fn open_record(&self, mut record: ScriptRecord) -> StoreResult<ScriptRecord> {
        let key = format!("{}/{}", record.namespace, record.name);
        let opened: Result<Vec<(String, String)>, StoreError> = record
            .secrets
            .iter()
            .map(|(name, value)| {
                self.open(&aad(&record, name), value)
                    .map(|plain| (name.clone(), plain))
                    .map_err(|message| StoreError::Corrupt {
                        key: key.clone(),
                        message: format!("secret {name:?} {message}"),
                    })
            })
            .collect();
        record.secrets = opened?.into_iter().collect();
        Ok(record)
    }
}

fn aad(record: &ScriptRecord, name: &str) -> String {
    format!("{}/{}/{name}", record.namespace, record.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::names::Name;

    fn record() -> ScriptRecord {
        let mut record: ScriptRecord = serde_json::from_value(serde_json::json!({
            "namespace": "ns", "name": "app", "sha256": "00", "size": 1, "version": 1,
            "created_ms": 0, "modified_ms": 0
        }))
        .unwrap();
        record.secrets.insert("TOKEN".into(), "hunter2".into());
        record
    }

    #[test]
    fn secrets_round_trip_and_never_appear_in_the_sealed_form() {
        let sealer = Sealer::new(&[7; 32]);
        let sealed = sealer.seal_record(&record());
        let json = serde_json::to_string(&sealed).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(sealed.secrets["TOKEN"].starts_with(SEALED));
        let opened = sealer.open_record(sealed.clone()).unwrap();
        assert_eq!(opened.secrets["TOKEN"], "hunter2");
        // Sealing twice does not double-seal.
        assert_eq!(sealer.seal_record(&sealed).secrets, sealed.secrets);
    }

    #[test]
    fn another_key_or_another_script_cannot_open_it() {
        let sealed = Sealer::new(&[7; 32]).seal_record(&record());
        let err = Sealer::new(&[8; 32])
            .open_record(sealed.clone())
            .unwrap_err();
        assert!(err.to_string().contains("TOKEN"), "{err}");
        let mut moved = sealed;
        moved.name = Name::new("other").unwrap();
        assert!(Sealer::new(&[7; 32]).open_record(moved).is_err());
    }

    #[test]
    fn plain_values_from_older_stores_still_read() {
        let opened = Sealer::new(&[7; 32]).open_record(record()).unwrap();
        assert_eq!(opened.secrets["TOKEN"], "hunter2");
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let a = Sealer::load_or_create(&path)
            .unwrap()
            .seal_record(&record());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = Sealer::load_or_create(&path).unwrap();
        assert_eq!(b.open_record(a).unwrap().secrets["TOKEN"], "hunter2");
        std::fs::write(&path, b"short").unwrap();
        assert!(Sealer::load_or_create(&path).is_err());
    }
}
