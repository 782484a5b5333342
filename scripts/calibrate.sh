#!/usr/bin/env bash
# make calibrate: is the simulator as hard as reality? Renders the default
# synthetic set with today's simulator, scores it with the recognition
# pipeline as released in recognition-v1 (the pipeline measured on real
# palms), and prints the figures beside the real ones (palmctl calibrate);
# exits non-zero when one falls outside its range.
#
# usage: scripts/calibrate.sh PALMCTL IDENTITIES
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
palmctl=$1
ids=${2:-100}
ref=${CALIBRATE_REF:-recognition-v1}
# The tag may not travel with a clone; the commit it names does.
commit=$(git -C "$root" rev-parse -q --verify "$ref^{commit}" 2>/dev/null ||
	git -C "$root" rev-parse -q --verify "41747b4^{commit}" 2>/dev/null) || {
	echo "calibrate: neither $ref nor 41747b4 is in this clone (a shallow clone?): git fetch --unshallow" >&2
	exit 2
}
cache=$root/.cache/calibrate
scorer=$cache/scorer-$commit
mkdir -p "$cache"
if [ ! -x "$scorer" ] || [ "$root/internal/scorer/main.go" -nt "$scorer" ]; then
	src=$cache/src-$commit
	rm -rf "$src"
	mkdir -p "$src"
	git -C "$root" archive "$commit" | tar -x -C "$src"
	mkdir -p "$src/internal/scorer"
	cp "$root/internal/scorer/main.go" "$src/internal/scorer/"
	echo "building the recognition pipeline of ${commit:0:12} ($ref)"
	(cd "$src" && go build -o "$scorer" ./internal/scorer)
fi
set=$cache/set-$ids
rm -rf "$set"
"$palmctl" synth --identities "$ids" --samples 6 --seed 1 --out "$set"
"$scorer" -dir "$set" >"$cache/scores-$ids.csv"
"$palmctl" calibrate --scores "$cache/scores-$ids.csv" --images $((ids * 6)) --set "$set"
