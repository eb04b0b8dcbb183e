#!/usr/bin/env bash
# Supply-chain check (issue 31), with cargo-deny and the policy in deny.toml:
# - every Cargo.lock of the repository: RustSec advisories (any vulnerability fails; an
#   unsound or unmaintained crate fails unless deny.toml allows it with its reason),
#   licences compatible with MIT OR Apache-2.0, crates from crates.io only;
# - the `livebridge` binary (package livebridge-smol): no crate in two versions beyond the
#   list in deny.toml [bans];
# - then its own self-test (scripts/test-supply-chain.sh): a lock file with a known
#   vulnerability must fail this check.
#
# Usage: scripts/check-supply-chain.sh            everything above
#        scripts/check-supply-chain.sh --only DIR  advisories, licences and sources of the
#                                                  project in DIR (Cargo.toml + Cargo.lock)
#
# The advisory database is the offline snapshot in ../shared/rustsec-advisories (or
# $ADVISORY_SNAPSHOT), so no network is needed for it; without a snapshot the database is
# fetched, and the check fails if that is not possible.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

scripts/install-supply-chain-tools.sh

WORK=target/supply-chain
SNAPSHOT=${ADVISORY_SNAPSHOT:-$ROOT/../shared/rustsec-advisories}
# cargo-deny 0.20 looks for the database of its default URL under this name inside db-path
# (deny.toml), and reads the snapshot's age from the git HEAD there.
DB_DIR=$WORK/advisory-db/advisory-db-3157b0e258782691
# Allowed licences and exceptions need not all occur in every graph.
LINTS=(-A license-not-encountered -A license-exception-not-encountered)

prepare_db() {
  mkdir -p "$WORK"
  if [ -d "$SNAPSHOT/crates" ]; then
    # The snapshot is advisory-db's crates/ folder alone, read-only and not a git
    # repository; cargo-deny wants a checkout, so give it one that links to the snapshot,
    # its commit dated as the snapshot (from its README) so staleness is reported truly.
    local date
    date=$(grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}' "$SNAPSHOT/README.md" 2>/dev/null | head -n1 || true)
    date=${date:-$(date -u +%F)}
    rm -rf "$WORK/advisory-db"
    mkdir -p "$DB_DIR"
    ln -s "$(cd "$SNAPSHOT/crates" && pwd)" "$DB_DIR/crates"
    git -C "$DB_DIR" init -q
    GIT_AUTHOR_DATE="${date}T00:00:00Z" GIT_COMMITTER_DATE="${date}T00:00:00Z" \
      git -C "$DB_DIR" -c user.name=snapshot -c user.email=snapshot@localhost \
      -c commit.gpgsign=false commit -q --allow-empty -m "RustSec advisory snapshot $date"
    echo "supply-chain: advisory database: snapshot $SNAPSHOT of $date"
  else
    echo "supply-chain: no advisory snapshot at $SNAPSHOT; fetching the database"
    # A link to a snapshot left by an earlier run is no database to fetch into.
    if [ -L "$DB_DIR/crates" ]; then rm -rf "$WORK/advisory-db"; fi
    if ! cargo deny --config deny.toml fetch db; then
      echo "supply-chain: FAILED: no advisory snapshot and the database could not be fetched" >&2
      exit 1
    fi
  fi
}

# Advisories, licences and sources of the project in $1. The crate graph comes from cargo
# (which may download crates from crates.io); cargo-deny itself then runs offline.
check_project() {
  local dir=$1
  shift
  cargo metadata --locked --format-version 1 --manifest-path "$dir/Cargo.toml" \
    >"$WORK/metadata.json"
  echo "supply-chain: $dir/Cargo.lock"
  cargo deny --manifest-path "$dir/Cargo.toml" --metadata-path "$WORK/metadata.json" \
    --workspace --offline --config deny.toml \
    check "${LINTS[@]}" "$@" advisories licenses sources
}

prepare_db

if [ "${1:-}" = "--only" ]; then
  check_project "$2" -A advisory-not-detected
  exit 0
fi

start=$(date +%s)
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  locks=$(git ls-files | grep -E '(^|/)Cargo\.lock$')
else
  locks=$(find . -name Cargo.lock -not -path '*/target/*' | sed 's|^\./||')
fi
for lock in $locks; do
  dir=$(dirname "$lock")
  if [ ! -f "$dir/Cargo.toml" ]; then
    echo "supply-chain: FAILED: $lock has no Cargo.toml beside it" >&2
    exit 1
  fi
  if [ "$dir" = . ]; then
    # The workspace ships: every allowed advisory must still be there, so the allow-list
    # names exactly the warnings that remain.
    check_project "$dir" -D advisory-not-detected
  else
    # Other projects (fuzz/, bench/, loadgen/peers/) need not contain them.
    check_project "$dir" -A advisory-not-detected
  fi
done

# The binary as built for the CI machine's target: normal and build dependencies only.
echo "supply-chain: duplicate crates in the livebridge binary (package livebridge-smol)"
cargo metadata --locked --format-version 1 --manifest-path runtime-smol/Cargo.toml \
  >"$WORK/metadata.json"
cargo deny --manifest-path runtime-smol/Cargo.toml \
  --metadata-path "$WORK/metadata.json" \
  --exclude-dev --target x86_64-unknown-linux-gnu --offline --config deny.toml \
  check -D unmatched-skip bans

allowed=$(grep -oE 'RUSTSEC-[0-9]{4}-[0-9]{4}' deny.toml | sort -u | tr '\n' ' ')
echo "supply-chain: passed in $(($(date +%s) - start)) s; allowed by deny.toml, still present: $allowed"
scripts/test-supply-chain.sh
