#!/usr/bin/env bash
# Builds palmd, palmctl and palm-matcher into $1 as they are released:
# position-independent, full RELRO, immediate binding; and linked against
# only the OpenCV modules each one calls. gocv's default links all of
# Debian's OpenCV modules, which pull in Qt, GDAL, FFmpeg, Poppler…: 264
# shared libraries and 64 MB resident before the first frame. With gocv's
# customenv tag the flags are ours: its C++ wrappers are compiled with
# -ffunction-sections, so --gc-sections drops the ones nothing calls, and
# the binaries need only core and imgproc (and imgcodecs for palmctl's PNG
# files). Cross builds pass their sysroot through the environment
# (CC, PKG_CONFIG_*, CGO_LDFLAGS), as the Makefile's ARM64_ENV does.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: build.sh OUTDIR}
version=${VERSION:-dev}
go=${GO:-go}
cvflags="-O2 -g -ffunction-sections -fdata-sections"
CGO_CPPFLAGS="$(pkg-config --cflags opencv4)"
export CGO_CPPFLAGS CGO_CFLAGS="$cvflags" CGO_CXXFLAGS="$cvflags" CGO_LDFLAGS="${CGO_LDFLAGS:-}"
ldflags() {
	printf '%s' "-X github.com/palmd/palmd/version.Version=$version -linkmode=external -extldflags \"-Wl,-z,relro,-z,now -Wl,--gc-sections -Wl,--as-needed $1\""
}
build() { # binary, package, OpenCV libraries
	"$go" build -tags customenv -buildmode=pie -ldflags "$(ldflags "$3")" -o "$out/$1" "$2"
}
mkdir -p "$out"
palmd_libs="-lopencv_core -lopencv_imgproc"
if [ "${2:-}" = memory ]; then # make memory: the report, linked as palmd is
	build palm-memory ./internal/memreport/palm-memory "$palmd_libs"
	exit
fi
build palmd ./cmd/palmd "$palmd_libs"
build palmctl ./cmd/palmctl "$palmd_libs -lopencv_imgcodecs"
build palm-matcher ./cmd/palm-matcher ""
