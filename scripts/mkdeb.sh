#!/usr/bin/env bash
# mkdeb.sh ARCH BINDIR OUTDIR — build palmd_<version>_<arch>.deb with dpkg-deb
# from the binaries in BINDIR. The version comes from git describe. Depends are
# the packages that ship the shared libraries palmd links (OpenCV runtime
# libraries, not the -dev packages), found through dpkg on this machine.
set -euo pipefail
ARCH=${1:?arch}; BIN=${2:?bindir}; OUT=${3:?outdir}
cd "$(dirname "$0")/.."
desc=$(git describe --tags --always --dirty 2>/dev/null || echo unknown)
# Debian versions start with a digit: without a release tag, 0~git.<date>.<hash>.
if [[ $desc =~ ^v?[0-9]+\.[0-9] ]]; then VERSION=${desc#v}; else VERSION="0~git$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date +%Y%m%d).${desc//-/.}"; fi
VERSION=${VERSION//-/.}
ST=$(mktemp -d); trap 'rm -rf "$ST"' EXIT
install -d "$ST/DEBIAN" "$ST/usr/bin" "$ST/lib/systemd/system" "$ST/etc/palmd" "$ST/lib/udev/rules.d" "$ST/usr/share/doc/palmd"
STRIP=strip
[ "$ARCH" = arm64 ] && STRIP=aarch64-linux-gnu-strip
for b in palmd palmctl palm-matcher; do
  install -m 0755 "$BIN/$b" "$ST/usr/bin/$b"
  "$STRIP" --strip-unneeded "$ST/usr/bin/$b"
done
install -m 0644 systemd/palmd.service "$ST/lib/systemd/system/palmd.service"
install -m 0644 systemd/palmd.yaml "$ST/etc/palmd/palmd.yaml"
install -m 0644 systemd/60-palmd.rules "$ST/lib/udev/rules.d/60-palmd.rules"
install -m 0644 README.md "$ST/usr/share/doc/palmd/README.md"
for m in docs/man/*.[18]; do
  sec=${m##*.}; install -d "$ST/usr/share/man/man$sec"
  gzip -9n < "$m" > "$ST/usr/share/man/man$sec/$(basename "$m").gz"; chmod 0644 "$ST/usr/share/man/man$sec/$(basename "$m").gz"
done
cat > "$ST/usr/share/doc/palmd/copyright" <<C
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: palmd
Source: https://github.com/palmd/palmd

Files: *
Copyright: 2026 the palmd developers
License: proprietary
 All rights reserved.
C
printf 'palmd (%s) unstable; urgency=medium\n\n  * Build from %s.\n\n -- palmd developers <dev@palmd.invalid>  %s\n' \
  "$VERSION" "$desc" "$(date -R)" | gzip -9n > "$ST/usr/share/doc/palmd/changelog.gz"
# Runtime library packages: map each NEEDED soname to its package on this
# machine (the same package names exist for every architecture).
deps=$(objdump -p "$BIN/palmd" "$BIN/palmctl" "$BIN/palm-matcher" 2>/dev/null | awk '/NEEDED/ {print $2}' | sort -u | while read -r so; do
  p=$(dpkg -S "*/$so" 2>/dev/null | grep -v -- '-cross' | grep "$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)/" | head -1 | cut -d: -f1)
  [ -n "$p" ] && echo "$p"; done | sort -u | paste -sd, | sed 's/,/, /g')
[ -n "$deps" ] || deps="libc6"
# Maintainer scripts use deb-systemd-helper (init-system-helpers, Essential:
# yes in Debian 12, so not a Depends).
cp systemd/palmd.conffiles "$ST/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "systemd/palmd.$s" "$ST/DEBIAN/$s"; done
size=$(du -sk "$ST" | cut -f1)
cat > "$ST/DEBIAN/control" <<C
Package: palmd
Version: $VERSION
Architecture: $ARCH
Maintainer: palmd developers <dev@palmd.invalid>
Installed-Size: $size
Depends: adduser, $deps
Section: misc
Priority: optional
Homepage: https://github.com/palmd/palmd
Description: contactless palm-vein terminal daemon
 palmd drives a near-infrared palm-vein scanner: it lights the palm, finds the
 hand, extracts a vein and palm-line template, seals it to the cloud matcher
 with HPKE, signs it, and sends it over MQTT. Includes palmctl (technician and
 developer tool) and palm-matcher (reference matcher).
C
mkdir -p "$OUT"
dpkg-deb --root-owner-group -Zxz --build "$ST" "$OUT/palmd_${VERSION}_${ARCH}.deb" >/dev/null
echo "$OUT/palmd_${VERSION}_${ARCH}.deb"
