//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Scaling and a rolling update with the real daemon and kubectl: kubectl rollout
// status waits for the new ReplicaSet, and every pod is replaced.
func TestRollout(t *testing.T) {
	n := newNode(t)
	n.start()
	if _, errOut, err := n.cli("apply", "-f", "../manifests/backend.yaml"); err != nil {
		t.Fatal(errOut)
	}
	kubectl := n.kubectlFor(t)
	if out := kubectl("rollout", "status", "deployment/backend", "--timeout=60s"); !strings.Contains(out, "successfully rolled out") {
		t.Fatalf("rollout status: %s", out)
	}
	names := func() map[string]bool {
		m := map[string]bool{}
		for _, p := range n.podStatuses(t, "app=backend") {
			if p.Phase == "Running" && p.Ready {
				m[p.Name] = true
			}
		}
		return m
	}
	for _, replicas := range []int{5, 1, 3} {
		kubectl("scale", "deployment", "backend", fmt.Sprintf("--replicas=%d", replicas))
		eventually(t, 30*time.Second, func() error {
			if got := len(n.podStatuses(t, "app=backend")); got != replicas || len(names()) != replicas {
				return fmt.Errorf("%d pods (%d ready), want %d", got, len(names()), replicas)
			}
			return nil
		})
	}
	before := names()
	kubectl("rollout", "restart", "deployment/backend")
	if out := kubectl("rollout", "status", "deployment/backend", "--timeout=90s"); !strings.Contains(out, "successfully rolled out") {
		t.Fatalf("rollout status after restart: %s", out)
	}
	eventually(t, 30*time.Second, func() error {
		after := names()
		for name := range after {
			if before[name] {
				return fmt.Errorf("pod %s survived the rollout", name)
			}
		}
		if len(after) != 3 {
			return fmt.Errorf("%d ready pods after the rollout", len(after))
		}
		return nil
	})
	if rs := kubectl("get", "rs", "-o", "name"); strings.Count(rs, "replicaset") != 2 {
		t.Errorf("replicasets after one rollout: %s", rs)
	}
}

// Endpoints and EndpointSlices follow the backend's ready pods through scaling.
func TestEndpointsFollowPods(t *testing.T) {
	n := newNode(t)
	n.start()
	if _, errOut, err := n.cli("apply", "-f", "../manifests/backend.yaml"); err != nil {
		t.Fatal(errOut)
	}
	count := func(want int) {
		t.Helper()
		eventually(t, 30*time.Second, func() error {
			out, _, _ := n.exec("kubectl", "get", "endpoints", "backend", "-o", "jsonpath={.subsets[*].addresses[*].ip}")
			slices, _, _ := n.exec("kubectl", "get", "endpointslices", "-l", "kubernetes.io/service-name=backend",
				"-o", `jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]} {end}`)
			if got := len(strings.Fields(out)); got != want {
				return fmt.Errorf("endpoints %q: %d addresses, want %d", out, got, want)
			}
			if got := len(strings.Fields(slices)); got != want {
				return fmt.Errorf("slices: %d ready endpoints (%q), want %d", got, slices, want)
			}
			return nil
		})
	}
	count(3)
	if out, _, _ := n.exec("kubectl", "get", "endpoints", "backend"); !strings.Contains(out, ":8080") {
		t.Errorf("kubectl get endpoints:\n%s", out)
	}
	for _, r := range []int{1, 0, 2} {
		if _, errOut, err := n.exec("kubectl", "scale", "deployment", "backend", fmt.Sprintf("--replicas=%d", r)); err != nil {
			t.Fatal(errOut)
		}
		count(r)
	}
}

