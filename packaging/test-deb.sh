#!/usr/bin/env bash
# Tests the Debian package: builds it (the debug build, packaged as it is),
# checks its contents and control files, runs shellcheck on the maintainer
# scripts and systemd-analyze on the unit; then, as root, installs it on
# this machine, runs the installed daemon as its system user, upgrades it
# (data and an edited config kept), removes it (data kept) and purges it
# (data gone). `.ci/run` runs it on CI's throwaway machine; it changes the
# system it runs on, so run it by hand only where that is fine.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-deb: $*" >&2; exit 1; }
missing=()
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if ((${#missing[@]})); then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi

rm -rf target/debian
packaging/build-deb.sh --dev >/dev/null
deb=$(ls target/debian/wattline_*_*.deb)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Contents.
dpkg-deb -c "$deb" | awk '{print $1, $6}' > "$work/contents"
for want in "-rwxr-xr-x ./usr/bin/wattline" \
            "-rw-r----- ./etc/wattline/wattline.toml" \
            "-rw-r--r-- ./usr/lib/systemd/system/wattline.service" \
            "-rw-r--r-- ./usr/share/doc/wattline/README.md" \
            "-rw-r--r-- ./usr/share/doc/wattline/copyright" \
            "-rw-r--r-- ./usr/share/doc/wattline/dejavu-fonts.LICENSE"; do
    grep -qxF -- "$want" "$work/contents" || fail "missing from the package: $want"
done
dpkg-deb -e "$deb" "$work/control"
grep -qxF /etc/wattline/wattline.toml "$work/control/conffiles" || fail "the config is not a conffile"
grep -q '^Depends:.*adduser' "$work/control/control" || fail "no dependency on adduser"
for script in postinst prerm postrm; do
    [ -x "$work/control/$script" ] || fail "no $script"
    shellcheck -s sh "$work/control/$script"
done
dpkg-deb -x "$deb" "$work/root"
sed "s|/usr/bin/wattline|$work/root/usr/bin/wattline|" \
    "$work/root/usr/lib/systemd/system/wattline.service" > "$work/wattline.service"
systemd-analyze verify "$work/wattline.service"
"$work/root/usr/bin/wattline" config check "$work/root/etc/wattline/wattline.toml"
echo "test-deb: contents, control files, shellcheck and systemd-analyze verify: ok"

if [ "$(id -u)" != 0 ]; then
    echo "test-deb: not root, so not installed" >&2
    exit 0
fi
dpkg -s wattline >/dev/null 2>&1 && fail "wattline is already installed here"

# Install.
dpkg -i "$deb" >/dev/null
getent passwd wattline >/dev/null || fail "no system user"
[ "$(stat -c '%U %a' /var/lib/wattline)" = "wattline 700" ] || fail "data directory owner/mode: $(stat -c '%U %a' /var/lib/wattline)"
[ "$(stat -c '%U:%G %a' /etc/wattline/wattline.toml)" = "root:wattline 640" ] || fail "config owner/mode"
wattline --version >/dev/null

# The installed daemon, as the service would run it (no systemd here).
port=$((20000 + RANDOM % 20000))
setpriv --reuid=wattline --regid=wattline --init-groups \
    wattline serve --config /etc/wattline/wattline.toml \
    --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || fail "the installed daemon did not get ready: $(cat "$work/serve.log")"
kill -TERM "$pid"
wait "$pid" || fail "the daemon did not stop cleanly"
[ "$(stat -c '%U %a' /var/lib/wattline/admin.key)" = "wattline 600" ] || fail "admin key owner/mode"
setpriv --reuid=wattline --regid=wattline --init-groups wattline check --data-dir /var/lib/wattline --listen "127.0.0.1:$port" >/dev/null \
    || fail "wattline check on the installed data"

# Upgrade: data and an edited config are kept.
echo "# edited by the operator" >> /etc/wattline/wattline.toml
packaging/build-deb.sh --dev --deb-version 0.1.0-2 >/dev/null
deb2=$(ls target/debian/wattline_*-2_*.deb)
dpkg -i --force-confold "$deb2" >/dev/null
[ "$(dpkg-query -W -f '${Version}' wattline)" = 0.1.0-2 ] || fail "not upgraded"
grep -q "edited by the operator" /etc/wattline/wattline.toml || fail "upgrade lost the edited config"
[ -f /var/lib/wattline/admin.key ] || fail "upgrade lost the data"

# Remove keeps data and config; purge deletes them.
dpkg -r wattline >/dev/null
[ ! -e /usr/bin/wattline ] || fail "remove left the binary"
[ -f /var/lib/wattline/admin.key ] || fail "remove deleted the data"
[ -f /etc/wattline/wattline.toml ] || fail "remove deleted the config"
dpkg -P wattline >/dev/null
[ ! -e /var/lib/wattline ] || fail "purge left the data"
[ ! -e /etc/wattline ] || fail "purge left the config"
echo "test-deb: install, run, upgrade, remove and purge: ok"
