#!/usr/bin/env bash
# sysroot-arm64.sh DIR — build an arm64 sysroot with Debian 12's OpenCV 4.6 for
# cross-compiling palmd, without touching the host's packages: an apt run with
# its own state and cache folders and APT::Architecture=arm64 downloads
# libopencv-dev and its dependencies (never installed; installing
# libopencv-dev:arm64 through multiarch would remove the amd64 one), dpkg-deb -x
# unpacks them into DIR/root, and absolute symlinks are re-pointed inside it.
# Idempotent: a finished sysroot (DIR/root/.complete) is reused as is.
set -euo pipefail
DIR=${1:?usage: sysroot-arm64.sh DIR}
ROOT=$DIR/root
if [ -f "$ROOT/.complete" ]; then
  exit 0
fi
A=$DIR/apt
mkdir -p "$A/etc/apt/sources.list.d" "$A/etc/apt/preferences.d" "$A/etc/apt/apt.conf.d" \
  "$A/var/lib/apt/lists/partial" "$A/var/cache/apt/archives/partial" "$A/var/lib/dpkg"
: > "$A/var/lib/dpkg/status"
cat > "$A/etc/apt/sources.list" <<S
deb [arch=arm64] http://deb.debian.org/debian bookworm main
deb [arch=arm64] http://deb.debian.org/debian bookworm-updates main
deb [arch=arm64] http://deb.debian.org/debian-security bookworm-security main
S
OPTS=(-o "Dir=$A" -o Dir::Etc::TrustedParts=/etc/apt/trusted.gpg.d -o APT::Architecture=arm64
  -o APT::Architectures=arm64 -o Debug::NoLocking=1 -o "Dir::State::status=$A/var/lib/dpkg/status")
echo "sysroot-arm64: downloading libopencv-dev:arm64 and its dependencies into $A"
apt-get "${OPTS[@]}" update -q
apt-get "${OPTS[@]}" install -y -q --download-only --no-install-recommends libopencv-dev libc6-dev libstdc++-12-dev
rm -rf "$ROOT"
mkdir -p "$ROOT"
echo "sysroot-arm64: unpacking $(ls "$A"/var/cache/apt/archives/*.deb | wc -l) packages into $ROOT"
for d in "$A"/var/cache/apt/archives/*.deb; do
  dpkg-deb -x "$d" "$ROOT"
done
# Absolute symlinks (libz.so -> /lib/aarch64-linux-gnu/libz.so.1) would point
# at the host: re-point them inside the sysroot.
find "$ROOT" -type l -lname '/*' | while read -r l; do
  ln -sfn "$ROOT$(readlink "$l")" "$l"
done
rm -f "$A"/var/cache/apt/archives/*.deb
touch "$ROOT/.complete"
echo "sysroot-arm64: ready"
