#!/usr/bin/env bash
# Runs the benchmarks the client-boundary change must not regress, for two checkouts
# side by side in one run (alternating, ROUNDS times), as root:
#   scripts/bench-compare.sh OLD_CHECKOUT NEW_CHECKOUT [ROUNDS]
# Output: one log per tree, round and benchmark under $OUT (default /tmp/bench-compare).
set -euo pipefail
old=$(cd "$1" && pwd) new=$(cd "$2" && pwd) rounds=${3:-1}
out=${OUT:-/tmp/bench-compare}
mkdir -p "$out"
export PATH="$PATH:/usr/local/go/bin"
benches=(
	"api|go test -run ^\$ -bench ^BenchmarkCreate -benchtime 3s -count 1 ./apiserver/"
	"pods|go test -tags integration -run ^\$ -bench PodStartup -benchtime 20x -count 1 ./integration/"
	"proxy|go test -tags integration -run ^\$ -bench Proxy/nftables -benchtime 1x -count 1 -timeout 60m ./integration/"
	"dns|go test -tags integration -run ^\$ -bench DNS -benchtime 1x -count 1 -timeout 20m ./integration/"
)
for r in $(seq "$rounds"); do
	for b in "${benches[@]}"; do
		name=${b%%|*} cmd=${b#*|}
		for tree in old new; do
			dir=$old; [ "$tree" = new ] && dir=$new
			echo "== round $r $name $tree: $cmd"
			(cd "$dir" && eval "$cmd") > "$out/$name-$tree-$r.log" 2>&1 || echo "   failed: see $out/$name-$tree-$r.log"
			grep -E '^Benchmark' "$out/$name-$tree-$r.log" || true
		done
	done
done
