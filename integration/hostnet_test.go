//go:build integration

package integration

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A hostNetwork pod runs in the node's network with the node's address and hostname,
// and survives a daemon restart; a hostPort of a pod-network pod is reachable at the
// node's address (DNAT, as the portmap plugin does) until the pod goes.
func TestHostNetworkAndHostPort(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("run", "hostnet", "--image=registry.k8s.io/e2e-test-images/agnhost:2.53", "--port=9376",
		"--overrides", `{"spec":{"hostNetwork":true}}`, "--", "netexec", "--http-port=9376")
	kubectl("run", "hostport", "--image=registry.k8s.io/e2e-test-images/agnhost:2.53", "--overrides",
		`{"spec":{"containers":[{"name":"hostport","image":"registry.k8s.io/e2e-test-images/agnhost:2.53","args":["netexec","--http-port=8080"],`+
			`"ports":[{"containerPort":8080,"hostPort":30123}]}]}}`)
	kubectl("wait", "--for=condition=Ready", "pod/hostnet", "pod/hostport", "--timeout=60s")
	nodeIP := kubectl("get", "node", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
	if ip := kubectl("get", "pod", "hostnet", "-o", "jsonpath={.status.podIP}"); ip != nodeIP {
		t.Errorf("hostNetwork pod IP %s, node %s", ip, nodeIP)
	}
	if got := kubectl("get", "pod", "hostnet", "-o", "jsonpath={.spec.containers[0].ports[0].hostPort}"); got != "9376" {
		t.Errorf("hostPort of a hostNetwork pod defaulted to %q", got)
	}
	host, _ := os.Hostname()
	get := func(url string) (string, error) {
		out, errOut, err := n.exec("curl", "-s", "-m", "3", url)
		if err != nil {
			return "", fmt.Errorf("%v %s", err, errOut)
		}
		return out, nil
	}
	if out, err := get("http://" + nodeIP + ":9376/hostname"); err != nil || out != host {
		t.Errorf("hostNetwork pod at the node's address: %q %v (want the node's hostname %q)", out, err, host)
	}
	if out, err := get("http://" + nodeIP + ":30123/hostname"); err != nil || out != "hostport" {
		t.Errorf("hostPort at the node's address: %q %v", out, err)
	}
	started := kubectl("get", "pod", "hostnet", "-o", "jsonpath={.status.containerStatuses[0].state.running.startedAt}")
	if err := n.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n.start()
	kubectl("wait", "--for=condition=Ready", "pod/hostnet", "--timeout=60s")
	if now := kubectl("get", "pod", "hostnet", "-o", "jsonpath={.status.containerStatuses[0].state.running.startedAt}"); now != started {
		t.Errorf("the hostNetwork pod was restarted with the daemon: %s, then %s", started, now)
	}
	eventually(t, 10*time.Second, func() error {
		if out, err := get("http://" + nodeIP + ":30123/hostname"); err != nil || out != "hostport" {
			return fmt.Errorf("hostPort after a restart: %q %v", out, err)
		}
		return nil
	})
	kubectl("delete", "pod", "hostport", "--grace-period=1")
	if out, _, _ := n.exec("nft", "list", "chain", "ip", n.instance+"_node", "hostports"); strings.Contains(out, "dnat") {
		t.Errorf("the deleted pod's hostPort is still forwarded:\n%s", out)
	}
}
