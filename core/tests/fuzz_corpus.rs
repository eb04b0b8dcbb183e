//! Replays the committed fuzz corpus (`fuzz/corpus/`) through the fuzz targets' bodies on
//! stable Rust, so every CI run checks every input the fuzzer ever kept.

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "corpus input {} fails", path.display());
        count += 1;
    }
    assert!(count > 0, "empty corpus for {target}");
}

#[test]
fn client_message_corpus() {
    replay("client_message", livebridge_core::fuzzing::client_message);
}

#[test]
fn engine_inputs_corpus() {
    replay("engine_inputs", livebridge_core::fuzzing::engine_inputs);
}
