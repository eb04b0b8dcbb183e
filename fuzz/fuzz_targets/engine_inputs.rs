//! Fuzz target: see `livebridge_core::fuzzing::engine_inputs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| livebridge_core::fuzzing::engine_inputs(data));
