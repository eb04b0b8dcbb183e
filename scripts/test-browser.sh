#!/usr/bin/env bash
# Runs the tests of the JavaScript client and the admin page (clients/js): the Node tests and
# the browser tests in headless Chromium, each against real hubs it starts on free loopback
# ports. Installs what they need first (scripts/install-browser-deps.sh) and builds the
# release server (a no-op when it is up to date).
#
#   scripts/test-browser.sh                # every test (about a minute)
#   scripts/test-browser.sh --screenshot   # instead, write docs/admin.png (clients connected, events flowing)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-browser-deps.sh
cargo build --release --locked -p livebridge-smol
cd clients/js
if [ "${1:-}" = "--screenshot" ]; then
  exec node tools/screenshot-admin.js ../../docs/admin.png
fi
# Two test files at a time: one per core. Each test fails after 60 s, and a file whose tests
# are done exits even if something it started (a socket, a child process) is still open.
exec node --test --test-concurrency=2 --test-timeout=60000 --test-force-exit tests/*.test.js tests/browser/*.test.js
