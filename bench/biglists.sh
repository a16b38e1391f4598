#!/bin/bash
# Peak daemon memory while 20 clients list 30 MB of configmaps at once (issue 19 (12)).
# Usage: sudo bench/biglists.sh [BINARY]   (default bin/minicluster; run from the checkout)
# Prints the daemon's peak RSS (VmHWM) before and after the lists, and how long they took.
set -euo pipefail
bin=$(realpath "${1:-bin/minicluster}")
ns=mcbig$$ inst=big$RANDOM dir=$(mktemp -d /tmp/mcbig.XXXXXX)
chmod 700 "$dir"
cleanup() {
	[ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	ip netns exec "$ns" "$bin" cleanup --instance "$inst" --data-dir "$dir" >/dev/null 2>&1 || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$dir" "$dir.log"
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" "$bin" serve --data-dir "$dir" --instance "$inst" --dns-upstream none --log-level warn >"$dir.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf --unix-socket "$dir/api.sock" http://x/readyz >/dev/null 2>&1 && break; sleep 0.1; done
value=$(head -c 75000 /dev/zero | tr '\0' x)   # 100 KB of JSON per object
for i in $(seq 300); do
	printf '{"metadata":{"name":"big-%d"},"data":{"v":"%s"}}' "$i" "$value" |
		curl -sf --unix-socket "$dir/api.sock" -H 'Content-Type: application/json' --data-binary @- \
			http://x/api/v1/namespaces/default/configmaps >/dev/null
done
daemon=$(pgrep -f "serve --data-dir $dir" | head -1)
before=$(awk '/VmHWM/ {print $2}' /proc/$daemon/status)
start=$(date +%s.%N)
for _ in $(seq 20); do
	curl -sf --unix-socket "$dir/api.sock" -o /dev/null -w '%{size_download}\n' --retry 20 --retry-delay 1 \
		http://x/api/v1/namespaces/default/configmaps &
done | sort | uniq -c
end=$(date +%s.%N)
after=$(awk '/VmHWM/ {print $2}' /proc/$daemon/status)
echo "peak RSS before the lists: $((before / 1024)) MB; after 20 concurrent lists: $((after / 1024)) MB; lists took $(echo "$end - $start" | bc) s"
