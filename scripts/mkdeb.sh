#!/usr/bin/env bash
# mkdeb.sh ARCH BINDIR OUTDIR [HOSTBINDIR] — build two packages with dpkg-deb
# from the binaries in BINDIR, and print their paths:
#   palmd_<version>_<arch>.deb         the terminal: palmd, palmctl, the unit,
#                                      udev rules, /etc/palmd/palmd.yaml
#   palm-matcher_<version>_<arch>.deb  the cloud side: the reference matcher
# A terminal needs only the first, a matcher host only the second. The version
# comes from git describe. Depends (versioned) come from dpkg-shlibdeps, which
# reads the binaries' NEEDED libraries and the installed libraries' symbols
# files; it can only analyse binaries of this machine's architecture, so for a
# cross build (arm64 on amd64) HOSTBINDIR names the same binaries built for
# this machine: the same code and flags need the same libraries, and Debian
# ships every library at the same version on every architecture.
set -euo pipefail
ARCH=${1:?arch}; BIN=${2:?bindir}; OUT=${3:?outdir}; HOSTBIN=${4:-$2}
cd "$(dirname "$0")/.."
desc=$(git describe --tags --always --dirty 2>/dev/null || echo unknown)
# Debian versions start with a digit: without a release tag, 0~git.<date>.<hash>.
if [[ $desc =~ ^v?[0-9]+\.[0-9] ]]; then VERSION=${desc#v}; else VERSION="0~git$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date +%Y%m%d).${desc//-/.}"; fi
VERSION=${VERSION//-/.}
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/debian" "$OUT"
printf 'Source: palmd\n\nPackage: palmd\nArchitecture: any\n\nPackage: palm-matcher\nArchitecture: any\n' > "$WORK/debian/control"
STRIP=strip
[ "$ARCH" = arm64 ] && STRIP=aarch64-linux-gnu-strip

# stage PKG BINARIES… — the package's tree in $WORK/debian/PKG (where
# dpkg-shlibdeps expects it), binaries stripped, doc folder with copyright
# and changelog.
stage() {
  local pkg=$1; shift
  local st="$WORK/debian/$pkg"
  install -d "$st/DEBIAN" "$st/usr/bin" "$st/usr/share/doc/$pkg"
  for b in "$@"; do
    install -m 0755 "$BIN/$b" "$st/usr/bin/$b"
    "$STRIP" --strip-unneeded "$st/usr/bin/$b"
  done
  cat > "$st/usr/share/doc/$pkg/copyright" <<C
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: palmd
Source: https://github.com/palmd/palmd

Files: *
Copyright: 2026 the palmd developers
License: proprietary
 All rights reserved.
C
  printf '%s (%s) unstable; urgency=medium\n\n  * Build from %s.\n\n -- palmd developers <dev@palmd.invalid>  %s\n' \
    "$pkg" "$VERSION" "$desc" "$(date -R)" | gzip -9n > "$st/usr/share/doc/$pkg/changelog.gz"
  install -m 0644 README.md "$st/usr/share/doc/$pkg/README.md"
}

# man PKG PAGES… — gzipped manual pages into the package.
man() {
  local pkg=$1; shift
  for m in "$@"; do
    local sec=${m##*.}
    install -d "$WORK/debian/$pkg/usr/share/man/man$sec"
    gzip -9n < "docs/man/$m" > "$WORK/debian/$pkg/usr/share/man/man$sec/$m.gz"
    chmod 0644 "$WORK/debian/$pkg/usr/share/man/man$sec/$m.gz"
  done
}

# depends PKG BINARIES… — versioned Depends of the binaries (shlibs:Depends).
depends() {
  local pkg=$1; shift
  local dir="$WORK/debian/$pkg" args=() out
  if [ "$HOSTBIN" != "$BIN" ]; then dir="$WORK/host/$pkg"; fi
  for b in "$@"; do
    [ -f "$dir/usr/bin/$b" ] || install -D -m 0755 "$HOSTBIN/$b" "$dir/usr/bin/$b"
    args+=(-e "$dir/usr/bin/$b")
  done
  out=$(cd "$WORK" && dpkg-shlibdeps -O "${args[@]}" 2> >(grep -v "should already be installed" >&2))
  sed -n 's/^shlibs:Depends=//p' <<<"$out"
}

# build PKG DEPENDS SYNOPSIS DESCRIPTION — DEBIAN/control, then the .deb.
build() {
  local pkg=$1 deps=$2 synopsis=$3 long=$4
  local st="$WORK/debian/$pkg"
  cat > "$st/DEBIAN/control" <<C
Package: $pkg
Version: $VERSION
Architecture: $ARCH
Maintainer: palmd developers <dev@palmd.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$st" | cut -f1)
Depends: $deps
Section: misc
Priority: optional
Homepage: https://github.com/palmd/palmd
Description: $synopsis
$long
C
  dpkg-deb --root-owner-group -Zxz --build "$st" "$OUT/${pkg}_${VERSION}_${ARCH}.deb" >/dev/null
  echo "$OUT/${pkg}_${VERSION}_${ARCH}.deb"
}

# palmd: the terminal.
stage palmd palmd palmctl
ST="$WORK/debian/palmd"
install -d "$ST/lib/systemd/system" "$ST/etc/palmd" "$ST/lib/udev/rules.d"
install -m 0644 systemd/palmd.service "$ST/lib/systemd/system/palmd.service"
install -m 0644 systemd/palmd.yaml "$ST/etc/palmd/palmd.yaml"
install -m 0644 systemd/60-palmd.rules "$ST/lib/udev/rules.d/60-palmd.rules"
man palmd palmd.8 palmctl.1 palmd.yaml.5
# Maintainer scripts use deb-systemd-helper and udevadm (init-system-helpers
# and udev, both on every Debian 12 system with systemd).
cp systemd/palmd.conffiles "$ST/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "systemd/palmd.$s" "$ST/DEBIAN/$s"; done
# procps: the unit's ExecReload= runs /bin/kill (a minimal Debian lacks it).
build palmd "adduser, procps, $(depends palmd palmd palmctl)" "contactless palm-vein terminal daemon" \
" palmd drives a near-infrared palm-vein scanner: it lights the palm, finds the
 hand, checks that it is a living one, extracts a vein and palm-line template,
 seals it to the cloud matcher with HPKE, signs it, and sends it over MQTT.
 Includes palmctl, the technician and developer tool."

# palm-matcher: the cloud side.
stage palm-matcher palm-matcher
man palm-matcher palm-matcher.8
build palm-matcher "$(depends palm-matcher palm-matcher)" "reference cloud matcher for palmd terminals" \
" palm-matcher takes the sealed captures of palmd terminals from an MQTT broker
 or a NATS cluster, enrols and identifies palms, and answers each terminal with
 a signed result. Run it on a cloud host, not on a terminal."
