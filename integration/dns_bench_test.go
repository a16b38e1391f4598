//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"k8s.io/apimachinery/pkg/util/wait"
)

// dnsperf runs dnsperf in the node's netns against server with the query file and
// extra flags, returning its output.
func (n *node) dnsperf(b testing.TB, server, file string, extra ...string) string {
	args := append([]string{"netns", "exec", n.netns, "dnsperf", "-s", server, "-d", file}, extra...)
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		b.Fatalf("dnsperf: %v\n%s", err, out)
	}
	return string(out)
}

var qpsLine = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
var lostLine = regexp.MustCompile(`Queries lost:\s+(\d+)`)

// BenchmarkDNS: dnsperf against the cluster DNS address with 10k services and a query
// mix of hits (50 %), search-path NXDOMAINs (40 %) and SRV (10 %): the highest rate it
// sustains, then p50/p99 latency at a fixed rate, through the service address (the
// proxy's DNAT) and straight to the server's own address, side by side with CoreDNS
// 1.15 (its kubernetes plugin on the daemon's API, built with go install, behind a
// ClusterIP of its own so its queries take the same path) and with a baseline server
// that answers everything with one fixed record; and the daemon's memory for 10k
// services. The proxy runs in nftables mode: iptables mode's periodic rule check at 10k
// services costs a CPU-second every 30 s, which shows up as noise here. dnsperf and the
// daemon share the machine's two cores. Run it with -benchtime 1x.
func BenchmarkDNS(b *testing.B) {
	for range b.N {
		benchDNS(b)
	}
}

func benchDNS(b *testing.B) {
	n := newNode(b)
	n.start("--log-level", "warn", "--proxy-mode", "nftables")
	rssBefore := rssKiB(b, n)
	const services = 10000
	n.createServices(b, 0, services, []string{"10.244.0.50"})
	// Measured once the DNS index has the last service, after a collection in the
	// daemon (its pprof heap profile with gc=1 runs one).
	n.waitDNS(b, fmt.Sprintf("s-%d.default.svc.cluster.local", services-1))
	if resp, err := n.socketClient().Get("http://x/debug/pprof/heap?gc=1"); err == nil {
		resp.Body.Close()
	}
	b.ReportMetric(float64(rssKiB(b, n)-rssBefore)/1024, "MiB-rss-for-10k-services")

	var q strings.Builder
	for i := range 10000 {
		s := fmt.Sprintf("s-%d", (i*7919)%services)
		switch i % 10 {
		case 0, 1, 2, 3, 4:
			fmt.Fprintf(&q, "%s.default.svc.cluster.local A\n", s)
		case 5, 6, 7, 8: // what a pod asking for example.com tries first (ndots:5)
			suffix := []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local", "default.svc.cluster.local"}[i%4]
			fmt.Fprintf(&q, "www%d.example.com.%s A\n", i, suffix)
		default:
			fmt.Fprintf(&q, "_http._tcp.%s.default.svc.cluster.local SRV\n", s)
		}
	}
	file := filepath.Join(b.TempDir(), "queries")
	os.WriteFile(file, []byte(q.String()), 0o644)
	// The baseline: the least a Go DNS server can do on this machine — miekg/dns
	// answering every query with one fixed record, in the test process.
	var pc net.PacketConn
	n.inNetns(b, func() { pc, _ = net.ListenPacket("udp", "127.0.0.88:53") })
	if pc == nil {
		b.Fatal("baseline server: no socket")
	}
	baseline := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		if len(r.Question) > 0 {
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA,
				Class: mdns.ClassINET, Ttl: 5}, A: net.IPv4(10, 96, 0, 1)})
		}
		w.WriteMsg(m)
	})}
	go baseline.ActivateAndServe()
	defer baseline.Shutdown()

	// CoreDNS on the bridge address, port 1053, behind a service of its own
	// (selector-less, its EndpointSlice written by hand) as kube-dns is behind 10.96.0.10.
	n.startCoreDNS(b, "10.244.0.1:1053", "")
	manifest := filepath.Join(b.TempDir(), "coredns-svc.yaml")
	os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Service
metadata: {name: coredns-bench}
spec:
  ports: [{name: dns, port: 53, protocol: UDP, targetPort: 1053}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: coredns-bench-1, labels: {kubernetes.io/service-name: coredns-bench}}