// kubectl rollout history, undo (twice, and --to-revision) and a progress deadline, as
// against a real cluster.
func TestRolloutUndoAndDeadline(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	image := func() string {
		return kubectl("get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
	}
	kubectl("create", "deployment", "web", "--image=busybox:1.35", "--replicas=2", "--", "sleep", "3600")
	kubectl("annotate", "deployment", "web", "kubernetes.io/change-cause=first")
	kubectl("rollout", "status", "deployment/web", "--timeout=60s")
	kubectl("set", "image", "deployment/web", "busybox=busybox:1.36")
	kubectl("annotate", "deployment", "web", "--overwrite", "kubernetes.io/change-cause=second")
	kubectl("rollout", "status", "deployment/web", "--timeout=60s")
	if out := kubectl("rollout", "history", "deployment/web"); !hasRow(out, "1", "first") || !hasRow(out, "2", "second") {
		t.Errorf("history:\n%s", out)
	}
	kubectl("rollout", "undo", "deployment/web")
	kubectl("rollout", "status", "deployment/web", "--timeout=60s")
	if out := kubectl("rollout", "history", "deployment/web"); image() != "busybox:1.35" || !hasRow(out, "2", "second") || !hasRow(out, "3", "first") || hasRow(out, "1") {
		t.Errorf("after undo, image %s, history:\n%s", image(), out)
	}
	if out := kubectl("rollout", "undo", "deployment/web"); !strings.Contains(out, "rolled back") || image() != "busybox:1.36" {
		t.Errorf("second undo: %s (image %s)", out, image())
	}
	kubectl("rollout", "status", "deployment/web", "--timeout=60s")
	if out := kubectl("rollout", "undo", "deployment/web", "--to-revision=3"); !strings.Contains(out, "rolled back") || image() != "busybox:1.35" {
		t.Errorf("undo to revision 3: %s (image %s)", out, image())
	}
	kubectl("rollout", "status", "deployment/web", "--timeout=60s")
	// Pods whose readiness probe always fails never become available: rollout status
	// gives up at the deadline instead of waiting forever. (Not a container that exits
	// at once: it is Ready for the moment it runs, which a fast rollout may count, as
	// on a real cluster without minReadySeconds.)
	kubectl("patch", "deployment", "web", "-p", `{"spec":{"progressDeadlineSeconds":3}}`)
	kubectl("patch", "deployment", "web", "--type=json", "-p",
		`[{"op":"add","path":"/spec/template/spec/containers/0/readinessProbe","value":{"exec":{"command":["false"]},"periodSeconds":1}}]`)
	start := time.Now()
	out, errOut, err := n.exec("kubectl", "rollout", "status", "deployment/web", "--timeout=60s")
	if err == nil || !strings.Contains(errOut, `deployment "web" exceeded its progress deadline`) || time.Since(start) > 30*time.Second {
		state, _, _ := n.exec("kubectl", "get", "deploy,rs", "-o", "wide", "--show-labels")
		status, _, _ := n.exec("kubectl", "get", "deploy", "web", "-o", "jsonpath={.metadata.generation} {.status}")
		t.Errorf("rollout status of a stuck rollout after %s: %v %s %s\n%s\n%s", time.Since(start), err, out, errOut, state, status)
	}
}

// A ReplicationController keeps its pods as a ReplicaSet does; kubectl scale works
// with it.
func TestReplicationController(t *testing.T) {
	n := newNode(t)
	n.start()
	manifest := filepath.Join(t.TempDir(), "rc.json")
	os.WriteFile(manifest, []byte(`{"apiVersion":"v1","kind":"ReplicationController","metadata":{"name":"legacy"},"spec":{"replicas":2,
		"template":{"metadata":{"labels":{"app":"legacy"}},"spec":{"containers":[{"name":"c","image":"busybox","command":["sleep","3600"]}]}}}}`), 0o644)
	if _, errOut, err := n.exec("kubectl", "create", "-f", manifest); err != nil {
		t.Fatal(errOut)
	}
	ready := func(want int) {
		eventually(t, 30*time.Second, func() error {
			out, _, _ := n.exec("kubectl", "get", "rc", "legacy")
			if !hasRow(out, "legacy", fmt.Sprint(want), fmt.Sprint(want), fmt.Sprint(want)) {
				return fmt.Errorf("kubectl get rc:\n%s", out)
			}
			if pods := n.podStatuses(t, "app=legacy"); len(pods) != want {
				return fmt.Errorf("%d pods, want %d", len(pods), want)
			}
			return nil
		})
	}
	ready(2)
	if _, errOut, err := n.exec("kubectl", "scale", "rc", "legacy", "--replicas=3"); err != nil {
		t.Fatal(errOut)
	}
	ready(3)
}

// A DaemonSet runs one pod on the node, cordoned or not; a template change replaces it;
// kubectl drain --ignore-daemonsets leaves it; kubectl cluster-info dump works.
func TestDaemonSet(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	node := kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
	kubectl("cordon", node)
	manifest := filepath.Join(t.TempDir(), "ds.json")
	os.WriteFile(manifest, []byte(`{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"agent"},"spec":{
		"selector":{"matchLabels":{"app":"agent"}},
		"template":{"metadata":{"labels":{"app":"agent"}},"spec":{"containers":[{"name":"c","image":"busybox:1.35","command":["sleep","3600"]}]}}}}`), 0o644)
	kubectl("create", "-f", manifest)
	kubectl("rollout", "status", "daemonset/agent", "--timeout=60s")
	if out := kubectl("get", "ds", "agent"); !hasRow(out, "agent", "1", "1", "1", "1", "1", "<none>") {
		t.Errorf("kubectl get ds:\n%s", out)
	}
	before := n.podStatuses(t, "app=agent")
	kubectl("set", "image", "daemonset/agent", "c=busybox:1.36")
	kubectl("rollout", "status", "daemonset/agent", "--timeout=60s")
	eventually(t, 30*time.Second, func() error {
		pods := n.podStatuses(t, "app=agent")
		if len(pods) != 1 || len(before) != 1 || pods[0].Name == before[0].Name || !pods[0].Ready {
			return fmt.Errorf("pods after the update %+v (before %+v)", pods, before)
		}
		return nil
	})
	kubectl("uncordon", node)
	if out, errOut, err := n.exec("kubectl", "drain", node, "--ignore-daemonsets", "--timeout=30s"); err != nil || !strings.Contains(out+errOut, "ignoring DaemonSet-managed Pods") {
		t.Errorf("drain: %v %s %s", err, out, errOut)
	}
	if pods := n.podStatuses(t, "app=agent"); len(pods) != 1 {
		t.Errorf("the daemon pod after drain: %+v", pods)
	}
	if out, errOut, err := n.exec("kubectl", "cluster-info", "dump", "--namespaces=default"); err != nil || !strings.Contains(out, `"kind": "DaemonSetList"`) {
		t.Errorf("cluster-info dump: %v %s (%d bytes)", err, errOut, len(out))
	}
}
