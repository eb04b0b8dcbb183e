#!/usr/bin/env bash
# Builds the livebridge-hub wheel into target/wheels/: the release `livebridge` binary and the
# Python package `livebridge` (clients/python/src) in one wheel, with maturin
# (clients/python/pyproject.toml: bindings = "bin", python-source = "src"). maturin comes from
# PyPI into .venv-wheel-build/ (pinned; installed once). The build runs in the workspace, so it
# shares target/ and Cargo.lock with `cargo build --release` (and core's include_str! of
# clients/js/livebridge.js resolves). Older livebridge_hub wheels in target/wheels/ are removed
# first, so `pip install target/wheels/livebridge_hub-*.whl` names exactly one.
# Extra arguments go to `maturin build` (e.g. --compatibility manylinux_2_28). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

MATURIN_VERSION=1.16.0
PYTHON="${PYTHON:-python3}"
VENV=.venv-wheel-build

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
if [ "$("$VENV/bin/maturin" --version 2>/dev/null)" != "maturin $MATURIN_VERSION" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "maturin==$MATURIN_VERSION"
fi

rm -f target/wheels/livebridge_hub-*.whl
(cd clients/python && "../../$VENV/bin/maturin" build --release --locked --out ../../target/wheels "$@")
ls -l target/wheels/livebridge_hub-*.whl
