//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// kill -9 under load: while a client pod loops requests through a ClusterIP, a writer
// creates and updates objects and DNS queries run, the daemon is killed with SIGKILL
// and started again MC_KILLS times (20). Required: no failed service request, every
// acknowledged write there afterwards (none lost, none twice), DNS answering within 1 s
// of each start, and afterwards as many pod netns, bridge ports and allocated addresses
// as pods, unique pod IPs, and no rule pointing at anything that no longer exists.
func TestKillUnderLoad(t *testing.T) { proxyModes(t, testKillUnderLoad) }

func testKillUnderLoad(t *testing.T, n *node) {
	kills := envInt("MC_KILLS", 20)
	mode := n.proxyMode()
	ip := n.applyBackend(t, 3)
	// The client: a pod asking the ClusterIP in a loop, one line per answer, FAIL per
	// failure; its log is a file, read at the end.
	loop := `while true; do if wget -q -T 2 -O /dev/null http://` + ip + `/hostname; then echo ok; else echo FAIL; fi; sleep 0.02; done`
	if _, errOut, err := n.exec("kubectl", "run", "client", "--image=busybox:1.36", "--", "sh", "-c", loop); err != nil {
		t.Fatal(errOut)
	}
	eventually(t, 30*time.Second, func() error {
		if p := n.podStatuses(t, "run=client"); len(p) != 1 || p[0].Phase != "Running" {
			return fmt.Errorf("client: %v", p)
		}
		return nil
	})

	// The writer: creates endpoints objects w-<i> and then labels each with its
	// generation; every acknowledged write is recorded.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]string{} // name → the last label value the server acknowledged
	var attempts, failures, written atomic.Int64
	// progress waits until the writer has had 20 more writes acknowledged and the client
	// 5 more answers: each kill lands amid traffic of both.
	progress := func() {
		writes, answers := written.Load()+20, clientLog(n).ok+5
		eventually(t, 10*time.Second, func() error {
			if w, a := written.Load(), clientLog(n).ok; w < writes || a < answers {
				return fmt.Errorf("%d writes acknowledged, waiting for %d; %d answers, waiting for %d", w, writes, a, answers)
			}
			return nil
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := n.socketClient()
		c.Timeout = 2 * time.Second
		for i := 0; ctx.Err() == nil; i++ {
			name, gen := fmt.Sprintf("w-%d", i/2), "0"
			var code int
			var err error
			if i%2 == 0 {
				code, err = send(c, "POST", "/api/v1/namespaces/default/endpoints", fmt.Sprintf(`{"metadata":{"name":%q,"labels":{"gen":"0"}}}`, name))
			} else {
				gen = strconv.Itoa(i)
				code, err = send(c, "PATCH", "/api/v1/namespaces/default/endpoints/"+name, fmt.Sprintf(`{"metadata":{"labels":{"gen":%q}}}`, gen))
			}
			attempts.Add(1)
			// 409 to a create: one whose answer was lost, sent again.
			if err != nil || code != 201 && code != 200 && (code != 409 || i%2 != 0) {
				failures.Add(1)
				i-- // not acknowledged (the daemon is down): the same write again
				time.Sleep(20 * time.Millisecond)
				continue
			}
			mu.Lock()
			acked[name] = gen
			mu.Unlock()
			written.Add(1)
		}
	}()
	defer func() { stop(); wg.Wait() }()

	// DNS: after each start, how long until the cluster DNS answers again.
	var worstDNS time.Duration
	for k := range kills {
		progress() // the load runs between kills
		if err := n.stop(syscall.SIGKILL); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("kill %d: %v", k, err)
		}
		start := time.Now()
		n.start("--proxy-mode", mode)
		answered := n.dnsAnswers(t, "backend.default.svc.cluster.local", ip, 5*time.Second)
		d := answered.Sub(start)
		worstDNS = max(worstDNS, d)
		if d > time.Second {
			t.Errorf("restart %d: DNS answered %s after the daemon started", k, d)
		}
	}
	progress()
	stop()
	wg.Wait()
	t.Logf("%d kills; DNS answering again at most %s after a start; writer: %d attempts, %d not acknowledged (daemon down)",
		kills, worstDNS.Round(time.Millisecond), attempts.Load(), failures.Load())

	// Every acknowledged write is there, once, with the last acknowledged label or a
	// later one (an update whose answer was lost may have landed).
	out, errOut, err := n.exec("kubectl", "get", "endpoints", "-o", `jsonpath={range .items[*]}{.metadata.name}={.metadata.labels.gen}{"\n"}{end}`)
	if err != nil {
		t.Fatal(errOut)
	}
	have := map[string]int{}
	for line := range strings.Lines(out) {
		name, gen, _ := strings.Cut(strings.TrimSpace(line), "=")
		if strings.HasPrefix(name, "w-") {
			if _, dup := have[name]; dup {
				t.Errorf("%s listed twice", name)
			}
			have[name], _ = strconv.Atoi(gen)
		}
	}
	for name, gen := range acked {
		g, _ := strconv.Atoi(gen)
		if got, ok := have[name]; !ok || got < g {
			t.Errorf("acknowledged write lost: %s gen %s, have %d (present %v)", name, gen, got, ok)
		}
	}
	// (That there was traffic to lose is progress()'s doing: it fails the test when the
	// writer or the client stalls.)

	// The client's requests, from its log.
	c := clientLog(n)
	t.Logf("client: %d requests answered, %d failed", c.ok, c.failed)
	if c.failed != 0 {
		t.Errorf("client: %d answered, %d failed", c.ok, c.failed)
	}

	// What the kernel holds matches the pods: a netns and a bridge port each, unique IPs;
	// every DNAT target (iptables: --to-destination; nftables: the endpoint maps'
	// values) an endpoint that exists.
	pods := n.pods(t)
	netnsOut := mustRun(t, "ip", "netns", "list")
	var podNetns int
	for line := range strings.Lines(netnsOut) {
		if strings.HasPrefix(line, n.instance+"_") {
			podNetns++
		}
	}
	ports := strings.Count(mustRun(t, "ip", "-n", n.netns, "-o", "link", "show", "master", n.instance+"0"), "\n")
	var ips []string
	for _, p := range pods {
		ips = append(ips, p.ip)
	}
	slices.Sort(ips)
	allocated := int(n.metric(t, "minicluster_pod_ips_allocated"))
	if podNetns != len(pods) || ports != len(pods) || allocated != len(pods) || len(slices.Compact(ips)) != len(pods) {
		t.Errorf("%d pods, %d pod netns, %d bridge ports, %d addresses allocated, IPs %v", len(pods), podNetns, ports, allocated, ips)
	}
	rules := mustRun(t, "ip", "netns", "exec", n.netns, "iptables-save", "-t", "nat")
	if mode == "nftables" {
		rules = mustRun(t, "ip", "netns", "exec", n.netns, "nft", "list", "ruleset")
	}
	targets := regexp.MustCompile(`(?:--to-destination |dnat ip to |: )([0-9.]+)(?::| \. )[0-9]+`).FindAllStringSubmatch(rules, -1)
	if len(targets) == 0 {
		t.Errorf("no DNAT target in the %s rules:\n%s", mode, rules)
	}
	for _, m := range targets {
		if !slices.Contains(ips, m[1]) && m[1] != "10.244.0.1" && m[1] != "127.0.0.1" { // pods, the DNS server, the API
			t.Errorf("a rule sends traffic to %s, which no pod has", m[1])
		}
	}
}

// clientLog counts the client pod's answered and failed requests in its log, read from
// the file (kill -9 loses no line there).
func clientLog(n *node) (c struct{ ok, failed int }) {
	logs, _ := filepath.Glob(filepath.Join(n.dataDir, "pods", "*", "client", "*.log"))
	for _, f := range logs {
		data, _ := os.ReadFile(f)
		c.ok += strings.Count(string(data), " ok\n")
		c.failed += strings.Count(string(data), " FAIL\n")
	}
	return c
}

// send makes one API request over c and returns the status code.
func send(c *http.Client, method, path, body string) (int, error) {
	req, _ := http.NewRequest(method, "http://x"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if method == "PATCH" {
		req.Header.Set("Content-Type", "application/merge-patch+json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// dnsAnswers asks the cluster DNS for name until it answers want, and returns when.
func (n *node) dnsAnswers(t *testing.T, name, want string, limit time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		conn, err := n.dialInNetns(context.Background(), "udp", "10.96.0.10:53")
		if err == nil {
			c := &mdns.Conn{Conn: conn}
			m := new(mdns.Msg)
			m.SetQuestion(name+".", mdns.TypeA)
			conn.SetDeadline(time.Now().Add(100 * time.Millisecond))
			if c.WriteMsg(m) == nil {
				if r, err := c.ReadMsg(); err == nil && len(r.Answer) == 1 {
					if a, ok := r.Answer[0].(*mdns.A); ok && a.A.String() == want {
						conn.Close()
						return time.Now()
					}
				}
			}
			conn.Close()
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("cluster DNS did not answer %s within %s", name, limit)
	return time.Time{}
}

// Writers and watchers: 50 concurrent writers create and update objects for
// MC_LOAD_SECONDS (10; the run is 60) while 100 watchers follow from one
// resourceVersion. Every watcher must see exactly the acknowledged writes' revisions, in
// order: no gap, no duplicate.
func TestWatchersUnderWriters(t *testing.T) {
	seconds := envInt("MC_LOAD_SECONDS", 10)
	const writers, watchers = 50, 100
	n := newNode(t)
	n.start()
	c := n.socketClient()
	resp, err := c.Get("http://x/api/v1/namespaces/default/endpoints")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Metadata struct{ ResourceVersion string }
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	from := list.Metadata.ResourceVersion

	type seen struct {
		mu      sync.Mutex
		rvs     []int64
		resumed int
		expired bool
	}
	views := make([]*seen, watchers)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ready sync.WaitGroup
	for i := range views {
		views[i] = &seen{}
		ready.Add(1)
		go func(v *seen) {
			// As a client-go reflector: a watch the server ends (one that fell too far
			// behind is cut) is resumed from the last revision seen; an expired one
			// (410) cannot be, and shows as missing events.
			last, first := from, true
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://x/api/v1/namespaces/default/endpoints?watch=true&resourceVersion="+last, nil)
				resp, err := n.socketClient().Do(req)
				if first {
					ready.Done()
					first = false
				}
				if err != nil {
					return
				}
				dec := json.NewDecoder(resp.Body)
				for {
					var ev struct {
						Type   string
						Object struct {
							Metadata struct{ Name, ResourceVersion string }
						}
					}
					if dec.Decode(&ev) != nil {
						break
					}
					if ev.Type == "ERROR" {
						resp.Body.Close()
						v.mu.Lock()
						v.expired = true
						v.mu.Unlock()
						return
					}
					last = ev.Object.Metadata.ResourceVersion
					if strings.HasPrefix(ev.Object.Metadata.Name, "l-") {
						rv, _ := strconv.ParseInt(ev.Object.Metadata.ResourceVersion, 10, 64)
						v.mu.Lock()
						v.rvs = append(v.rvs, rv)
						v.mu.Unlock()
					}
				}
				resp.Body.Close()
				v.mu.Lock()
				v.resumed++
				v.mu.Unlock()
			}
		}(views[i])
	}
	ready.Wait()

	var mu sync.Mutex
	var acked []int64
	var errs atomic.Int64
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := n.socketClient()
			for j := 0; time.Now().Before(deadline); j++ {
				name := fmt.Sprintf("l-%d-%d", w, j/4)
				method, path, body := "PATCH", "/api/v1/namespaces/default/endpoints/"+name, fmt.Sprintf(`{"metadata":{"labels":{"n":"%d"}}}`, j)
				if j%4 == 0 {
					method, path, body = "POST", "/api/v1/namespaces/default/endpoints", fmt.Sprintf(`{"metadata":{"name":%q}}`, name)
				}
				req, _ := http.NewRequest(method, "http://x"+path, strings.NewReader(body))
				req.Header.Set("Content-Type", map[string]string{"POST": "application/json", "PATCH": "application/merge-patch+json"}[method])
				resp, err := c.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				var obj struct {
					Metadata struct{ ResourceVersion string }
				}
				json.NewDecoder(resp.Body).Decode(&obj)
				resp.Body.Close()
				if resp.StatusCode != 200 && resp.StatusCode != 201 {
					errs.Add(1)
					continue
				}
				rv, _ := strconv.ParseInt(obj.Metadata.ResourceVersion, 10, 64)
				mu.Lock()
				acked = append(acked, rv)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if errs.Load() != 0 || len(acked) < writers {
		t.Errorf("%d writes failed, %d acknowledged", errs.Load(), len(acked))
	}
	slices.Sort(acked)
	t.Logf("%d writers, %d s: %d writes acknowledged (%.0f/s); %d watchers", writers, seconds, len(acked), float64(len(acked))/float64(seconds), watchers)
	eventually(t, 30*time.Second, func() error {
		for i, v := range views {
			v.mu.Lock()
			got, expired := len(v.rvs), v.expired
			v.mu.Unlock()
			if got < len(acked) && !expired {
				return fmt.Errorf("watcher %d has %d of %d events", i, got, len(acked))
			}
		}
		return nil
	})
	resumed := 0
	for _, v := range views {
		v.mu.Lock()
		resumed += v.resumed
		v.mu.Unlock()
	}
	t.Logf("watches resumed after the server cut them: %d", resumed)
	for i, v := range views {
		v.mu.Lock()
		if v.expired {
			t.Errorf("watcher %d could not resume: its revision expired", i)
		}
		if !slices.Equal(v.rvs, acked) {
			t.Errorf("watcher %d saw %d events, not the %d acknowledged writes in order (first difference at %d)", i, len(v.rvs), len(acked), firstDiff(v.rvs, acked))
		}
		v.mu.Unlock()
	}
}

func firstDiff(a, b []int64) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Connections under load: 100 clients on the node each open a new connection through
// the backend's ClusterIP, ask, and close, for MC_LOAD_SECONDS (10; the run is
// 60). Not one may fail.
func TestConnectionsUnderLoad(t *testing.T) {
	seconds := envInt("MC_LOAD_SECONDS", 10)
	n := newNode(t)
	n.start()
	ip := n.applyBackend(t, 3)
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each client on a thread of its own in the node's netns (discarded after).
			runtime.LockOSThread()
			if err := setNetns(n.netns); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			buf := make([]byte, 512)
			for time.Now().Before(deadline) {
				err := func() error {
					c, err := net.DialTimeout("tcp", ip+":80", 5*time.Second)
					if err != nil {
						return err
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(5 * time.Second))
					if _, err := c.Write([]byte("GET /hostname HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n")); err != nil {
						return err
					}
					k, err := c.Read(buf)
					if err != nil || !strings.HasPrefix(string(buf[:k]), "HTTP/1.1 200") {
						return fmt.Errorf("answer %q: %v", buf[:k], err)
					}
					return nil
				}()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("100 clients, %d s: %d requests on new connections (%.0f/s), %d failed", seconds, ok.Load(), float64(ok.Load())/float64(seconds), failed.Load())
	if failed.Load() != 0 || ok.Load() < 100 {
		t.Errorf("%d answered, %d failed; first failure: %v", ok.Load(), failed.Load(), firstErr.Load())
	}
}

// Graceful shutdown under load: SIGTERM while writers and watchers are busy ends the
// daemon within 10 s; every request it had taken gets its answer (a refusal to connect
// once it stopped listening is fine, a connection cut mid-request is not), every watch
// ends cleanly, and the pods and rules stay: the ClusterIP still answers.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	n := newNode(t)
	n.start()
	ip := n.applyBackend(t, 3)
	var answered, refused atomic.Int64
	var cut sync.Map // error text → true, for requests cut mid-way
	stopWriters := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := n.socketClient()
			for j := 0; ; j++ {
				select {
				case <-stopWriters:
					return
				default:
				}
				code, err := send(c, "POST", "/api/v1/namespaces/default/endpoints", fmt.Sprintf(`{"metadata":{"name":"g-%d-%d"}}`, w, j))
				switch {
				case err == nil && code == 201:
					answered.Add(1)
				case err != nil && (strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such file")):
					refused.Add(1)
					time.Sleep(10 * time.Millisecond)
				case err == nil && code == 503: // refused by a server that is stopping
					refused.Add(1)
				default:
					cut.Store(fmt.Sprintf("%d %v", code, err), true)
				}
			}
		}()
	}
	var watchEnds sync.Map // how each watch ended
	var watches sync.WaitGroup
	for range 20 {
		resp, err := n.socketClient().Get("http://x/api/v1/namespaces/default/endpoints?watch=true")
		if err != nil {
			t.Fatal(err)
		}
		watches.Add(1)
		go func() {
			defer watches.Done()
			defer resp.Body.Close()
			dec := json.NewDecoder(resp.Body)
			for {
				var ev map[string]any
				if err := dec.Decode(&ev); err != nil {
					watchEnds.Store(err.Error(), true)
					return
				}
			}
		}()
	}
	eventually(t, 10*time.Second, func() error { // the load is running
		if a := answered.Load(); a < 100 {
			return fmt.Errorf("%d writes answered", a)
		}
		return nil
	})
	start := time.Now()
	if err := n.stop(syscall.SIGTERM); err != nil {
		t.Errorf("daemon exit after SIGTERM: %v", err)
	}
	took := time.Since(start)
	close(stopWriters)
	wg.Wait()
	watches.Wait()
	t.Logf("SIGTERM → exit %s; writes answered %d, refused after the stop %d", took.Round(time.Millisecond), answered.Load(), refused.Load())
	if took > 10*time.Second {
		t.Errorf("shutdown took %s", took)
	}
	cut.Range(func(k, _ any) bool {
		t.Errorf("a request cut mid-way: %v", k)
		return true
	})
	watchEnds.Range(func(k, _ any) bool {
		if k != "EOF" {
			t.Errorf("a watch ended with %q, not cleanly", k)
		}
		return true
	})
	if answered.Load() < 10 {
		t.Errorf("only %d writes answered before the stop", answered.Load())
	}
	if seen := n.hostnames(t, 10, "http://"+ip+"/hostname"); len(seen) < 2 {
		t.Errorf("with the daemon stopped, the ClusterIP reached %v", seen)
	}
}

// Issue 19 (6): a second daemon of the same instance (another data dir) is refused at
// once and names the one running; the running one's pods are untouched.
func TestSecondDaemonOfAnInstanceRefused(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("run", "keep", "--image=busybox", "--restart=Never", "--", "sleep", "3600")
	kubectl("wait", "--for=condition=Ready", "pod/keep", "--timeout=60s")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other := t.TempDir()
	os.Chmod(other, 0o700)
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", n.netns, binary, "serve", "--data-dir", other,
		"--instance", n.instance, "--dns-upstream", "none").CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "is in use by another minicluster daemon (pid ") {
		t.Fatalf("second daemon: %v, ctx %v:\n%s", err, ctx.Err(), out)
	}
	if got := kubectl("get", "pod", "keep", "-o", "jsonpath={.status.phase}"); got != "Running" {
		t.Errorf("the running daemon's pod: %s", got)
	}
	if _, _, err := n.exec("kubectl", "exec", "keep", "--", "true"); err != nil {
		t.Errorf("the running daemon's pod no longer runs: %v", err)
	}
}

// Issue 19 (10): a damaged database stops the daemon with a message naming the backup
// (it panicked or started an empty cluster); `minicluster backup` and `restore` bring
// the objects back.
func TestDamagedDatabaseRestore(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("create", "configmap", "before", "--from-literal=a=1")
	backup := filepath.Join(t.TempDir(), "mc.db")
	if out, errOut, err := n.cli("backup", backup); err != nil || !strings.Contains(out, "backed up") {
		t.Fatalf("backup: %v\n%s%s", err, out, errOut)
	}
	kubectl("create", "configmap", "after", "--from-literal=a=2")
	if err := n.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(n.dataDir, "minicluster.db")
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(db, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", n.netns, binary, "serve", "--data-dir", n.dataDir,
		"--instance", n.instance, "--dns-upstream", "none").CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "database damaged: "+db) ||
		!strings.Contains(string(out), "minicluster restore --data-dir "+n.dataDir) {
		t.Fatalf("daemon on a truncated database: %v, ctx %v:\n%s", err, ctx.Err(), out)
	}
	if bytes.Contains(out, []byte("panic")) {
		t.Fatalf("the daemon panicked:\n%s", out)
	}
	out, err = exec.Command(binary, "restore", "--data-dir", n.dataDir, backup).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "the database it replaced is kept at ") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	n.start()
	if got := kubectl("get", "configmap", "before", "-o", "jsonpath={.data.a}"); got != "1" {
		t.Errorf("restored configmap before: %q", got)
	}
	if _, _, err := n.exec("kubectl", "get", "configmap", "after"); err == nil {
		t.Error("configmap after, made after the backup, is there")
	}
	if err := exec.Command(binary, "restore", "--data-dir", n.dataDir, backup).Run(); err == nil {
		t.Error("restore over a running daemon's database succeeded")
	}
	if _, err := os.Stat(db + ".backup"); err != nil {
		t.Errorf("no backup taken at start: %v", err)
	}
}

// Issue 19 (8): a namespace of 63 characters and a pod of 189 are valid names whose
// netns name (<instance>_<namespace>_<pod>) is longer than a file name may be. The pod
// runs (its netns name ends in a hash), is adopted across a restart, and leaves
// nothing when deleted. Before, it stayed Pending with no message.
func TestLongNamesFitTheKernel(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	ns := "n" + strings.Repeat("s", 62)
	pod := "p" + strings.Repeat("o", 188)
	kubectl("create", "namespace", ns)
	manifest := filepath.Join(t.TempDir(), "pod.yaml")
	os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Pod
metadata: {name: `+pod+`, namespace: `+ns+`}
spec:
  containers:
  - {name: web, image: "registry.k8s.io/e2e-test-images/agnhost:2.53", args: [netexec, --http-port=8080]}
`), 0o600)
	kubectl("create", "-f", manifest)
	kubectl("wait", "-n", ns, "--for=condition=Ready", "pod/"+pod, "--timeout=60s")
	ip := kubectl("get", "-n", ns, "pod", pod, "-o", "jsonpath={.status.podIP}")
	var netns string
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), n.instance+"_"+ns+"_") {
			netns = e.Name()
		}
	}
	if netns == "" || len(netns) > 255 {
		t.Fatalf("the pod's netns: %q", netns)
	}
	if out, err := n.curlPod(ip, "/hostname"); err != nil || out != pod[:63] {
		t.Errorf("the pod answers %q %v, want its hostname (the name's first 63 characters)", out, err)
	}
	n.stop(syscall.SIGTERM)
	n.start()
	eventually(t, 20*time.Second, func() error {
		if log, _ := os.ReadFile(n.logPath); !strings.Contains(string(log), `msg="adopted pod network" netns=`+netns) {
			return errors.New("the long-named pod's network was not adopted across the restart")
		}
		return nil
	})
	if out, err := n.curlPod(ip, "/hostname"); err != nil || out != pod[:63] {
		t.Errorf("after the restart the pod answers %q %v", out, err)
	}
	kubectl("delete", "namespace", ns, "--wait=true", "--timeout=60s")
	if _, err := os.Stat("/run/netns/" + netns); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the deleted pod's netns is still there: %v", err)
	}
}

// Issue 19 (6): a netns the user made with the instance's prefix is not the daemon's:
// neither adoption at start nor cleanup removes it (before, both did).
func TestForeignNetnsLeftAlone(t *testing.T) {
	n := newNode(t)
	foreign := n.instance + "_ext"
	mustRun(t, "ip", "netns", "add", foreign)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", foreign).Run() })
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("run", "keep", "--image=busybox", "--restart=Never", "--", "sleep", "3600")
	kubectl("wait", "--for=condition=Ready", "pod/keep", "--timeout=60s")
	n.stop(syscall.SIGTERM)
	n.start()
	kubectl("wait", "--for=condition=Ready", "pod/keep", "--timeout=60s")
	if _, err := os.Stat("/run/netns/" + foreign); err != nil {
		t.Fatalf("the daemon removed the user's netns %s: %v", foreign, err)
	}
	n.stop(syscall.SIGTERM)
	out, err := exec.Command("ip", "netns", "exec", n.netns, binary, "cleanup", "--instance", n.instance, "--data-dir", n.dataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	if _, err := os.Stat("/run/netns/" + foreign); err != nil {
		t.Errorf("cleanup removed the user's netns %s: %v", foreign, err)
	}
	if !strings.Contains(string(out), "removed pod network") {
		t.Errorf("cleanup did not remove the daemon's own pod network:\n%s", out)
	}
	for _, lock := range []string{"/run/minicluster/" + n.instance + ".lock", filepath.Join(n.dataDir, "daemon.lock")} {
		if _, err := os.Stat(lock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cleanup left the lock file %s: %v", lock, err)
		}
	}
}

// Issue 19 (7): a daemon killed between starting a container's shim and saving its
// record left a shim no one owned (alive 42 min, past cleanup). Made here by removing
// the record while the daemon is down: the next daemon kills the unrecorded shim as it
// starts, and so does cleanup with no daemon at all.
func TestUnrecordedShimKilled(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	shimOf := func() (string, int) {
		t.Helper()
		kubectl("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s")
		u := kubectl("get", "pod", "sleeper", "-o", "jsonpath={.metadata.uid}")
		out, err := exec.Command("pgrep", "-f", filepath.Join(n.dataDir, "pods", u)+"/").Output()
		pids := strings.Fields(string(out))
		if err != nil || len(pids) != 1 {
			t.Fatalf("the sleeper's shim: %q %v", out, err)
		}
		pid, _ := strconv.Atoi(pids[0])
		return u, pid
	}
	forget := func(u string) { // the record as if the daemon died before saving it
		t.Helper()
		if err := os.WriteFile(filepath.Join(n.dataDir, "pods", u, "state.json"), []byte(`{"containers":{}}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	gone := func(pid int, what string) {
		t.Helper()
		eventually(t, 10*time.Second, func() error {
			if err := syscall.Kill(pid, 0); err == nil {
				return fmt.Errorf("%s: the unrecorded shim %d is alive", what, pid)
			}
			return nil
		})
	}
	kubectl("run", "sleeper", "--image=busybox", "--", "sleep", "3600")
	u, pid := shimOf()
	n.stop(syscall.SIGKILL)
	forget(u)
	n.start()
	gone(pid, "a new daemon")
	if log, _ := os.ReadFile(n.logPath); !strings.Contains(string(log), "killed a container shim no record names") {
		t.Error("no log line about the killed shim")
	}
	u, pid = shimOf() // the container started again
	n.stop(syscall.SIGKILL)
	forget(u)
	out, err := exec.Command("ip", "netns", "exec", n.netns, binary, "cleanup", "--instance", n.instance, "--data-dir", n.dataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	gone(pid, "cleanup")
}