addressType: IPv4
ports: [{name: dns, port: 1053, protocol: UDP}]
endpoints: [{addresses: [10.244.0.1], conditions: {ready: true}}]
`), 0o644)
	if out, errOut, err := n.exec("kubectl", "apply", "-f", manifest); err != nil {
		b.Fatalf("coredns-bench service: %v %s%s", err, out, errOut)
	}
	corednsIP, _, _ := n.exec("kubectl", "get", "svc", "coredns-bench", "-o", "jsonpath={.spec.clusterIP}")
	last := fmt.Sprintf("s-%d.default.svc.cluster.local", services-1)
	if err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 120*time.Second, true, func(context.Context) (bool, error) {
		out, _, err := n.exec("dig", "+short", "+time=1", "+tries=1", "@"+corednsIP, last)
		return err == nil && strings.TrimSpace(out) != "", nil
	}); err != nil {
		b.Fatalf("CoreDNS behind %s does not answer %s", corednsIP, last)
	}

	targets := []struct{ label, addr string }{{"service-address", "10.96.0.10"}, {"server-address", "10.244.0.1"},
		{"coredns-service-address", corednsIP}, {"baseline-fixed-answer", "127.0.0.88"}}
	// The highest rate of each, one after another.
	maxQPS, p50, p99 := map[string]float64{}, map[string]float64{}, map[string]float64{}
	for _, target := range targets {
		out := n.dnsperf(b, target.addr, file, "-l", "10", "-c", "8", "-q", "200")
		qps, _ := strconv.ParseFloat(qpsLine.FindStringSubmatch(out)[1], 64)
		b.ReportMetric(qps, "qps-max-"+target.label)
		maxQPS[target.label] = qps
		b.Logf("%s: max %.0f QPS (lost %s)", target.label, qps, lostLine.FindStringSubmatch(out)[1])
	}
	// Latency at 10k QPS: each target twice, in two rounds (so neither side always
	// follows the other), the better round kept for each.
	const rate = 10000
	for round := range 2 {
		for _, target := range targets {
			l50, l99 := n.dnsLatency(b, target.addr, file, rate)
			b.Logf("round %d, %s at %d QPS: p50 %.3f ms, p99 %.3f ms", round, target.label, rate, l50, l99)
			if round == 0 || l99 < p99[target.label] {
				p50[target.label], p99[target.label] = l50, l99
			}
		}
	}
	for _, target := range targets {
		b.ReportMetric(p50[target.label], fmt.Sprintf("ms-p50-at-%dqps-%s", rate, target.label))
		b.ReportMetric(p99[target.label], fmt.Sprintf("ms-p99-at-%dqps-%s", rate, target.label))
	}
	// Sustained: 80 % of the highest rate for MC_DNS_SUSTAIN seconds (60), ≤ 0.01 % lost.
	secs := strconv.Itoa(envInt("MC_DNS_SUSTAIN", 60))
	out := n.dnsperf(b, "10.96.0.10", file, "-l", secs, "-c", "8", "-Q", strconv.Itoa(int(maxQPS["service-address"]*0.8)))
	sent, _ := strconv.Atoi(regexp.MustCompile(`Queries sent:\s+(\d+)`).FindStringSubmatch(out)[1])
	lostN, _ := strconv.Atoi(lostLine.FindStringSubmatch(out)[1])
	pct := 100 * float64(lostN) / float64(max(sent, 1))
	b.ReportMetric(pct, "lost-%-at-80%-for-"+secs+"s")
	b.Logf("sustained %d QPS for %s s: %d sent, %d lost (%.4f %%)", int(maxQPS["service-address"]*0.8), secs, sent, lostN, pct)
	if pct > 0.01 {
		b.Errorf("lost %.4f %% at 80 %% of the highest rate (goal ≤ 0.01 %%)", pct)
	}
	// The goals (issue 17): p99 at 10k QPS ≤ 0.5 × CoreDNS's, highest rate ≥ 2 × its.
	b.ReportMetric(p99["service-address"]/p99["coredns-service-address"], "p99-ratio-vs-coredns")
	b.ReportMetric(maxQPS["service-address"]/maxQPS["coredns-service-address"], "qps-ratio-vs-coredns")
}

// dnsLatency runs dnsperf against addr at a fixed rate for 5 s and returns the p50 and
// p99 of its per-query latencies, in ms.
func (n *node) dnsLatency(b *testing.B, addr, file string, rate int) (float64, float64) {
	// dnsperf -v writes a line per query; into a pipe read by this process (which also
	// runs the baseline server) that costs latency, into a file it does not.
	vfile := filepath.Join(b.TempDir(), "verbose")
	cmd := exec.Command("sh", "-c", `exec ip netns exec "$0" dnsperf -s "$1" -d "$2" -l 5 -c 8 -Q "$3" -v > "$4"`,
		n.netns, addr, file, strconv.Itoa(rate), vfile)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("dnsperf: %v\n%s", err, out)
	}
	data, _ := os.ReadFile(vfile)
	vout := string(data)
	var lat []float64
	for line := range strings.SplitSeq(vout, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == ">" {
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				lat = append(lat, v*1000)
			}
		}
	}
	if len(lat) == 0 {
		b.Fatalf("no latencies in dnsperf -v output:\n%s", vout[:min(len(vout), 2000)])
	}
	sort.Float64s(lat)
	p := func(x float64) float64 { return lat[int(x*float64(len(lat)-1))] }
	return p(0.5), p(0.99)
}

// waitDNS waits until the cluster DNS answers name.
func (n *node) waitDNS(b testing.TB, name string) {
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		out, _, err := n.exec("dig", "+short", "+time=1", "+tries=1", "@10.96.0.10", name)
		return err == nil && strings.TrimSpace(out) != "", nil
	})
	if err != nil {
		b.Fatalf("cluster DNS does not answer %s", name)
	}
}

// rssKiB is the daemon's resident memory.
func rssKiB(b testing.TB, n *node) int {
	out, _, err := n.exec("pgrep", "-f", "serve --data-dir "+n.dataDir)
	if err != nil {
		b.Fatal("daemon pid not found")
	}
	pids := strings.Fields(out)
	data, _ := os.ReadFile("/proc/" + pids[len(pids)-1] + "/status")
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			return kb
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
