//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostnames sends n requests from the node to url and counts the answers by pod.
// applyBackend applies manifests/backend.yaml and waits until 10 requests to its
// ClusterIP reach at least pods of its pods; it returns the ClusterIP.
func (n *node) applyBackend(t *testing.T, pods int) string {
	t.Helper()
	if _, errOut, err := n.cli("apply", "-f", "../manifests/backend.yaml"); err != nil {
		t.Fatal(errOut)
	}
	ip := n.clusterIP(t, "backend")
	eventually(t, 30*time.Second, func() error {
		if seen := n.hostnames(t, 10, "http://"+ip+"/hostname"); len(seen) < pods {
			return fmt.Errorf("10 requests reached %v", seen)
		}
		return nil
	})
	return ip
}

func (n *node) hostnames(t *testing.T, count int, target string) map[string]int {
	seen := map[string]int{}
	for range count {
		if out, _, err := n.exec("curl", "-sS", "-m", "2", target); err == nil {
			seen[out]++
		}
	}
	return seen
}

func (n *node) clusterIP(t *testing.T, svc string) string {
	ip, errOut, err := n.exec("kubectl", "get", "svc", svc, "-o", "jsonpath={.spec.clusterIP}")
	if err != nil || ip == "" {
		t.Fatalf("clusterIP of %s: %q %s", svc, ip, errOut)
	}
	return ip
}

// podShell runs a shell command inside a pod's container through agnhost netexec.
func (n *node) podShell(ip, cmd string) (string, error) {
	out, err := n.curlPod(ip, "/shell?cmd="+url.QueryEscape(cmd))
	var reply struct{ Output, Error string }
	json.Unmarshal([]byte(out), &reply)
	if err == nil && reply.Error != "" {
		err = fmt.Errorf("%s: %s", reply.Error, reply.Output)
	}
	return reply.Output, err
}

func TestServiceKinds(t *testing.T) { proxyModes(t, testServiceKinds) }

func testServiceKinds(t *testing.T, n *node) {
	if _, errOut, err := n.cli("apply", "-f", "testdata/services.yaml"); err != nil {
		t.Fatal(errOut)
	}
	echo, sticky := n.clusterIP(t, "echo"), n.clusterIP(t, "sticky")
	eventually(t, 30*time.Second, func() error {
		if seen := n.hostnames(t, 20, "http://"+echo+"/hostname"); len(seen) != 2 {
			return fmt.Errorf("20 requests reached %v, want both pods", seen)
		}
		return nil
	})
	pods := n.podStatuses(t, "app=echo")
	byName := map[string]string{}
	for _, p := range pods {
		byName[p.Name] = p.IP
	}

	t.Run("NodePort on the node's address", func(t *testing.T) {
		// The bridge address is one of the node's; from the node and from a pod.
		if seen := n.hostnames(t, 20, "http://10.244.0.1:30080/hostname"); len(seen) != 2 {
			t.Errorf("NodePort from the node reached %v", seen)
		}
		out, err := n.podShell(pods[0].IP, "busybox wget -qO- http://10.244.0.1:30080/hostname")
		if _, ok := byName[out]; err != nil || !ok {
			t.Errorf("NodePort from a pod: %q %v", out, err)
		}
	})

	t.Run("hairpin", func(t *testing.T) {
		// A pod reaches itself through its own service (about half the time).
		self := pods[0]
		eventually(t, 10*time.Second, func() error {
			out, err := n.podShell(self.IP, "busybox wget -qO- http://"+echo+"/hostname")
			if err != nil || out != self.Name {
				return fmt.Errorf("got %q (%v), want the pod itself, %s", out, err, self.Name)
			}
			return nil
		})
	})

	t.Run("session affinity sticks", func(t *testing.T) {
		if seen := n.hostnames(t, 15, "http://"+sticky+"/hostname"); len(seen) != 1 {
			t.Errorf("15 requests to a ClientIP-affinity service reached %v, want one pod", seen)
		}
	})

	t.Run("UDP follows a replaced pod", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// One socket: the same source port throughout, as a resolver would keep.
		c, err := n.dialInNetns(ctx, "udp", echo+":53")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ask := func() string {
			c.SetDeadline(time.Now().Add(300 * time.Millisecond))
			if _, err := c.Write([]byte("hostname")); err != nil {
				return ""
			}
			buf := make([]byte, 256)
			k, _ := c.Read(buf)
			return string(buf[:k])
		}
		var first string
		eventually(t, 10*time.Second, func() error {
			if first = ask(); byName[first] == "" {
				return fmt.Errorf("UDP answer %q", first)
			}
			return nil
		})
		if _, errOut, err := n.exec("kubectl", "delete", "pod", first, "--wait=false"); err != nil {
			t.Fatal(errOut)
		}
		eventually(t, 20*time.Second, func() error {
			if got := ask(); got == "" || got == first {
				return fmt.Errorf("UDP from the same source port answered by %q after %s was deleted", got, first)
			}
			return nil
		})
	})

	t.Run("a pod failing readiness leaves the rotation", func(t *testing.T) {
		var live []podStatus
		eventually(t, 30*time.Second, func() error {
			live = nil
			for _, p := range n.podStatuses(t, "app=echo") {
				if p.Ready {
					live = append(live, p)
				}
			}
			if len(live) != 2 {
				return fmt.Errorf("%d ready pods, want 2", len(live))
			}
			return nil
		})
		if _, err := n.podShell(live[0].IP, "touch /tmp/unready"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, func() error {
			if seen := n.hostnames(t, 20, "http://"+echo+"/hostname"); len(seen) != 1 || seen[live[1].Name] != 20 {
				return fmt.Errorf("with %s unready, 20 requests reached %v", live[0].Name, seen)
			}
			return nil
		})
		if _, err := n.podShell(live[0].IP, "rm /tmp/unready"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, func() error {
			if seen := n.hostnames(t, 20, "http://"+echo+"/hostname"); len(seen) != 2 {
				return fmt.Errorf("ready again, yet 20 requests reached %v", seen)
			}
			return nil
		})
	})
}

