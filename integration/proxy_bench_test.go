//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// inNetns runs f on a thread inside the node's netns (the thread is then discarded).
func (n *node) inNetns(b testing.TB, f func()) {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := setNetns(n.netns); err != nil {
			done <- err
			return
		}
		f()
		done <- nil
	}()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// connects reports whether a TCP connection to addr is accepted within timeout; the
// connection is reset at once so no TIME_WAIT piles up.
func connects(addr string, timeout time.Duration) bool {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false
	}
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	return true
}

// waitConnects polls addr from the node until it accepts (or refuses, when want is
// false) and returns when that happened.
func (n *node) waitConnects(b testing.TB, addr string, want bool, limit time.Duration) time.Time {
	var at time.Time
	n.inNetns(b, func() {
		deadline := time.Now().Add(limit)
		for time.Now().Before(deadline) {
			if connects(addr, 5*time.Millisecond) == want {
				at = time.Now()
				return
			}
		}
	})
	if at.IsZero() {
		b.Fatalf("%s: connect=%v not reached within %s", addr, want, limit)
	}
	return at
}

// connRate counts the connections a single client sets up to addr in d.
func (n *node) connRate(b testing.TB, addr string, d time.Duration) float64 {
	count := 0
	n.inNetns(b, func() {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			if connects(addr, time.Second) {
				count++
			}
		}
	})
	return float64(count) / d.Seconds()
}

func (n *node) post(b testing.TB, c *http.Client, path string, obj any) map[string]any {
	body, _ := json.Marshal(obj)
	resp, err := c.Post("http://x"+path, "application/json", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 201 {
		b.Fatalf("POST %s: %d %v", path, resp.StatusCode, out)
	}
	return out
}

// createService makes selector-less service name and a slice with the given endpoints
// (port 8080), returning the ClusterIP.
func (n *node) createService(b testing.TB, c *http.Client, name string, eps []string) string {
	svc := n.post(b, c, "/api/v1/namespaces/default/services", map[string]any{
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"ports": []any{map[string]any{"name": "http", "port": 80}}}})
	var endpoints []any
	for _, ip := range eps {
		endpoints = append(endpoints, map[string]any{"addresses": []string{ip}, "conditions": map[string]any{"ready": true}})
	}
	n.post(b, c, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", map[string]any{
		"metadata":    map[string]any{"name": name + "-x", "labels": map[string]string{"kubernetes.io/service-name": name}},
		"addressType": "IPv4", "endpoints": endpoints,
		"ports": []any{map[string]any{"name": "http", "port": 8080, "protocol": "TCP"}}})
	return svc["spec"].(map[string]any)["clusterIP"].(string)
}

// createServices makes services from..to-1 with 16 writers; it returns the ClusterIP
// of the last one and when its create was acknowledged.
func (n *node) createServices(b testing.TB, from, to int, eps []string) (string, time.Time) {
	var wg sync.WaitGroup
	next := make(chan int)
	c := n.socketClient()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				n.createService(b, c, fmt.Sprintf("s-%d", i), eps)
			}
		}()
	}
	for i := from; i < to-1; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	ip := n.createService(b, c, fmt.Sprintf("s-%d", to-1), eps)
	return ip, time.Now()
}

// newServiceLatency creates count services one at a time and returns the times from
// the create until a connection through each succeeds.
func (n *node) newServiceLatency(b testing.TB, prefix string, count int, eps []string) []time.Duration {
	c := n.socketClient()
	var out []time.Duration
	for i := range count {
		start := time.Now()
		ip := n.createService(b, c, fmt.Sprintf("%s-%d", prefix, i), eps)
		out = append(out, n.waitConnects(b, ip+":80", true, 30*time.Second).Sub(start))
	}
	return out
}

