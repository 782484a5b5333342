#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (default 1m),
# one after the other; FUZZ (a regular expression) picks targets by name.
# Minimisation of new inputs is bounded, as fuzzers whose inputs are
# sealed and signed are slow to minimise.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${FUZZTIME:-1m}
pick=${FUZZ:-.}
fail=0
while IFS=: read -r file name; do
	[[ $name =~ $pick ]] || continue
	pkg=./$(dirname "$file")
	echo "== $pkg $name ($time)"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$time" -fuzzminimizetime 200x "$pkg" 2>&1 | tail -3; then
		fail=1
	fi
done < <(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' --exclude-dir=.cache . | sed 's|^\./||; s|:func |:|')
exit $fail
