#!/usr/bin/env bash
# Kubernetes' e2e suite (v1.32.13) against minicluster as shipped, on one node:
#   sudo scripts/conformance.sh [REPORT_DIR]
# It builds the suite once (../shared/conformance/build.sh, cached in $E2E), starts
# bin/minicluster in a fresh network namespace with a temporary data dir (as the
# integration tests do), runs e2e.test with only its standard flags through ginkgo, and
# leaves the JUnit report in REPORT_DIR (default /tmp/minicluster-conformance). FOCUS
# and SKIP are the suite's --ginkgo.focus/--ginkgo.skip; PROCS its parallelism.
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin"
cd "$(dirname "$0")/.."
E2E=${E2E:-/var/cache/minicluster-e2e}
SRC=${CONFORMANCE_SRC:-../shared/conformance}
# What the issue asks for: every [sig-network] spec, and the [Conformance] specs of
# sig-apps' workloads, sig-node and sig-storage's pod volumes.
FOCUS=${FOCUS:-'\[sig-network\]|\[sig-apps\] (Deployment|ReplicaSet|StatefulSet|Job|Daemon set|CronJob).*\[Conformance\]|\[sig-node\].*\[Conformance\]|\[sig-storage\] (EmptyDir|ConfigMap|Secrets|Projected|Downward API|Subpath).*\[Conformance\]'}
# One node, no disruption, no cloud: what cannot run here is skipped, as the issue says.
SKIP=${SKIP:-'\[Disruptive\]|\[Feature:|\[Flaky\]|\[Alpha\]|\[Beta\]|multiple nodes|two nodes|LoadBalancer|\[Provider:'}
PROCS=${PROCS:-6}
out=${1:-/tmp/minicluster-conformance}

if [ ! -x "$E2E/e2e.test" ] || [ ! -x "$E2E/ginkgo" ] || [ ! -x "$E2E/agnhost" ]; then
	echo "building the e2e suite into $E2E (slow the first time)"
	# agnhost goes into an image of its own: static.
	CGO_ENABLED=0 "$SRC/build.sh" "$E2E"
fi
[ -x bin/minicluster ] || make build
# The Debian packages the suite's images are built from, besides make deps' own, and
# CoreDNS (make tools), which agnhost's image carries as /coredns.
make deps tools
for p in wget bash libc-bin; do
	dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q "ok installed" || { apt-get update -qq && apt-get install -y -qq $p >/dev/null; }
done
go build -o bin/e2eimages ./scripts/e2eimages

instance=conf$(($$ % 10000))
netns=$instance
data=$(mktemp -d /tmp/minicluster-conformance-data.XXXXXX)
chmod 700 "$data"
log=$(mktemp /tmp/minicluster-conformance-log.XXXXXX)
daemon= images=
cleanup() {
	[ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
	[ -n "$images" ] && kill "$images" 2>/dev/null && wait "$images" 2>/dev/null || true
	ip netns exec "$netns" bin/minicluster cleanup --instance "$instance" --data-dir "$data" >/dev/null 2>&1 || true
	ip netns del "$netns" 2>/dev/null || true
	rm -rf "$data"
}
trap cleanup EXIT
ip netns add "$netns"
ip netns exec "$netns" ip link set lo up
# The suite's images, built from this host's sources and packages, in a registry of their
# own inside the namespace; KUBE_TEST_REPO_LIST points the suite at it.
registry=127.0.0.1:5000
export KUBE_TEST_REPO_LIST=$log.repo-list.yaml
ip netns exec "$netns" bin/e2eimages -listen "$registry" -agnhost "$E2E/agnhost" -repo-list "$KUBE_TEST_REPO_LIST" >"$log.images" 2>&1 &
images=$!
for _ in $(seq 300); do [ -f "$KUBE_TEST_REPO_LIST" ] && break; kill -0 $images 2>/dev/null || break; sleep 0.2; done
[ -f "$KUBE_TEST_REPO_LIST" ] || { cat "$log.images"; exit 1; }
ip netns exec "$netns" bin/minicluster serve --data-dir "$data" --instance "$instance" --node-name conformance \
	--dns-upstream none --insecure-registries "$registry" >"$log" 2>&1 &
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
# The summary: docs/conformance.md unless REPORT says otherwise.
go run ./scripts/conformancereport -junit "$out/junit.xml" -reasons scripts/conformance-reasons.txt -out "${REPORT:-docs/conformance.md}" \
	-header "Run $(date -u +%Y-%m-%d) on $(nproc) cores: \`make conformance\` (PROCS=$PROCS), $(($(date +%s) - start)) s."