// metric reads one sample of the daemon's /metrics.
func (n *node) metric(b testing.TB, name string) float64 {
	resp, err := n.socketClient().Get("http://x/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && (f[0] == name || strings.HasPrefix(f[0], name+"{")) {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	b.Fatalf("no metric %s", name)
	return 0
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkProxy measures, per proxy mode: the time from one new service's create to a
// connection through it, with a handful of services and with 1k and 10k present; how
// long programming 1k and 10k services (× 3 endpoints) takes after the last create, and
// a full sync at daemon start with 10k; connection set-up rate through a ClusterIP vs
// straight to the pod; and network programming latency over pod readiness flips. Run
// it with -benchtime 1x.
func BenchmarkProxy(b *testing.B) {
	flips := envInt("MC_BENCH_FLIPS", 100)
	for _, mode := range []string{"iptables", "nftables"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				benchProxy(b, mode, flips)
			}
		})
	}
}

func benchProxy(b *testing.B, mode string, flips int) {
	n := newNode(b)
	n.start("--proxy-mode", mode, "--log-level", "warn")
	if _, errOut, err := n.cli("apply", "-f", "../manifests/backend.yaml"); err != nil {
		b.Fatal(errOut)
	}
	var eps []string
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		eps = nil
		for _, p := range n.podStatuses(b, "app=backend") {
			if p.Ready {
				eps = append(eps, p.IP)
			}
		}
		return len(eps) >= 3, nil
	})
	if err != nil {
		b.Fatalf("backend pods not ready: %v", eps)
	}
	backend, _, _ := n.exec("kubectl", "get", "svc", "backend", "-o", "jsonpath={.spec.clusterIP}")
	n.waitConnects(b, backend+":80", true, 30*time.Second)

	report := func(what string, v float64, unit string) {
		b.ReportMetric(v, unit+"-"+what)
		b.Logf("%s %s: %.2f %s", mode, what, v, unit)
	}
	newSvc := func(label string) float64 {
		lat := n.newServiceLatency(b, "new-"+label, 20, eps)
		p50 := percentile(lat, 0.5)
		report("new-service-p50-at-"+label, ms(p50), "ms")
		return ms(p50)
	}
	// A service whose only endpoint is eps[0]: through it and straight to the pod reach
	// the same server process.
	one := n.createService(b, n.socketClient(), "one", eps[:1])
	n.waitConnects(b, one+":80", true, 30*time.Second)
	rates := func(label string) {
		// Side by side: alternate 100 ms slices so that noise hits both alike; the
		// ratio is the median of the slices' ratios.
		var via, direct float64
		var ratios []float64
		for range 20 {
			v, d := n.connRate(b, one+":80", 100*time.Millisecond), n.connRate(b, eps[0]+":8080", 100*time.Millisecond)
			via, direct = via+v/20, direct+d/20
			ratios = append(ratios, v/d)
		}
		sort.Float64s(ratios)
		report("conn-per-s-clusterip-at-"+label, via, "conn/s")
		report("conn-per-s-podip-at-"+label, direct, "conn/s")
		report("conn-rate-clusterip-vs-podip-at-"+label, ratios[len(ratios)/2], "x")
	}

	small := newSvc("few")
	rates("few")
	flipLatency(b, n, mode, flips, report)

	var lastIP string // the last service's ClusterIP
	for _, total := range []int{1000, 10000} {
		have := 0
		if total == 10000 {
			have = 1000
		}
		ip, acked := n.createServices(b, have, total, eps)
		lastIP = ip
		report(fmt.Sprintf("programmed-%d-after-last-create", total), ms(n.waitConnects(b, ip+":80", true, 5*time.Minute).Sub(acked)), "ms")
		label := fmt.Sprintf("%dk", total/1000)
		big := newSvc(label)
		report("new-service-ratio-"+label+"-vs-few", big/small, "x")
		rates(label)
	}
	// A full sync with 10k services: the daemon starting over them, first with its
	// rules still in the kernel (they keep answering meanwhile), then on a kernel
	// without them, where the time until the last service answers is measured beside
	// the metric: the metric must account for it, less the daemon's own start.
	for _, clean := range []bool{false, true} {
		n.stop(9)
		label := "at-start"
		if clean {
			label = "at-clean-start"
			n.exec("sh", "-c", "nft delete table ip "+n.instance+"_proxy; for t in nat filter; do iptables-save -t $t | grep -v -i -- '"+
				n.instance+"' | iptables-restore -T $t; done")
			if n.connectsNow(lastIP + ":80") {
				b.Fatal("a service still answers with the instance's rules gone")
			}
		}
		start := time.Now()
		n.start("--proxy-mode", mode, "--log-level", "warn")
		if clean {
			report("last-service-answers-10k-"+label, ms(n.waitConnects(b, lastIP+":80", true, 5*time.Minute).Sub(start)), "ms")
		}
		name := "kubeproxy_sync_full_proxy_rules_duration_seconds_count"
		wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
			return n.metric(b, name) >= 1, nil
		})
		report("full-sync-10k-"+label, 1000*n.metric(b, "kubeproxy_sync_full_proxy_rules_duration_seconds_sum"), "ms")
	}
}

