#!/usr/bin/env bash
# Installs cargo-deny, the tool behind scripts/check-supply-chain.sh, idempotently: built from
# crates.io with its own lock file, skipped when the pinned version is already on PATH. The
# build is a one-time cost of a few minutes on two cores; the version is pinned so the
# policy in deny.toml and the advisory database layout the check assembles stay in step.
set -euo pipefail

CARGO_DENY_VERSION=0.20.2

installed=$(cargo-deny --version 2>/dev/null || true)
if [ "$installed" != "cargo-deny $CARGO_DENY_VERSION" ]; then
  echo "install-supply-chain-tools: installing cargo-deny $CARGO_DENY_VERSION from crates.io (takes minutes)"
  cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION"
fi
