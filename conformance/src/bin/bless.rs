//! Adds, to the patterns of recorded sessions, the fields the protocol has gained since they
//! were written (`channel`, `offset` and `epoch` on channel messages, `positions` and
//! `recovered` on replies): the sessions are replayed on the engine and each frame or answer
//! with such a field that its pattern lacks gets it — offsets and channels as the engine gave
//! them, epochs as `$epoch_<channel>` variables. Nothing else in a session changes; review the
//! diff before committing it.
//!
//! ```sh
//! cargo run -p livebridge-conformance --bin bless            # every session
//! cargo run -p livebridge-conformance --bin bless -- resume  # those whose name contains it
//! ```

use livebridge_conformance::{Transcript, bless, session_files, sessions_dir};
use serde::Serialize;
use serde_json::Value;

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let mut blessed = 0;
    for file in session_files(&sessions_dir()) {
        let text = std::fs::read_to_string(&file).expect("read session");
        let mut transcript = Transcript::load(&file).unwrap_or_else(|e| panic!("{e}"));
        if !transcript.name.contains(&filter) {
            continue;
        }
        match bless(&mut transcript) {
            Ok(false) => {}
            Ok(true) => {
                // Only the patterns are replaced, in the file's own JSON, so the rest of it
                // keeps its form.
                let mut raw: Value = serde_json::from_str(&text).expect("session JSON");
                for (index, step) in transcript.steps.iter().enumerate() {
                    let raw_step = &mut raw["steps"][index];
                    if let Some(frames) = &step.frames {
                        raw_step["frames"] = serde_json::to_value(frames).expect("frames");
                    }
                    if let Some(body) = step.expect.as_ref().and_then(|e| e.body.as_ref()) {
                        raw_step["expect"]["body"] = body.clone();
                    }
                }
                let mut out = Vec::new();
                let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
                let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
                raw.serialize(&mut serializer).expect("serialise");
                out.push(b'\n');
                std::fs::write(&file, out).expect("write session");
                println!("blessed {}", file.display());
                blessed += 1;
            }
            Err(failure) => eprintln!("{}: {failure:?}", file.display()),
        }
    }
    println!("{blessed} sessions blessed");
}
