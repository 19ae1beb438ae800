#!/usr/bin/env bash
# Builds the Debian package with cargo-deb (installed here when missing):
#   packaging/build-deb.sh         release build, then target/debian/wattline_<v>-1_<arch>.deb
#   packaging/build-deb.sh --dev   the debug build packaged as it is (for tests: quick)
# Extra arguments go to cargo-deb (e.g. --deb-version 0.1.0-2).
# Contents and maintainer scripts: Cargo.toml [package.metadata.deb] and
# packaging/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null; then
    cargo install cargo-deb --locked --version 3.8.0
fi
if [ "${1:-}" = --dev ]; then
    shift
    # As the tests build it (same packages and features: nothing rebuilt).
    cargo build --quiet --workspace --features fleet
    cargo deb --no-build --profile dev --strip --no-dbgsym --fast --quiet "$@"
else
    cargo deb --quiet "$@"
fi
