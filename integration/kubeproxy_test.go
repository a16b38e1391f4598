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
	"strings"
	"testing"
	"time"
)

// e2eBinary finds a binary in the cache where ../shared/conformance/build.sh leaves Kubernetes' own binaries.
func e2eBinary(t *testing.T, name string) string {
	dir := os.Getenv("MC_E2E_DIR")
	if dir == "" {
		dir = "/var/cache/minicluster-e2e"
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not built: run ../shared/conformance/build.sh %s %s (slow the first time; kept out of CI's path)", p, dir, name)
	}
	return p
}

// The real kube-proxy (v1.32) syncs from minicluster's API: it lists and watches
// services (with its spec.clusterIP!=None field selector), EndpointSlices and nodes,
// posts its events, programs every service, and logs no API error. minicluster's own
// proxy runs in nftables mode beside it, in other tables.
func TestRealKubeProxy(t *testing.T) {
	kubeProxy := e2eBinary(t, "kube-proxy")
	n := newNode(t)
	n.start("--proxy-mode", "nftables")
	ip := n.applyBackend(t, 3)
	node, _, _ := n.exec("kubectl", "get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
	logPath := filepath.Join(t.TempDir(), "kube-proxy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.netns, kubeProxy,
		"--kubeconfig", filepath.Join(n.dataDir, "kubeconfig"), "--hostname-override", node, "--proxy-mode", "iptables",
		"--cluster-cidr", "10.244.0.0/16", "--conntrack-max-per-core", "0", "--conntrack-tcp-timeout-established", "0",
		"--conntrack-tcp-timeout-close-wait", "0", "--iptables-localhost-nodeports=false",
		"--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "127.0.0.1:10249", "--v", "2")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		logFile.Close()
		// kube-proxy's rules live in the node's netns, which goes with the test.
	})
	eventually(t, 60*time.Second, func() error {
		rules, _, _ := n.exec("iptables-save", "-t", "nat")
		for _, want := range []string{`"default/backend:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-`, "-d " + ip + "/32"} {
			if !strings.Contains(rules, want) {
				return fmt.Errorf("kube-proxy's rules lack %q", want)
			}
		}
		if n := strings.Count(rules, "-j KUBE-SEP-"); n < 3 {
			return fmt.Errorf("%d endpoint jumps, want the backend's 3 at least", n)
		}
		return nil
	})
	out, _, err := n.exec("curl", "-sS", "-m", "2", "http://127.0.0.1:10256/healthz")
	if err != nil || !strings.Contains(out, `"lastUpdated"`) {
		t.Errorf("kube-proxy healthz: %v %s", err, out)
	}
	events, _, _ := n.exec("kubectl", "get", "events.v1.events.k8s.io", "-A", "-o", "jsonpath={.items[*].reportingController}")
	if !strings.Contains(events, "kube-proxy") {
		t.Errorf("no event from kube-proxy: %q", events)
	}
	log, _ := os.ReadFile(n.coreDNSLog)
	apiError := regexp.MustCompile(`(?i)failed to (list|watch)|Unhandled Error|is forbidden|could not find the requested resource|field label not supported|server rejected event`)
	if m := apiError.FindAll(log, -1); len(m) > 0 {
		t.Errorf("kube-proxy's log has %d API errors, e.g. %q:\n%s", len(m), m[0], lastLines(log, 40))
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// toolBinary finds a real client `make tools` installs into /var/cache/minicluster-tools,
// running it (go install, pinned) when the client is missing.
func toolBinary(t testing.TB, name string) string {
	p := filepath.Join("/var/cache/minicluster-tools", name)
	if _, err := os.Stat(p); err != nil { // built as make tools builds it, at its pinned version
		if out, err := exec.Command("make", "-C", "..", "tools").CombinedOutput(); err != nil {
			t.Fatalf("%s is not installed and make tools failed: %v\n%s", p, err, out)
		}
	}
	return p
}

// startCoreDNS runs the real CoreDNS (make tools installs it) in the node's netns on
// addr (ip:port) with the kubernetes plugin on the daemon's kubeconfig, configured as
// kubeadm's Corefile configures it, forwarding other names to upstream (none: no
// forward plugin); its log is at n.coreDNSLog.
func (n *node) startCoreDNS(t testing.TB, addr, upstream string) {
	coredns := toolBinary(t, "coredns")
	host, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	corefile := filepath.Join(dir, "Corefile")
	forward := ""
	if upstream != "" {
		forward = "forward . " + upstream
	}
	os.WriteFile(corefile, []byte(`.:`+port+` {
    bind `+host+`
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig `+filepath.Join(n.dataDir, "kubeconfig")+` minicluster
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    `+forward+`
}
`), 0o644)
	n.coreDNSLog = filepath.Join(dir, "coredns.log")
	logFile, err := os.Create(n.coreDNSLog)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.netns, coredns, "-conf", corefile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		logFile.Close()
	})
}

// The real CoreDNS (its kubernetes plugin, client-go's watch-list) syncs from
// minicluster's API with no API error, follows changes, and answers service names as
// minicluster's own DNS does.
func TestRealCoreDNS(t *testing.T) {
	n := newNode(t)
	n.start()
	ip := n.applyBackend(t, 2)
	n.startCoreDNS(t, "127.0.0.53:1053", "")
	dig := func(server, port, name, typ string) string {
		out, _, _ := n.exec("dig", "@"+server, "-p", port, "+short", "+time=1", "+tries=1", name, typ)
		return strings.TrimSpace(out)
	}
	eventually(t, 30*time.Second, func() error {
		if got := dig("127.0.0.53", "1053", "backend.default.svc.cluster.local", "A"); got != ip {
			return fmt.Errorf("CoreDNS: backend is %q, want %s", got, ip)
		}
		return nil
	})
	// A change reaches it through its watches.
	kubectl := n.kubectlFor(t)
	kubectl("create", "service", "clusterip", "late", "--tcp=80:8080")
	late := n.clusterIP(t, "late")
	eventually(t, 10*time.Second, func() error {
		if got := dig("127.0.0.53", "1053", "late.default.svc.cluster.local", "A"); got != late {
			return fmt.Errorf("CoreDNS: late is %q, want %s", got, late)
		}
		return nil
	})
	for _, q := range []struct{ name, typ string }{
		{"backend.default.svc.cluster.local", "A"}, {"kubernetes.default.svc.cluster.local", "A"},
		{"_http._tcp.backend.default.svc.cluster.local", "SRV"}, {"late.default.svc.cluster.local", "A"},
	} {
		if ours, theirs := dig("10.244.0.1", "53", q.name, q.typ), dig("127.0.0.53", "1053", q.name, q.typ); ours != theirs || ours == "" {
			t.Errorf("%s %s: minicluster %q, CoreDNS %q", q.name, q.typ, ours, theirs)
		}
	}
	log, _ := os.ReadFile(n.coreDNSLog)
	apiError := regexp.MustCompile(`(?i)failed to (list|watch)|Unhandled Error|is forbidden|could not find the requested resource|field label not supported|Unauthorized`)
	if m := apiError.FindAll(log, -1); len(m) > 0 {
		t.Errorf("CoreDNS's log has %d API errors, e.g. %q:\n%s", len(m), m[0], lastLines(log, 40))
	}
}
