//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// podStatus is the part of a pod's status these tests read.
type podStatus struct {
	Name, Phase, IP string
	Ready           bool
	Restarts        int
	LastExit        int
	Waiting         string
}

func (n *node) podStatuses(t testing.TB, selector string) []podStatus {
	t.Helper()
	out, errOut, err := n.cli("get", "pods", "-l", selector, "-o", "json")
	if err != nil {
		t.Fatalf("get pods: %v %s", err, errOut)
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Status   struct {
				Phase, PodIP      string
				ContainerStatuses []struct {
					Ready        bool
					RestartCount int
					State        struct{ Waiting *struct{ Reason string } }
					LastState    struct{ Terminated *struct{ ExitCode int } }
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	var res []podStatus
	for _, it := range list.Items {
		ps := podStatus{Name: it.Metadata.Name, Phase: it.Status.Phase, IP: it.Status.PodIP}
		if cs := it.Status.ContainerStatuses; len(cs) > 0 {
			ps.Ready, ps.Restarts = cs[0].Ready, cs[0].RestartCount
			if w := cs[0].State.Waiting; w != nil {
				ps.Waiting = w.Reason
			}
			if lt := cs[0].LastState.Terminated; lt != nil {
				ps.LastExit = lt.ExitCode
			}
		}
		res = append(res, ps)
	}
	return res
}

// shims counts this node's container shim processes.
func (n *node) shims() int {
	count := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), "shim\x00"+n.dataDir) {
			count++
		}
	}
	return count
}

// curlPod fetches path from a pod, from the node's netns (never an outside address).
func (n *node) curlPod(ip, path string) (string, error) {
	out, _, err := n.exec("curl", "-sS", "-m", "3", "-G", "http://"+ip+":8080"+path)
	return out, err
}

