#!/usr/bin/env bash
# Builds target/wattline_<version>_<arch>.deb from a release build.
#   cargo build --release && packaging/build-deb.sh
# Uses only dpkg-deb (Debian's own tool); the data directory is
# /var/lib/wattline, the config /etc/wattline/wattline.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/wattline
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
chmod 755 "$root"
trap 'rm -rf "$root"' EXIT

install -Dm755 "$bin" "$root/usr/bin/wattline"
strip "$root/usr/bin/wattline" 2>/dev/null || true
install -Dm644 packaging/wattline.service "$root/lib/systemd/system/wattline.service"
sed 's|^data_dir = .*|data_dir = "/var/lib/wattline"|' packaging/wattline.toml \
    | install -Dm640 /dev/stdin "$root/etc/wattline/wattline.toml"
install -Dm644 README.md "$root/usr/share/doc/wattline/README.md"
install -d "$root/DEBIAN"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" packaging/debian/control > "$root/DEBIAN/control"
install -m644 packaging/debian/conffiles "$root/DEBIAN/conffiles"
install -m755 packaging/debian/postinst packaging/debian/prerm "$root/DEBIAN/"

out="target/wattline_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$out"
echo "$out"