// connectsNow reports whether a TCP connection to addr from inside the node's netns
// is accepted at once.
func (n *node) connectsNow(addr string) bool {
	ok := false
	n.inNetns(n.t, func() { ok = connects(addr, 500*time.Millisecond) })
	return ok
}

// flipLatency flips the readiness of the only pod behind a service and measures from
// the moment the API shows the pod's new Ready state (a watch event) to when a
// connection through the ClusterIP reflects it.
func flipLatency(b *testing.B, n *node, mode string, flips int, report func(string, float64, string)) {
	if _, errOut, err := n.cli("apply", "-f", "testdata/flip.yaml"); err != nil {
		b.Fatal(errOut)
	}
	ip, _, _ := n.exec("kubectl", "get", "svc", "flip", "-o", "jsonpath={.spec.clusterIP}")
	n.waitConnects(b, ip+":80", true, 60*time.Second)
	var pod podStatus
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		ps := n.podStatuses(b, "app=flip")
		if len(ps) == 1 && ps[0].Ready {
			pod = ps[0]
		}
		return pod.IP != "", nil
	})
	if err != nil {
		b.Fatal("flip pod not ready")
	}
	req, _ := http.NewRequest("GET", "http://x/api/v1/namespaces/default/pods?watch=true&labelSelector=app%3Dflip", nil)
	resp, err := (&http.Client{Transport: n.socketClient().Transport}).Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	readyAt := make(chan time.Time, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		last := "True"
		for sc.Scan() {
			var ev struct {
				Object struct {
					Status struct {
						Conditions []struct{ Type, Status string }
					}
				}
			}
			json.Unmarshal(sc.Bytes(), &ev)
			for _, c := range ev.Object.Status.Conditions {
				if c.Type == "Ready" && c.Status != last {
					last = c.Status
					readyAt <- time.Now()
				}
			}
		}
	}()
	var lat []time.Duration
	for i := range flips {
		cmd := "touch /tmp/unready"
		if i%2 == 1 {
			cmd = "rm /tmp/unready"
		}
		if _, err := n.podShell(pod.IP, cmd); err != nil {
			b.Fatal(err)
		}
		var t0 time.Time
		select {
		case t0 = <-readyAt:
		case <-time.After(10 * time.Second):
			b.Fatalf("flip %d: no Ready change seen", i)
		}
		lat = append(lat, n.waitConnects(b, ip+":80", i%2 == 1, 10*time.Second).Sub(t0))
	}
	report(fmt.Sprintf("programming-p50-%d-flips", flips), ms(percentile(lat, 0.5)), "ms")
	report(fmt.Sprintf("programming-p99-%d-flips", flips), ms(percentile(lat, 0.99)), "ms")
}
