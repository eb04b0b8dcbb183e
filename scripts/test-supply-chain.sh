#!/usr/bin/env bash
# Self-test of scripts/check-supply-chain.sh: the check must fail on a lock file holding a
# crate version with a published vulnerability, and name the advisory, or a green CI would
# prove nothing. The fixture (scripts/supply-chain-fixture/) locks tungstenite 0.20.0,
# affected by RUSTSEC-2023-0065.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src"
touch "$tmp/src/lib.rs"
cp scripts/supply-chain-fixture/Cargo.toml.fixture "$tmp/Cargo.toml"
cp scripts/supply-chain-fixture/Cargo.lock.fixture "$tmp/Cargo.lock"

passed=0
failed=0
status=0
scripts/check-supply-chain.sh --only "$tmp" >"$tmp/out.txt" 2>&1 || status=$?
# Failing is not enough: it must fail on the advisory, and on nothing else (not a missing
# tool, a broken database or a licence), so the other checks must have passed.
if [ "$status" -ne 0 ] &&
  grep -q 'error\[vulnerability\]' "$tmp/out.txt" &&
  grep -q 'RUSTSEC-2023-0065' "$tmp/out.txt" &&
  grep -q 'tungstenite 0.20.0' "$tmp/out.txt" &&
  grep -q 'advisories FAILED, licenses ok, sources ok' "$tmp/out.txt"; then
  echo "test-supply-chain: a lock file with tungstenite 0.20.0 fails the check on RUSTSEC-2023-0065"
  passed=$((passed + 1))
else
  echo "test-supply-chain: FAIL: expected the check to fail on RUSTSEC-2023-0065 alone (exit $status):" >&2
  cat "$tmp/out.txt" >&2
  failed=$((failed + 1))
fi
echo "supply-chain self-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
