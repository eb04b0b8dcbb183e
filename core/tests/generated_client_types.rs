//! The files rendered from the built-in event catalogue are committed (so that clients get
//! them without a Rust toolchain); this fails while any of them differs from a fresh
//! rendering, naming each stale file and the command that regenerates them.

use livebridge_core::Catalogue;
use livebridge_core::client_types::{self, Target};
use std::path::Path;

/// Each committed file and what it holds, as scripts/generate-client-types.sh writes them.
const GENERATED: &[(&str, Target)] = &[
    ("docs/catalogue.schema.json", Target::Schema),
    ("clients/js/catalogue.d.ts", Target::TypeScript),
    (
        "clients/python/src/livebridge/catalogue_types.py",
        Target::Python,
    ),
    ("clients/lua/README.md", Target::LuaTable),
];

#[test]
fn committed_client_types_match_the_catalogue() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let catalogue = Catalogue::builtin();
    let mut stale = Vec::new();
    for &(path, target) in GENERATED {
        let committed = std::fs::read_to_string(root.join(path))
            .unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        let rendered = client_types::render(&catalogue, target);
        let expected = match target {
            // Only the table between the README's markers is generated.
            Target::LuaTable => client_types::splice(&committed, &rendered)
                .unwrap_or_else(|e| panic!("{path}: {e}")),
            _ => rendered,
        };
        if committed != expected {
            stale.push(path);
        }
    }
    assert!(
        stale.is_empty(),
        "generated from the event catalogue but stale: {}; regenerate them with \
         scripts/generate-client-types.sh and commit the result",
        stale.join(", ")
    );
}
