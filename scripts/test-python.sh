#!/usr/bin/env bash
# Runs the Python client's test suite (clients/python/tests) against the real server: sets up
# .venv-python/ (scripts/install-python-deps.sh), builds the release binary unless
# LIVEBRIDGE_BIN names one, and passes its path to the tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-python-deps.sh
if [ -z "${LIVEBRIDGE_BIN:-}" ]; then
  cargo build --release --locked -p livebridge-smol
  LIVEBRIDGE_BIN="$PWD/target/release/livebridge"
fi
export LIVEBRIDGE_BIN
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
cd clients/python
exec ../../.venv-python/bin/python -m pytest -p no:cacheprovider "$@"
