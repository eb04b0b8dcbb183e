//! Replays the committed raw-HTTP fuzz corpus (`fuzz/corpus/http_bytes`) on stable Rust.

use std::path::Path;

#[test]
fn http_bytes_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/http_bytes");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| livebridge_smol::fuzzing::http_bytes(&data));
        assert!(outcome.is_ok(), "corpus input {} fails", path.display());
        count += 1;
    }
    assert!(count > 0);
}
