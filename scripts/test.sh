#!/usr/bin/env bash
# Runs every test of the project: the Rust workspace (engine, server, conformance, Lua client
# against the real server), the Python client against the real server, and the Autobahn
# WebSocket conformance run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo test --workspace --locked
scripts/test-python.sh
if [ -x scripts/autobahn.sh ]; then
  scripts/autobahn.sh
fi