func TestPodProcesses(t *testing.T) {
	n := newNode(t)
	n.start()
	if _, errOut, err := n.cli("apply", "-f", "../manifests/backend.yaml"); err != nil {
		t.Fatal(errOut)
	}
	var pods []podStatus
	eventually(t, 20*time.Second, func() error {
		pods = n.podStatuses(t, "app=backend")
		ready := 0
		for _, p := range pods {
			if p.Phase == "Running" && p.Ready {
				ready++
			}
		}
		if ready != 3 || len(pods) != 3 {
			return fmt.Errorf("%d of %d pods running and ready: %+v", ready, len(pods), pods)
		}
		return nil
	})
	// Ready comes with the process start (no readiness probes yet): wait for the servers.
	eventually(t, 10*time.Second, func() error {
		for _, p := range pods {
			if got, err := n.curlPod(p.IP, "/hostname"); err != nil || got != p.Name {
				return fmt.Errorf("pod %s at %s answers %q (%v)", p.Name, p.IP, got, err)
			}
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error {
		if out, _, err := n.exec("kubectl", "get", "deployment", "backend"); err != nil || !strings.Contains(out, "3/3") {
			return fmt.Errorf("deployment not available:\n%s", out)
		}
		return nil
	})
	// Inside the container: the pod's DNS settings and hostname; the API token is out of reach.
	out, err := n.curlPod(pods[0].IP, "/shell?cmd=cat%20/etc/resolv.conf%3Bhostname%3Bcat%20"+filepath.Join(n.dataDir, "token"))
	var shell struct{ Output string }
	json.Unmarshal([]byte(out), &shell)
	if err != nil || !strings.Contains(shell.Output, "search default.svc.cluster.local") || !strings.Contains(shell.Output, pods[0].Name) ||
		strings.Contains(shell.Output, n.token(t)) {
		t.Errorf("container view: %v\n%s", err, shell.Output)
	}

	// Pod to pod over HTTP by IP, from inside a container.
	out, err = n.curlPod(pods[0].IP, "/shell?cmd=busybox%20wget%20-qO-%20http://"+pods[1].IP+":8080/hostname")
	shell.Output = ""
	json.Unmarshal([]byte(out), &shell)
	if err != nil || shell.Output != pods[1].Name {
		t.Errorf("pod %s → %s over HTTP: %q (%v)", pods[0].Name, pods[1].Name, shell.Output, err)
	}

	// Killing a container's process (SIGKILL, from inside: the shell's parent is the
	// container's process) restarts it.
	n.curlPod(pods[2].IP, "/shell?cmd=kill%20-9%20%24PPID")
	eventually(t, 20*time.Second, func() error {
		for _, p := range n.podStatuses(t, "app=backend") {
			if p.Name == pods[2].Name && p.Restarts == 1 && p.Ready {
				return nil
			}
		}
		return fmt.Errorf("pod %s not restarted after kill -9", pods[2].Name)
	})

	// A container that exits is restarted; its last exit code is reported.
	if _, err := n.curlPod(pods[0].IP, "/exit?code=3"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		for _, p := range n.podStatuses(t, "app=backend") {
			if p.Name == pods[0].Name && p.Restarts == 1 && p.LastExit == 3 && p.Ready {
				return nil
			}
		}
		return fmt.Errorf("pod %s not restarted yet", pods[0].Name)
	})

	// kill -9 of the daemon: pods keep serving, and after the restart nothing is started twice.
	pods = n.podStatuses(t, "app=backend")
	n.stop(syscall.SIGKILL)
	for _, p := range pods {
		if got, err := n.curlPod(p.IP, "/hostname"); err != nil || got != p.Name {
			t.Errorf("while the daemon is down, %s answers %q (%v)", p.Name, got, err)
		}
	}
	n.start()
	eventually(t, 10*time.Second, func() error {
		after := n.podStatuses(t, "app=backend")
		if _, err := n.curlPod(after[0].IP, "/hostname"); err != nil {
			return err
		}
		if fmt.Sprint(after) != fmt.Sprint(pods) {
			return fmt.Errorf("after restart %+v, before %+v", after, pods)
		}
		if got := n.shims(); got != 3 {
			return fmt.Errorf("%d shims, want 3", got)
		}
		return nil
	})

	// An image that is not here and cannot be pulled (no network in the test's netns)
	// waits, as the kubelet reports it.
	manifest := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(manifest, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: nope, labels: {app: nope}}\nspec:\n  containers: [{name: c, image: ghcr.io/acme/nope:1}]\n"), 0o600)
	if _, errOut, err := n.cli("apply", "-f", manifest); err != nil {
		t.Fatal(errOut)
	}
	eventually(t, 10*time.Second, func() error {
		ps := n.podStatuses(t, "app=nope")
		if len(ps) != 1 || (ps[0].Waiting != "ErrImagePull" && ps[0].Waiting != "ImagePullBackOff") || ps[0].Phase != "Pending" {
			return fmt.Errorf("%+v", ps)
		}
		return nil
	})

	// Deleting everything stops every process and leaves no netns.
	for _, args := range [][]string{{"delete", "deployment", "backend"}, {"delete", "pod", "nope"}} {
		if _, errOut, err := n.exec("kubectl", args...); err != nil {
			t.Fatal(errOut)
		}
	}
	eventually(t, 20*time.Second, func() error {
		if s, ns := n.shims(), n.podNetns(); s != 0 || len(ns) != 0 {
			return fmt.Errorf("%d shims and netns %v left", s, ns)
		}
		return nil
	})
}

// $(VAR) in command and args is expanded from the container's environment and $$ is
// a literal $, as the kubelet does (the example).
func TestCommandExpansion(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("run", "expand", "--image=busybox", "--restart=Never", "--env=MYVAR=expanded", "--", "sh", "-c", `echo "A=$$(echo hi) B=$(MYVAR)"`)
	eventually(t, 30*time.Second, func() error {
		if phase := kubectl("get", "pod", "expand", "-o", "jsonpath={.status.phase}"); phase != "Succeeded" {
			return fmt.Errorf("phase %q", phase)
		}
		return nil
	})
	if out := strings.TrimSpace(kubectl("logs", "expand")); out != "A=hi B=expanded" {
		t.Errorf("output %q, want %q", out, "A=hi B=expanded")
	}
}

// Issue 19 (5): the daemon's data dir (token, API socket, CA key) is not in a
// container's view at all. Before it was an empty tmpfs over the host's directory, which
// a container with CAP_SYS_ADMIN unmounted to read the token. The data dir here is
// under /var/tmp, inside a host directory containers see as an overlay (not under /tmp,
// which containers get empty). A container without securityContext has Docker's
// default capabilities, so cannot unmount anything either.
func TestPodsCannotSeeTheDataDir(t *testing.T) {
	n := newNode(t)
	dir, err := os.MkdirTemp("/var/tmp", "mcit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n.dataDir = dir // 0700, as MkdirTemp makes it
	n.start()
	kubectl := n.kubectlFor(t)
	manifest := filepath.Join(t.TempDir(), "pods.yaml")
	os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Pod
metadata: {name: root}
spec:
  containers:
  - {name: c, image: busybox, command: [sleep, "3600"], securityContext: {privileged: true}}
---
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  containers:
  - {name: c, image: busybox, command: [sleep, "3600"]}
`), 0o600)
	kubectl("create", "-f", manifest)
	kubectl("wait", "--for=condition=Ready", "pod/root", "pod/plain", "--timeout=60s")
	token := n.token(t)
	for _, pod := range []string{"root", "plain"} {
		out, errOut, _ := n.exec("kubectl", "exec", pod, "--", "sh", "-c",
			"umount "+dir+"; umount "+filepath.Dir(dir)+"; ls -a "+dir+"; cat "+dir+"/token; ls "+filepath.Dir(dir))
		if strings.Contains(out+errOut, token) || strings.Contains(out, filepath.Base(dir)) {
			t.Errorf("pod %s sees the data dir:\n%s%s", pod, out, errOut)
		}
		if !strings.Contains(errOut, "No such file or directory") {
			t.Errorf("pod %s: want the data dir absent:\n%s%s", pod, out, errOut)
		}
	}
	caps, _, err := n.exec("kubectl", "exec", "plain", "--", "grep", "CapEff", "/proc/self/status")
	if err != nil || !strings.Contains(caps, "00000000a80425fb") {
		t.Errorf("a container without securityContext has capabilities %q (%v), want Docker's default set a80425fb", caps, err)
	}
}
