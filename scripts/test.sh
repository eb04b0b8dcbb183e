#!/usr/bin/env bash
# Runs every test of the project: the Rust workspace (engine, server, conformance, Lua client
# against the real server), the Autobahn WebSocket conformance run, and the JavaScript client
# and admin page in Node and headless Chromium (scripts/test-browser.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo test --workspace --locked
if [ -x scripts/autobahn.sh ]; then
  scripts/autobahn.sh
fi
scripts/test-browser.sh
