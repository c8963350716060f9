//! The script's own key-value bucket (`wasi:keyvalue/store`).
//!
//! Every user worker gets one bucket, isolated from other scripts and
//! persisted by the host. Keys are at most 512 bytes, values at most 1 MiB.
//!
//! ```ignore
//! berth_sdk::kv::set("visits", b"1")?;
//! let visits = berth_sdk::kv::get("visits")?;
//! ```

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "berth:platform/kv-client",
        generate_all,
    });
}

use bindings::wasi::keyvalue::store::{self, Bucket, Error};

fn describe(error: Error) -> String {
    match error {
        Error::NoSuchStore => "no such store".into(),
        Error::AccessDenied => "access denied".into(),
        Error::Other(message) => message,
    }
}

fn bucket() -> Result<Bucket, String> {
    store::open("default").map_err(describe)
}

/// The value of `key`, if set.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, String> {
    bucket()?.get(key).map_err(describe)
}

/// Sets `key` (durable when this returns).
pub fn set(key: &str, value: &[u8]) -> Result<(), String> {
    bucket()?.set(key, value).map_err(describe)
}

/// Removes `key` (no error if it was not set).
pub fn delete(key: &str) -> Result<(), String> {
    bucket()?.delete(key).map_err(describe)
}

/// Every key, in order.
pub fn keys() -> Result<Vec<String>, String> {
    let bucket = bucket()?;
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = bucket.list_keys(cursor).map_err(describe)?;
        all.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
}
