//! Any Host header a client sends must route to a valid script name or an
//! error message — never a panic, never an invalid name.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(host) = std::str::from_utf8(data) else { return };
    match berth_host::fuzzing::script_for_host(host) {
        Ok(name) => {
            // Whatever the router returns must itself be a valid name.
            let again = berth_host::Name::new(name.as_str()).expect("router returned an invalid name");
            assert_eq!(again.as_str(), name.as_str());
        }
        Err(message) => assert!(!message.0.is_empty()),
    }
    if let Ok(name) = berth_host::Name::new(host) {
        assert!(name.as_str().len() <= 63);
    }
});
