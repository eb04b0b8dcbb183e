//! Fuzz target: see `livebridge_smol::fuzzing::http_bytes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livebridge_smol::fuzzing::http_bytes(data));
