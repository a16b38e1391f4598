//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Pod egress beyond the pod CIDR leaves with the node's address. "Outside" is a netns
// this test creates, wired to the node's netns by a veth pair (TEST-NET-2 addresses).
func TestPodEgressMasquerade(t *testing.T) {
	n := newNode(t)
	n.start()
	ext := "mcext-" + n.instance
	mustRun(t, "ip", "netns", "add", ext)
	t.Cleanup(func() { osexec.Command("ip", "netns", "del", ext).Run() })
	mustRun(t, "ip", "-n", n.netns, "link", "add", "x"+n.instance, "type", "veth", "peer", "name", "eth0", "netns", ext)
	mustRun(t, "ip", "-n", n.netns, "addr", "add", "198.51.100.1/24", "dev", "x"+n.instance)
	mustRun(t, "ip", "-n", n.netns, "link", "set", "x"+n.instance, "up")
	mustRun(t, "ip", "-n", ext, "addr", "add", "198.51.100.2/24", "dev", "eth0")
	mustRun(t, "ip", "-n", ext, "link", "set", "eth0", "up")
	mustRun(t, "ip", "-n", ext, "link", "set", "lo", "up")
	server := osexec.Command("ip", "netns", "exec", ext, binary, "agnhost", "netexec", "--http-port=8080", "--udp-port=-1")
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Process.Signal(syscall.SIGTERM); server.Wait() })

	manifest := t.TempDir() + "/pod.yaml"
	os.WriteFile(manifest, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: client, labels: {app: client}}\nspec:\n  containers:\n"+
		"  - {name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [netexec, --http-port=8080]}\n"), 0o600)
	if _, errOut, err := n.cli("apply", "-f", manifest); err != nil {
		t.Fatal(errOut)
	}
	var podIP string
	eventually(t, 15*time.Second, func() error {
		ps := n.podStatuses(t, "app=client")
		if len(ps) != 1 || !ps[0].Ready {
			return fmt.Errorf("%+v", ps)
		}
		podIP = ps[0].IP
		_, err := n.curlPod(podIP, "/healthz")
		return err
	})
	eventually(t, 10*time.Second, func() error {
		out, err := n.curlPod(podIP, "/shell?cmd=busybox%20wget%20-qO-%20http://198.51.100.2:8080/clientip")
		var reply struct{ Output string }
		json.Unmarshal([]byte(out), &reply)
		if err != nil || !strings.HasPrefix(reply.Output, "198.51.100.1:") {
			return fmt.Errorf("the outside saw %q (%v), want the node's 198.51.100.1", reply.Output, err)
		}
		return nil
	})
}
