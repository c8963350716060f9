//! Any config text either parses into a config that validates, or fails with
//! an error message — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match berth_host::Config::parse(text) {
        Ok(config) => {
            let _ = config.validate();
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
