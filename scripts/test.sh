#!/usr/bin/env bash
# Runs every test of the project: the Rust workspace (engine, both servers, conformance on both,
# Lua client against the real server, cluster mode on a real redis-server: runtime-smol/tests/cluster.rs), the protocol tests again on the tokio/axum runtime, the Python client against the real server, README's quick start,
# the Autobahn WebSocket conformance run, the livebridge-hub wheel installed into a fresh
# environment (scripts/test-wheel.sh), the service files of packaging/ (scripts/test-packaging.sh),
# and the JavaScript client and admin page in Node and headless Chromium (scripts/test-browser.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo test --workspace --locked
# The server's protocol tests, on the second runtime (runtime-smol/tests/support/mod.rs).
LIVEBRIDGE_TEST_RUNTIME=axum cargo test --locked -p livebridge-smol --test http_api --test websocket --test recovery --test early_replies
scripts/test-python.sh
# README's quick start, run as printed against the release binary test-python.sh built.
python3 scripts/check-readme.py
if [ -x scripts/autobahn.sh ]; then
  AUTOBAHN_RUNTIME=smol scripts/autobahn.sh
  AUTOBAHN_RUNTIME=axum scripts/autobahn.sh
fi
# The livebridge-hub wheel (binary + Python package) installed into a fresh environment and used.
scripts/test-wheel.sh
# The systemd unit (systemd-analyze verify) and the launchd plist of packaging/.
scripts/test-packaging.sh
scripts/test-browser.sh
