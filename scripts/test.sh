#!/usr/bin/env bash
# Runs every test of the project: the Rust workspace (engine, both servers, conformance on both,
# Lua client against the real server, cluster mode on a real redis-server: runtime-smol/tests/cluster.rs), the protocol tests again on the tokio/axum runtime, the Python client against the real server, README's quick start,
# the Autobahn WebSocket conformance run, the livebridge-hub wheel installed into a fresh
# environment (scripts/test-wheel.sh), the service files of packaging/ (scripts/test-packaging.sh),
# and the JavaScript client and admin page in Node and headless Chromium (scripts/test-browser.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
# cargo-nextest runs every test in its own process and kills one that runs past 5 minutes,
# naming it (.config/nextest.toml): a stuck test fails the run instead of holding CI until its
# time limit (issue 30). The Rust image ships it; a machine without it gets it from crates.io.
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
cargo nextest run --workspace --locked
# Doc tests (nextest does not run them): examples that compile and assert, no I/O to wait on;
# the timeout is the same guard.
timeout --signal=KILL 10m cargo test --workspace --locked --doc
# The server's protocol tests, on the second runtime (runtime-smol/tests/support/mod.rs). A
# filter over the workspace's build rather than `-p livebridge-smol`, whose different feature
# unification rebuilt for a minute in CI.
LIVEBRIDGE_TEST_RUNTIME=axum cargo nextest run --workspace --locked \
  -E 'package(livebridge-smol) & (binary(http_api) | binary(websocket) | binary(recovery) | binary(early_replies))'
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
