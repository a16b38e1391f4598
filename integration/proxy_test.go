//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// ClusterIP traffic reaches a random ready pod, from the node and from a pod; a service
// without endpoints refuses at once.
// proxyModes runs a test once per proxy mode.
func proxyModes(t *testing.T, test func(t *testing.T, n *node), flags ...string) {
	for _, mode := range []string{"iptables", "nftables"} {
		t.Run(mode, func(t *testing.T) {
			n := newNode(t)
			n.start(append([]string{"--proxy-mode", mode}, flags...)...)
			test(t, n)
		})
	}
}

// proxyMode is the --proxy-mode the daemon was started with.
func (n *node) proxyMode() string {
	if i := slices.Index(n.cmd.Args, "--proxy-mode"); i >= 0 && i+1 < len(n.cmd.Args) {
		return n.cmd.Args[i+1]
	}
	return "iptables"
}

func TestClusterIPRouting(t *testing.T) { proxyModes(t, testClusterIPRouting) }

func testClusterIPRouting(t *testing.T, n *node) {
	if _, errOut, err := n.cli("apply", "-f", "../manifests/backend.yaml"); err != nil {
		t.Fatal(errOut)
	}
	ip, _, err := n.exec("kubectl", "get", "svc", "backend", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil || ip == "" {
		t.Fatalf("clusterIP %q: %v", ip, err)
	}
	fromNode := func() map[string]int {
		seen := map[string]int{}
		for i := 0; i < 30; i++ {
			if out, _, err := n.exec("curl", "-sS", "-m", "2", "http://"+ip+"/hostname"); err == nil {
				seen[out]++
			}
		}
		return seen
	}
	eventually(t, 30*time.Second, func() error {
		if seen := fromNode(); len(seen) < 2 {
			return fmt.Errorf("30 requests from the node reached %v", seen)
		}
		return nil
	})
	// A port the service does not define: refused at once too (dropped would hang).
	start := time.Now()
	if _, errOut, err := n.exec("curl", "-sS", "-m", "3", "http://"+ip+":81/"); err == nil || !strings.Contains(errOut, "Couldn't connect") || time.Since(start) > 2*time.Second {
		t.Errorf("undefined port: err=%v %q after %s", err, errOut, time.Since(start))
	}
	// From a client pod: 30 requests reach at least two of the three pods.
	pods := n.podStatuses(t, "app=backend")
	cmd := "for i in $(seq 30); do busybox wget -qO- http://" + ip + "/hostname; echo; done"
	out, err := n.curlPod(pods[0].IP, "/shell?cmd="+url.QueryEscape(cmd))
	var reply struct{ Output string }
	json.Unmarshal([]byte(out), &reply)
	seen := map[string]int{}
	for _, h := range strings.Fields(reply.Output) {
		seen[h]++
	}
	if got := strings.Fields(reply.Output); err != nil || len(got) != 30 || len(seen) < 2 {
		t.Errorf("30 requests from a pod through the ClusterIP reached %v (%v)", seen, err)
	}
	// 3 → 1: only the survivor answers.
	if _, errOut, err := n.exec("kubectl", "scale", "deployment", "backend", "--replicas=1"); err != nil {
		t.Fatal(errOut)
	}
	eventually(t, 30*time.Second, func() error {
		if seen := n.hostnames(t, 10, "http://"+ip+"/hostname"); len(seen) != 1 {
			return fmt.Errorf("scaled to 1, requests reached %v", seen)
		}
		return nil
	})
	if _, errOut, err := n.exec("kubectl", "scale", "deployment", "backend", "--replicas=0"); err != nil {
		t.Fatal(errOut)
	}
	eventually(t, 30*time.Second, func() error {
		// A terminating pod refuses too, until its sandbox goes; the agent deletes the
		// pod after that, so once it is gone only the proxy can refuse.
		if out, errOut, err := n.exec("kubectl", "get", "pods", "-l", "app=backend", "-o", "name"); err != nil || out != "" {
			return fmt.Errorf("pods left: %q %q %v", out, errOut, err)
		}
		start := time.Now()
		_, errOut, err := n.exec("curl", "-sS", "-m", "3", "http://"+ip+"/hostname")
		if err == nil || !strings.Contains(errOut, "Couldn't connect") || time.Since(start) > time.Second {
			return fmt.Errorf("without endpoints: err=%v %q after %s, want refused at once", err, errOut, time.Since(start))
		}
		return nil
	})
	// A client refused now reuses its source port once the service has endpoints again:
	// conntrack must not keep that port on the refused path.
	const refusedPort = "40123"
	if _, errOut, err := n.exec("curl", "-sS", "-m", "3", "--local-port", refusedPort, "http://"+ip+"/hostname"); err == nil || !strings.Contains(errOut, "Couldn't connect") {
		t.Errorf("without endpoints, from port %s: err=%v %q, want refused", refusedPort, err, errOut)
	}
	// And back to 3.
	if _, errOut, err := n.exec("kubectl", "scale", "deployment", "backend", "--replicas=3"); err != nil {
		t.Fatal(errOut)
	}
	eventually(t, 30*time.Second, func() error {
		if seen := n.hostnames(t, 20, "http://"+ip+"/hostname"); len(seen) < 2 {
			return fmt.Errorf("scaled back to 3, requests reached %v", seen)
		}
		return nil
	})
	if out, errOut, err := n.exec("curl", "-sS", "-m", "3", "--local-port", refusedPort, "http://"+ip+"/hostname"); err != nil || out == "" {
		t.Errorf("from the source port refused while the service had no endpoints: %q %q %v", out, errOut, err)
	}
}
