//! Fuzz target: see `livebridge_core::fuzzing::client_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livebridge_core::fuzzing::client_message(data));
