#!/usr/bin/env bash
# Regenerates the files rendered from the event catalogue (issue 26): its JSON Schema
# (docs/catalogue.schema.json) and, from that schema, the clients' event types —
# clients/js/catalogue.d.ts, clients/python/src/livebridge/catalogue_types.py and the event
# field table between the markers of clients/lua/README.md — with `livebridge catalogue`.
# Builds the debug binary unless LIVEBRIDGE_BIN names one. Idempotent: a second run changes
# nothing. core/tests/generated_client_types.rs fails while a committed copy differs from what
# this writes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${LIVEBRIDGE_BIN:-}" ]; then
  cargo build --locked -p livebridge-smol --bin livebridge
  LIVEBRIDGE_BIN="$PWD/target/debug/livebridge"
fi
generate() { "$LIVEBRIDGE_BIN" catalogue --format "$1" --write "$2"; }
generate schema docs/catalogue.schema.json
generate typescript clients/js/catalogue.d.ts
generate python clients/python/src/livebridge/catalogue_types.py
generate lua-table clients/lua/README.md
