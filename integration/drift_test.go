//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Drift repair: a pod's veth deleted, its netns removed, its container's process
// killed, each behind the daemon's back, is found and repaired within the agent's resync
// period (10 s), with a log line saying what was repaired. (The proxy's rules flushed:
// TestProxyRepairsFlushedRules.)
func TestDriftRepair(t *testing.T) {
	n := newNode(t)
	n.start()
	if _, errOut, err := n.cli("apply", "-f", "../manifests/backend.yaml"); err != nil {
		t.Fatal(errOut)
	}
	if _, errOut, err := n.exec("kubectl", "scale", "deployment", "backend", "--replicas=1"); err != nil {
		t.Fatal(errOut)
	}
	if _, errOut, err := n.exec("kubectl", "run", "sleeper", "--image=busybox:1.36", "--", "sleep", "3600"); err != nil {
		t.Fatal(errOut)
	}
	webPod := func() podStatus {
		var pod podStatus
		eventually(t, 30*time.Second, func() error {
			ps := n.podStatuses(t, "app=backend")
			if len(ps) != 1 || ps[0].Phase != "Running" || ps[0].IP == "" {
				return fmt.Errorf("backend pods: %v", ps)
			}
			pod = ps[0]
			if out, err := n.curlPod(pod.IP, "/hostname"); err != nil || out != pod.Name {
				return fmt.Errorf("backend pod answers %q %v", out, err)
			}
			return nil
		})
		return pod
	}
	logSays := func(what string) {
		t.Helper()
		eventually(t, 15*time.Second, func() error {
			if log, _ := os.ReadFile(n.logPath); !strings.Contains(string(log), what) {
				return fmt.Errorf("no %q in the daemon's log", what)
			}
			return nil
		})
	}
	pod := webPod()

	// The veths: every port of the bridge (the backend pod's and the sleeper's).
	out := mustRun(t, "ip", "-n", n.netns, "-o", "link", "show", "master", n.instance+"0")
	var veths []string
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 1 {
			veths = append(veths, strings.TrimSuffix(strings.Split(f[1], "@")[0], ":"))
		}
	}
	if len(veths) != 2 {
		t.Fatalf("bridge ports: %v", veths)
	}
	for _, v := range veths {
		mustRun(t, "ip", "-n", n.netns, "link", "del", v)
	}
	start := time.Now()
	logSays(`msg="repaired the pod's network"`)
	if again := webPod(); again.IP != pod.IP || again.Name != pod.Name {
		t.Errorf("after the veth: %+v, before %+v", again, pod)
	}
	t.Logf("veths deleted → pod answering again: %s", time.Since(start).Round(time.Millisecond))

	// The netns: a new sandbox, the container started again in it.
	mustRun(t, "ip", "netns", "del", n.instance+"_default_"+pod.Name)
	start = time.Now()
	logSays("the pod's network namespace was removed")
	webPod()
	if _, err := os.Stat("/run/netns/" + n.instance + "_default_" + pod.Name); err != nil {
		t.Errorf("netns not back: %v", err)
	}
	t.Logf("netns deleted → pod answering again: %s", time.Since(start).Round(time.Millisecond))

	// The container's process: restarted as its policy says, the restart counted.
	pids := strings.Fields(mustRun(t, "pgrep", "-f", "busybox sleep 3600$"))
	if len(pids) != 1 {
		t.Fatalf("sleeper processes: %v", pids)
	}
	mustRun(t, "kill", "-9", pids[0])
	eventually(t, 15*time.Second, func() error {
		ps := n.podStatuses(t, "run=sleeper")
		if len(ps) != 1 || ps[0].Phase != "Running" || ps[0].Restarts != 1 {
			return fmt.Errorf("sleeper: %+v", ps)
		}
		return nil
	})
	logSays(`container=sleeper argv="/usr/bin/busybox sleep 3600" restarts=1`)
}

// Issue 19 (3): the bridge deleted behind the daemon's back — the kernel takes every
// veth off it — is made again and the veths put back at once, and also when the daemon
// was down as it happened. Before, nothing noticed: pods Running, ClusterIPs dead.
func TestDeletedBridgeRepaired(t *testing.T) {
	n := newNode(t)
	n.start()
	ip := n.applyBackend(t, 3)
	bridge := n.instance + "0"
	repaired := func(within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		eventually(t, within, func() error {
			ports, err := exec.Command("ip", "-n", n.netns, "-o", "link", "show", "master", bridge).CombinedOutput()
			if c := strings.Count(string(ports), n.instance+"v"); err != nil || c != 3 {
				return fmt.Errorf("%d veths on the bridge", c)
			}
			if seen := n.hostnames(t, 10, "http://"+ip+"/hostname"); len(seen) < 3 {
				return fmt.Errorf("10 requests to the ClusterIP reached %v", seen)
			}
			return nil
		})
		return time.Since(start)
	}
	mustRun(t, "ip", "-n", n.netns, "link", "del", bridge)
	// Less than the agent's periodic look (10 s) and the proxy's check (30 s): the
	// kernel's word is acted on.
	t.Logf("bridge deleted → ClusterIP reaching all 3 pods again: %s", repaired(8*time.Second).Round(time.Millisecond))

	if err := n.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "ip", "-n", n.netns, "link", "del", bridge)
	start := time.Now()
	n.start()
	repaired(15 * time.Second)
	t.Logf("bridge deleted while the daemon was down → start → ClusterIP reaching all 3 pods: %s", time.Since(start).Round(time.Millisecond))
}
