#!/usr/bin/env bash
# Supply-chain audit: cargo-deny (advisories, bans, sources, licences) offline, against the
# RustSec advisory database snapshot beside the repository (../shared/supply-chain/, or
# $FLOWFAIL_SUPPLY_CHAIN). Needs cargo-deny 0.20: `cargo install cargo-deny --locked` (slow:
# 10-30 minutes on two cores; install once per machine).
set -euo pipefail
cd "$(dirname "$0")/.."

supply=${FLOWFAIL_SUPPLY_CHAIN:-../shared/supply-chain}
if [ ! -x "$supply/unpack.sh" ]; then
  echo "no advisory snapshot at $supply (set FLOWFAIL_SUPPLY_CHAIN)" >&2
  exit 2
fi
if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "cargo-deny is not installed: cargo install cargo-deny --locked" >&2
  exit 2
fi

mkdir -p target/advisory-db
"$supply/unpack.sh" target/advisory-db >/dev/null
echo "advisory database snapshot: $(cat "$supply/SNAPSHOT")"
cargo fetch --quiet
cargo deny --offline --all-features check advisories bans sources licenses