// Rules stay (and route) when the daemon is gone; cleanup then leaves no rule at all.
func TestProxyRulesOutliveDaemonAndCleanup(t *testing.T) { proxyModes(t, testRulesOutliveDaemon) }

func testRulesOutliveDaemon(t *testing.T, n *node) {
	ip := n.applyBackend(t, 2)
	n.stop(9)
	if seen := n.hostnames(t, 10, "http://"+ip+"/hostname"); len(seen) < 2 {
		t.Errorf("with the daemon gone, requests reached %v", seen)
	}
	if out, err := exec.Command("ip", "netns", "exec", n.netns, binary, "cleanup", "--instance", n.instance, "--data-dir", n.dataDir).CombinedOutput(); err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	ruleset, _, err := n.exec("nft", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(ruleset, "\n") {
		l := strings.TrimSpace(line)
		switch {
		case l == "", l == "}", strings.HasPrefix(l, "table "), strings.HasPrefix(l, "chain "), strings.HasPrefix(l, "type "):
			if strings.Contains(l, n.instance) || strings.Contains(l, strings.ToUpper(n.instance)) {
				t.Errorf("cleanup left %q", l)
			}
		default:
			t.Errorf("cleanup left a rule: %q\n%s", l, ruleset)
		}
	}
	if out, _, _ := n.exec("ip", "route", "show", "10.96.0.0/12"); out != "" {
		t.Errorf("cleanup left the service route: %s", out)
	}
}

// Rules flushed behind the daemon's back come back within the sync period, and the
// log says so; /metrics shows the syncs.
func TestProxyRepairsFlushedRules(t *testing.T) {
	proxyModes(t, testRepair, "--proxy-sync-period", "1s")
}

func testRepair(t *testing.T, n *node) {
	ip := n.applyBackend(t, 1)
	if n.proxyMode() == "nftables" {
		mustRun(t, "ip", "netns", "exec", n.netns, "nft", "flush", "table", "ip", n.instance+"_proxy")
	} else {
		mustRun(t, "ip", "netns", "exec", n.netns, "iptables", "-t", "nat", "-F")
	}
	if _, errOut, err := n.exec("curl", "-sS", "-m", "1", "http://"+ip+"/hostname"); err == nil {
		t.Fatalf("flushing the rules did not break routing (%s)", errOut)
	}
	start := time.Now()
	eventually(t, 5*time.Second, func() error {
		_, _, err := n.exec("curl", "-sS", "-m", "1", "http://"+ip+"/hostname")
		return err
	})
	t.Logf("repaired %s after the flush", time.Since(start).Round(time.Millisecond))
	if log, _ := os.ReadFile(n.logPath); !strings.Contains(string(log), "proxy rules missing from the kernel; repairing") {
		t.Errorf("no log line about the repair:\n%s", log)
	}
	metrics, errOut, err := n.exec("curl", "-sS", "--unix-socket", n.socket(), "http://localhost/metrics")
	if err != nil {
		t.Fatal(errOut)
	}
	for _, want := range []string{"kubeproxy_sync_full_proxy_rules_duration_seconds_count", "kubeproxy_sync_partial_proxy_rules_duration_seconds_count",
		"kubeproxy_network_programming_duration_seconds_bucket", "minicluster_proxy_rules{mode="} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(metrics, `kubeproxy_sync_full_proxy_rules_duration_seconds_count{mode=`) {
		t.Error("no full sync counted")
	}
}

// Issue 19 (4): started in the other proxy mode, the daemon removes the rules the
// earlier mode left (they went on DNAT-ing to gone pods), and serves in the new one.
func TestProxyModeChangeLeavesNoOldRules(t *testing.T) {
	n := newNode(t)
	n.start("--proxy-mode", "nftables")
	ip := n.applyBackend(t, 2)
	n.stop(syscall.SIGTERM)
	n.start("--proxy-mode", "iptables")
	eventually(t, 20*time.Second, func() error {
		if out, _, _ := n.exec("nft", "list", "tables"); strings.Contains(out, n.instance+"_proxy") {
			return fmt.Errorf("the nftables mode's table is still there:\n%s", out)
		}
		return nil
	})
	if seen := n.hostnames(t, 10, "http://"+ip+"/hostname"); len(seen) < 2 {
		t.Errorf("in iptables mode, requests reached %v", seen)
	}
	n.stop(syscall.SIGTERM)
	n.start("--proxy-mode", "nftables")
	eventually(t, 20*time.Second, func() error {
		if out, _, _ := n.exec("iptables-save", "-t", "nat"); strings.Contains(out, strings.ToUpper(n.instance)) {
			return fmt.Errorf("the iptables mode's chains are still there:\n%s", out)
		}
		return nil
	})
	if seen := n.hostnames(t, 10, "http://"+ip+"/hostname"); len(seen) < 2 {
		t.Errorf("in nftables mode, requests reached %v", seen)
	}
}

// Issue 19 (2): a service whose externalIP is another service's ClusterIP. The
// ClusterIP's own service keeps its traffic; with it deleted the other takes the
// address, and it wins it back when made again — every sync succeeding (the harness
// fails a test whose daemon logged a failed sync; before, every sync after the delete
// failed in nftables mode).
func TestExternalIPOnAnotherClusterIP(t *testing.T) { proxyModes(t, testExternalIPOnClusterIP) }

func testExternalIPOnClusterIP(t *testing.T, n *node) {
	ip := n.applyBackend(t, 3)
	kubectl := n.kubectlFor(t)
	kubectl("run", "other", "--image=registry.k8s.io/e2e-test-images/agnhost:2.53", "--labels=app=other", "--", "netexec", "--http-port=8080")
	kubectl("create", "service", "clusterip", "hijack", "--tcp=80:8080")
	kubectl("patch", "service", "hijack", "-p", `{"spec":{"selector":{"app":"other"},"externalIPs":["`+ip+`"]}}`)
	kubectl("wait", "--for=condition=Ready", "pod/other", "--timeout=60s")
	hijack := n.clusterIP(t, "hijack")
	eventually(t, 20*time.Second, func() error {
		if seen := n.hostnames(t, 3, "http://"+hijack+"/hostname"); seen["other"] != 3 {
			return fmt.Errorf("the hijack service's own ClusterIP reached %v", seen)
		}
		return nil
	})
	backendOnly := func(what string) {
		t.Helper()
		if seen := n.hostnames(t, 20, "http://"+ip+"/hostname"); seen["other"] > 0 || len(seen) != 3 {
			t.Errorf("%s: the backend ClusterIP reached %v, want the 3 backend pods only", what, seen)
		}
	}
	backendOnly("both services")
	backendSvc := kubectl("get", "service", "backend", "-o", "json")
	kubectl("delete", "service", "backend")
	eventually(t, 20*time.Second, func() error {
		if seen := n.hostnames(t, 3, "http://"+ip+"/hostname"); seen["other"] != 3 {
			return fmt.Errorf("with the backend service deleted, its address reached %v", seen)
		}
		return nil
	})
	// Made again with the same ClusterIP: it wins the address back.
	var obj map[string]any
	if err := json.Unmarshal([]byte(backendSvc), &obj); err != nil {
		t.Fatal(err)
	}
	meta := obj["metadata"].(map[string]any)
	obj["metadata"] = map[string]any{"name": meta["name"], "namespace": meta["namespace"]}
	delete(obj, "status")
	manifest := filepath.Join(t.TempDir(), "backend.json")
	data, _ := json.Marshal(obj)
	if err := os.WriteFile(manifest, data, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectl("create", "-f", manifest)
	eventually(t, 20*time.Second, func() error {
		if seen := n.hostnames(t, 10, "http://"+ip+"/hostname"); seen["other"] > 0 || len(seen) != 3 {
			return fmt.Errorf("the backend service made again: its address reached %v", seen)
		}
		return nil
	})
	kubectl("delete", "service", "hijack")
	eventually(t, 20*time.Second, func() error {
		if seen := n.hostnames(t, 3, "http://"+hijack+"/hostname"); len(seen) > 0 {
			return fmt.Errorf("the deleted hijack service's ClusterIP still answers: %v", seen)
		}
		return nil
	})
	backendOnly("the hijack service deleted")
}

// Issue 19 (9): one service's element deleted from the nftables map (or its rule from
// the iptables chain) behind the daemon's back is found by the drift check and put back.
func TestProxyRepairsOneDeletedElement(t *testing.T) {
	proxyModes(t, testRepairElement, "--proxy-sync-period", "1s")
}

func testRepairElement(t *testing.T, n *node) {
	ip := n.applyBackend(t, 1)
	if n.proxyMode() == "nftables" {
		mustRun(t, "ip", "netns", "exec", n.netns, "nft", "delete", "element", "ip", n.instance+"_proxy", "service-ips", "{ "+ip+" . tcp . 80 }")
	} else {
		chain := strings.ToUpper(n.instance) + "-CLUSTER"
		rules := mustRun(t, "ip", "netns", "exec", n.netns, "iptables", "-t", "nat", "-S", chain)
		var rule string
		for line := range strings.Lines(rules) {
			if strings.Contains(line, ip+"/32") {
				rule = strings.TrimSpace(strings.TrimPrefix(line, "-A "+chain+" "))
			}
		}
		if rule == "" {
			t.Fatalf("no rule for %s in %s:\n%s", ip, chain, rules)
		}
		mustRun(t, "sh", "-c", "ip netns exec "+n.netns+" iptables -t nat -D "+chain+" "+rule)
	}
	if _, _, err := n.exec("curl", "-sS", "-m", "1", "http://"+ip+"/hostname"); err == nil {
		t.Fatal("deleting the element did not break routing")
	}
	start := time.Now()
	eventually(t, 5*time.Second, func() error {
		_, _, err := n.exec("curl", "-sS", "-m", "1", "http://"+ip+"/hostname")
		return err
	})
	t.Logf("%s: repaired %s after the deletion", n.proxyMode(), time.Since(start).Round(time.Millisecond))
}
