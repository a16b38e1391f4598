#!/usr/bin/env bash
# Kubernetes' e2e suite (v1.32.13) against minicluster as shipped, on one node:
#   sudo scripts/conformance.sh [REPORT_DIR]
# It builds the suite once (../shared/conformance/build.sh, cached in $E2E), starts
# bin/minicluster in a fresh network namespace with a temporary data dir (as the
# integration tests do), runs e2e.test with only its standard flags through ginkgo, and
# leaves the JUnit report in REPORT_DIR (default /tmp/minicluster-conformance). FOCUS
# and SKIP are the suite's --ginkgo.focus/--ginkgo.skip; PROCS its parallelism.
set -euo pipefail
cd "$(dirname "$0")/.."
E2E=${E2E:-/var/cache/minicluster-e2e}
SRC=${CONFORMANCE_SRC:-../shared/conformance}
FOCUS=${FOCUS:-'\[sig-network\]'}
# One node, no disruption, no cloud: what cannot run here is skipped, as the issue says.
SKIP=${SKIP:-'\[Disruptive\]|\[Serial\]|\[Slow\]|\[Feature:|\[Flaky\]|\[Alpha\]|\[Beta\]|multiple nodes|two nodes|LoadBalancer|\[Provider:'}
PROCS=${PROCS:-4}
out=${1:-/tmp/minicluster-conformance}

if [ ! -x "$E2E/e2e.test" ] || [ ! -x "$E2E/ginkgo" ]; then
	echo "building the e2e suite into $E2E (slow the first time)"
	"$SRC/build.sh" "$E2E"
fi
[ -x bin/minicluster ] || make build

instance=conf$(($$ % 10000))
netns=$instance
data=$(mktemp -d /tmp/minicluster-conformance-data.XXXXXX)
chmod 700 "$data"
log=$(mktemp /tmp/minicluster-conformance-log.XXXXXX)
daemon=
cleanup() {
	[ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
	ip netns exec "$netns" bin/minicluster cleanup --instance "$instance" --data-dir "$data" >/dev/null 2>&1 || true
	ip netns del "$netns" 2>/dev/null || true
	rm -rf "$data"
}
trap cleanup EXIT
ip netns add "$netns"
ip netns exec "$netns" ip link set lo up
ip netns exec "$netns" bin/minicluster serve --data-dir "$data" --instance "$instance" --node-name conformance \
	--dns-upstream none >"$log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -f "$data/kubeconfig" ] && break; sleep 0.2; done
[ -f "$data/kubeconfig" ] || { cat "$log"; exit 1; }
ip netns exec "$netns" kubectl --kubeconfig "$data/kubeconfig" wait --for=condition=Ready node/conformance --timeout=60s

mkdir -p "$out"
echo "running e2e.test: focus '$FOCUS', skip '$SKIP', $PROCS processes; daemon log $log"
start=$(date +%s)
set +e
ip netns exec "$netns" "$E2E/ginkgo" --no-color --procs="$PROCS" --timeout=2h --junit-report=junit.xml --output-dir="$out" \
	"$E2E/e2e.test" -- --provider=skeleton --kubeconfig="$data/kubeconfig" --kubectl-path="$(command -v kubectl)" \
	--ginkgo.focus="$FOCUS" --ginkgo.skip="$SKIP" --report-dir="$out" >"$out/run.log" 2>&1
rc=$?
set -e
echo "e2e.test ended ($rc) after $(($(date +%s) - start)) s; report in $out"
grep -E '^Ran [0-9]+ of|^(SUCCESS|FAIL)!' "$out/run.log" || tail -20 "$out/run.log"
