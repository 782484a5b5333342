#!/usr/bin/env bash
# bootstrap.sh — install the Debian packages palmd needs to build and test, and
# nothing else. Idempotent: when every package is already installed it checks
# with dpkg-query only (no network, well under a second) and exits 0.
#
# Usage: scripts/bootstrap.sh [extra-package ...]
# Works as root or through sudo. Runs `apt-get update` only when something has
# to be installed.
set -euo pipefail

# Packages every build and test needs:
#   libopencv-dev  — OpenCV 4.6 headers and libraries for gocv (cgo)
#   pkg-config     — how gocv's cgo directives find OpenCV
#   mosquitto      — the real MQTT broker the uplink tests start
#   strace         — the no-persistence test traces file opens
#   systemd        — systemd-analyze verify/security for the unit file
#   qemu-system-x86, busybox-static — the V4L2 camera tests boot Debian's
#                    kernel (downloaded on first use, never installed) with vivid
#   nats-server    — the clustered broker (MQTT + JetStream) the fleet tests start
#   debootstrap    — the package test installs the .deb into a throw-away
#                    Debian 12 root (made once, cached in .cache/chroot)
#   chromium       — the technician page is tested in a real browser
#                    (headless, driven by chromedp)
PACKAGES=(libopencv-dev pkg-config mosquitto strace systemd qemu-system-x86 busybox-static nats-server debootstrap chromium "$@")

die() { printf 'bootstrap: %s\n' "$*" >&2; exit 1; }

command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 ||
  die "this machine has no apt/dpkg; install by hand: ${PACKAGES[*]} (Debian 12 package names)"

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: ${missing[*]}"
  SUDO=(sudo)
fi

printf 'bootstrap: installing %s\n' "${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q || die "apt-get update failed (is a Debian mirror reachable?)"
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" ||
  die "apt-get install failed for: ${missing[*]}"
printf 'bootstrap: installed %s\n' "${missing[*]}"
