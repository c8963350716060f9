//! libFuzzer driver of `berth_host::fuzzing::dispatch_inputs` (see host/src/fuzzing.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| berth_host::fuzzing::dispatch_inputs(data));
