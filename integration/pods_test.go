//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	osexec "os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

type podInfo struct{ name, ip, node string }

func (n *node) pods(t *testing.T) []podInfo {
	t.Helper()
	out, errOut, err := n.cli("get", "pods", "-o", "json")
	if err != nil {
		t.Fatalf("get pods: %v %s", err, errOut)
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct{ NodeName string }
			Status   struct{ PodIP string }
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	var pods []podInfo
	for _, it := range list.Items {
		pods = append(pods, podInfo{it.Metadata.Name, it.Status.PodIP, it.Spec.NodeName})
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].name < pods[j].name })
	return pods
}

// podNetns lists the instance's pod netns.
func (n *node) podNetns() []string {
	entries, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), n.instance+"_") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestPodNetworks(t *testing.T) {
	n := newNode(t)
	n.start()
	if out, errOut, err := n.exec("kubectl", "get", "nodes"); err != nil || !strings.Contains(out, " Ready ") {
		t.Fatalf("node not Ready: %v %s %s", err, out, errOut)
	}
	if _, errOut, err := n.cli("apply", "-f", "../manifests/backend.yaml"); err != nil {
		t.Fatal(errOut)
	}
	var pods []podInfo
	eventually(t, 15*time.Second, func() error {
		pods = n.pods(t)
		ips := map[string]bool{}
		for _, p := range pods {
			if p.ip == "" {
				return fmt.Errorf("pod %s has no IP yet", p.name)
			}
			ips[p.ip] = true
		}
		if len(pods) != 3 || len(ips) != 3 {
			return fmt.Errorf("%d pods with %d distinct IPs", len(pods), len(ips))
		}
		return nil
	})
	podCIDR := netip.MustParsePrefix("10.244.0.0/16")
	for _, p := range pods {
		if !podCIDR.Contains(netip.MustParseAddr(p.ip)) || p.node == "" {
			t.Errorf("pod %s: ip %s node %q", p.name, p.ip, p.node)
		}
		ns := n.instance + "_default_" + p.name
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err != nil {
			t.Fatalf("netns %s: %v", ns, err)
		}
	}
	// Pod to pod by IP, from inside the first pod's netns (busybox ping: real traffic
	// between namespaces this test created).
	first := n.instance + "_default_" + pods[0].name
	for _, p := range pods[1:] {
		if out, err := run(t, "ip", "netns", "exec", first, "busybox", "ping", "-c1", "-W2", p.ip); err != nil {
			t.Errorf("ping %s from %s: %v\n%s", p.ip, pods[0].name, err, out)
		}
	}
	out, err := run(t, "ip", "netns", "exec", first, "cat", "/etc/resolv.conf")
	if want := "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local"; err != nil || !strings.HasPrefix(out, want) {
		t.Errorf("resolv.conf in the pod's netns:\n%s\nwant prefix:\n%s", out, want)
	}

	// kill -9: the sandboxes stay and are adopted with the same IPs.
	n.stop(syscall.SIGKILL)
	if got := len(n.podNetns()); got != 3 {
		t.Fatalf("%d pod netns after kill -9, want 3", got)
	}
	n.start()
	eventually(t, 10*time.Second, func() error {
		after := n.pods(t)
		if fmt.Sprint(after) != fmt.Sprint(pods) {
			return fmt.Errorf("pods after restart %v, before %v", after, pods)
		}
		return nil
	})
	if out, err := run(t, "ip", "netns", "exec", first, "busybox", "ping", "-c1", "-W2", pods[1].ip); err != nil {
		t.Errorf("pod network broken after restart: %v\n%s", err, out)
	}

	// Deleting a pod removes its netns; its replacement gets one.
	if _, errOut, err := n.exec("kubectl", "delete", "pod", pods[0].name); err != nil {
		t.Fatal(errOut)
	}
	eventually(t, 10*time.Second, func() error {
		if _, err := os.Stat(filepath.Join("/run/netns", first)); err == nil {
			return fmt.Errorf("netns %s still there", first)
		}
		if got := len(n.podNetns()); got != 3 {
			return fmt.Errorf("%d pod netns, want 3 (with the replacement)", got)
		}
		return nil
	})

	// Deleting everything leaves no netns or veth behind; cleanup removes the bridge.
	if _, errOut, err := n.exec("kubectl", "delete", "deployment", "backend"); err != nil {
		t.Fatal(errOut)
	}
	eventually(t, 10*time.Second, func() error {
		if left := n.podNetns(); len(left) > 0 {
			return fmt.Errorf("pod netns left: %v", left)
		}
		links, _ := run(t, "ip", "-n", n.netns, "-o", "link", "show", "type", "veth")
		if strings.Contains(links, n.instance+"v") {
			return fmt.Errorf("veths left:\n%s", links)
		}
		return nil
	})
	n.stop(syscall.SIGTERM)
	if out, errOut, err := n.exec(binary, "cleanup", "--instance", n.instance, "--data-dir", n.dataDir); err != nil {
		t.Fatalf("cleanup: %v %s %s", err, out, errOut)
	}
	if links, _ := run(t, "ip", "-n", n.netns, "-o", "link"); strings.Contains(links, n.instance+"0") {
		t.Errorf("bridge left after cleanup:\n%s", links)
	}
	if tables, _ := run(t, "ip", "netns", "exec", n.netns, "nft", "list", "tables"); strings.Contains(tables, n.instance) {
		t.Errorf("nft table left after cleanup:\n%s", tables)
	}
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := osexec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// A container writing past its ephemeral-storage limit gets its pod evicted, as the
// kubelet's eviction manager does: Failed, reason Evicted, the kubelet's message, an
// Evicted event; a container within its limit is left alone.
func TestEphemeralStorageEviction(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	for name, mb := range map[string]string{"hog": "10", "modest": "1"} {
		kubectl("run", name, "--image=busybox", "--restart=Never", "--overrides",
			`{"spec":{"containers":[{"name":"`+name+`","image":"busybox","command":["sh","-c","dd if=/dev/zero of=/file bs=1M count=`+mb+`; sleep 3600"],`+
				`"resources":{"limits":{"ephemeral-storage":"5Mi"}}}]}}`)
	}
	eventually(t, 30*time.Second, func() error {
		got := kubectl("get", "pod", "hog", "-o", "jsonpath={.status.phase}/{.status.reason}/{.status.message}")
		if want := `Failed/Evicted/Container hog exceeded its local ephemeral storage limit "5Mi". `; got != want {
			return fmt.Errorf("hog: %q, want %q", got, want)
		}
		return nil
	})
	if out := kubectl("get", "events", "--field-selector", "involvedObject.name=hog,reason=Evicted"); !strings.Contains(out, "exceeded its local ephemeral storage limit") {
		t.Errorf("no Evicted event:\n%s", out)
	}
	if got := kubectl("get", "pod", "modest", "-o", "jsonpath={.status.phase}"); got != "Running" {
		t.Errorf("modest: %s", got)
	}
}

// Termination messages as the kubelet reports them: what the container wrote to its
// terminationMessagePath (also as a non-root user), or with FallbackToLogsOnError the
// tail of its log when it failed without writing one.
func TestTerminationMessages(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	for name, spec := range map[string]string{
		"file":     `"command":["sh","-c","printf OK > /dev/termination-log"]`,
		"custom":   `"command":["sh","-c","printf MINE > /tmp/msg"],"terminationMessagePath":"/tmp/msg","securityContext":{"runAsUser":1000}`,
		"fallback": `"command":["sh","-c","printf DONE; exit 1"],"terminationMessagePolicy":"FallbackToLogsOnError"`,
		"nofall":   `"command":["sh","-c","printf DONE; exit 1"]`,
	} {
		kubectl("run", name, "--image=busybox", "--restart=Never", "--overrides",
			`{"spec":{"containers":[{"name":"`+name+`","image":"busybox",`+spec+`}]}}`)
	}
	for _, c := range []struct{ name, want string }{{"file", "OK"}, {"custom", "MINE"}, {"fallback", "DONE"}, {"nofall", ""}} {
		name, want := c.name, c.want
		eventually(t, 30*time.Second, func() error {
			got := kubectl("get", "pod", name, "-o", "jsonpath={.status.containerStatuses[0].state.terminated.reason}:{.status.containerStatuses[0].state.terminated.message}")
			if !strings.HasSuffix(got, ":"+want) || strings.HasPrefix(got, ":") {
				return fmt.Errorf("%s: %q, want message %q", name, got, want)
			}
			return nil
		})
	}
}

// The kubelet's admission: a pod whose host port a running pod of the node holds is
// rejected (Failed, NodePorts); once the port is free, a new pod gets it.
func TestHostPortAdmission(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	pod := func(name string) {
		kubectl("run", name, "--image=busybox", "--restart=Never", "--overrides",
			`{"spec":{"containers":[{"name":"c","image":"busybox","command":["sleep","3600"],"ports":[{"containerPort":21017,"hostPort":21017}]}]}}`)
	}
	pod("first")
	kubectl("wait", "--for=condition=Ready", "pod/first", "--timeout=60s")
	pod("second")
	eventually(t, 30*time.Second, func() error {
		got := kubectl("get", "pod", "second", "-o", "jsonpath={.status.phase}/{.status.reason}/{.status.message}")
		if want := "Failed/NodePorts/Pod was rejected: Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"; got != want {
			return fmt.Errorf("second: %q", got)
		}
		return nil
	})
	kubectl("delete", "pod", "first", "--grace-period=0", "--force")
	pod("third")
	kubectl("wait", "--for=condition=Ready", "pod/third", "--timeout=60s")
}

// activeDeadlineSeconds, also lowered on a running pod, ends the pod as the kubelet
// does: Failed, DeadlineExceeded, its containers stopped.
func TestActiveDeadline(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("run", "limited", "--image=busybox", "--restart=Never", "--overrides",
		`{"spec":{"activeDeadlineSeconds":3600,"containers":[{"name":"c","image":"busybox","command":["sleep","3600"]}]}}`)
	kubectl("wait", "--for=condition=Ready", "pod/limited", "--timeout=60s")
	kubectl("patch", "pod", "limited", "-p", `{"spec":{"activeDeadlineSeconds":2}}`)
	eventually(t, 30*time.Second, func() error {
		got := kubectl("get", "pod", "limited", "-o", "jsonpath={.status.phase}/{.status.reason}/{.status.message}/{.status.containerStatuses[0].state.terminated.reason}")
		if want := "Failed/DeadlineExceeded/Pod was active on the node longer than the specified deadline/"; !strings.HasPrefix(got, want) || strings.HasSuffix(got, "/") {
			return fmt.Errorf("got %q, want %q and the container terminated", got, want)
		}
		return nil
	})
}

// Issue 19 (11): with the pod range used up, a new pod stays Pending and says why, as
// the kubelet does (FailedCreatePodSandBox), and starts once an address is free.
func TestPodRangeExhausted(t *testing.T) {
	n := newNode(t)
	n.start("--pod-cidr", "10.245.0.0/29") // the bridge and a handful of pods
	kubectl := n.kubectlFor(t)
	var last string
	for i := 0; ; i++ {
		last = fmt.Sprintf("p%d", i)
		kubectl("run", last, "--image=busybox", "--restart=Never", "--", "sleep", "3600")
		if err := func() error {
			_, _, err := n.exec("kubectl", "wait", "--for=condition=Ready", "pod/"+last, "--timeout=10s")
			return err
		}(); err != nil {
			break
		}
		if i > 16 {
			t.Fatal("a /29 held more than 16 pods")
		}
	}
	eventually(t, 20*time.Second, func() error {
		out := kubectl("get", "events", "--field-selector", "involvedObject.name="+last+",reason=FailedCreatePodSandBox")
		if !strings.Contains(out, "Failed to create pod sandbox") {
			return fmt.Errorf("no FailedCreatePodSandBox event for %s:\n%s", last, out)
		}
		return nil
	})
	if got := kubectl("get", "pod", last, "-o", "jsonpath={.status.phase}"); got != "Pending" {
		t.Errorf("%s: %s", last, got)
	}
	kubectl("delete", "pod", "p0", "--grace-period=0", "--force")
	kubectl("wait", "--for=condition=Ready", "pod/"+last, "--timeout=60s")
}
