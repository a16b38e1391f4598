//go:build integration

package integration

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ConfigMaps, Secrets and ServiceAccounts as kubectl makes and shows them; every
// namespace gets a "default" ServiceAccount, made again when deleted.
func TestConfigAndIdentityWithKubectl(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("create", "namespace", "team")
	eventually(t, 10*time.Second, func() error {
		_, errOut, err := n.exec("kubectl", "-n", "team", "get", "serviceaccount", "default")
		if err != nil {
			return fmt.Errorf("no default account in a new namespace: %s", errOut)
		}
		return nil
	})
	ca, _ := os.ReadFile(filepath.Join(n.dataDir, "ca.crt"))
	eventually(t, 10*time.Second, func() error {
		got, _, _ := n.exec("kubectl", "-n", "team", "get", "configmap", "kube-root-ca.crt", "-o", `jsonpath={.data.ca\.crt}`)
		if len(ca) == 0 || strings.TrimSpace(got) != strings.TrimSpace(string(ca)) {
			return fmt.Errorf("kube-root-ca.crt in a new namespace holds %d bytes, the CA %d", len(got), len(ca))
		}
		return nil
	})
	kubectl("-n", "team", "delete", "serviceaccount", "default")
	eventually(t, 10*time.Second, func() error {
		_, errOut, err := n.exec("kubectl", "-n", "team", "get", "serviceaccount", "default")
		if err != nil {
			return fmt.Errorf("the default account is not made again: %s", errOut)
		}
		return nil
	})

	kubectl("create", "configmap", "app-config", "--from-literal=mode=fast", "--from-literal=level=3")
	kubectl("create", "secret", "generic", "db", "--from-literal=password=hunter2")
	kubectl("create", "serviceaccount", "builder")
	if got := kubectl("get", "configmap", "app-config", "-o", "jsonpath={.data.mode}"); got != "fast" {
		t.Errorf("configmap data %q", got)
	}
	got := kubectl("get", "secret", "db", "-o", "jsonpath={.data.password}")
	if dec, _ := base64.StdEncoding.DecodeString(got); string(dec) != "hunter2" {
		t.Errorf("secret data %q", got)
	}
	if out := kubectl("get", "secrets"); !strings.Contains(out, "TYPE") || !hasRow(out, "db", "Opaque", "1") {
		t.Errorf("kubectl get secrets:\n%s", out)
	}
	if out := kubectl("get", "cm", "app-config"); !hasRow(out, "app-config", "2") {
		t.Errorf("kubectl get cm:\n%s", out)
	}
	if out := kubectl("get", "sa"); !hasRow(out, "builder", "0") || !hasRow(out, "default", "0") {
		t.Errorf("kubectl get sa:\n%s", out)
	}
	// An immutable ConfigMap refuses edits, with the field named.
	kubectl("patch", "configmap", "app-config", "--type=merge", "-p", `{"immutable":true}`)
	_, errOut, err := n.exec("kubectl", "patch", "configmap", "app-config", "--type=merge", "-p", `{"data":{"mode":"slow"}}`)
	if err == nil || !strings.Contains(errOut, "field is immutable when `immutable` is set") {
		t.Errorf("patching an immutable configmap: %v %s", err, errOut)
	}
	// A pod runs as "default" unless it names an account, which must exist.
	kubectl("run", "p", "--image=busybox", "--restart=Never", "--overrides", `{"spec":{"serviceAccountName":"builder"}}`, "--", "sleep", "3600")
	if got := kubectl("get", "pod", "p", "-o", "jsonpath={.spec.serviceAccountName}"); got != "builder" {
		t.Errorf("serviceAccountName %q", got)
	}
	_, errOut, err = n.exec("kubectl", "run", "q", "--image=busybox", "--restart=Never", "--overrides", `{"spec":{"serviceAccountName":"ghost"}}`)
	if err == nil || !strings.Contains(errOut, `error looking up service account default/ghost`) {
		t.Errorf("a pod naming a missing account: %v %s", err, errOut)
	}
}

// hasRow reports whether some line of out starts with the given fields, in order.
func hasRow(out string, want ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(want) && strings.Join(f[:len(want)], " ") == strings.Join(want, " ") {
			return true
		}
	}
	return false
}

// kubectl auth asks the API who the caller is and what it may do: the admin token is
// cluster-admin.
func TestAuthWithKubectl(t *testing.T) {
	n := newNode(t)
	n.start()
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"auth", "can-i", "create", "pods"}, []string{"yes"}},
		{[]string{"auth", "can-i", "delete", "secrets", "-n", "kube-system"}, []string{"yes"}},
		{[]string{"auth", "can-i", "--list"}, []string{"Resources", "*.*", "[*]"}},
		{[]string{"auth", "whoami"}, []string{"Username", "minicluster-admin", "system:masters"}},
	} {
		out, errOut, err := n.exec("kubectl", c.args...)
		for _, w := range c.want {
			if err != nil || !strings.Contains(out, w) {
				t.Errorf("kubectl %s: %v %s\n%s(want %q)", strings.Join(c.args, " "), err, errOut, out, w)
				break
			}
		}
	}
}

// kubectl cordon keeps new pods off the node (they wait, Pending, saying why) and shows
// on the node; uncordon lets them run.
func TestCordon(t *testing.T) {
	n := newNode(t)
	n.start()
	node, _, err := n.exec("kubectl", "get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
	if err != nil || node == "" {
		t.Fatalf("node name %q: %v", node, err)
	}
	if _, errOut, err := n.exec("kubectl", "cordon", node); err != nil {
		t.Fatal(errOut)
	}
	if out, _, _ := n.exec("kubectl", "get", "node", node); !hasRow(out, node, "Ready,SchedulingDisabled") {
		t.Errorf("kubectl get node after cordon:\n%s", out)
	}
	eventually(t, 10*time.Second, func() error {
		taints, _, _ := n.exec("kubectl", "get", "node", node, "-o", "jsonpath={.spec.taints[*].key}")
		if !strings.Contains(taints, "node.kubernetes.io/unschedulable") {
			return fmt.Errorf("taints %q", taints)
		}
		return nil
	})
	if _, errOut, err := n.exec("kubectl", "run", "waiter", "--image=busybox", "--restart=Never", "--", "sleep", "3600"); err != nil {
		t.Fatal(errOut)
	}
	eventually(t, 10*time.Second, func() error {
		msg, _, _ := n.exec("kubectl", "get", "pod", "waiter", "-o", `jsonpath={.status.phase} {.spec.nodeName}/{.status.conditions[?(@.type=="PodScheduled")].message}`)
		if !strings.HasPrefix(msg, "Pending /") || !strings.Contains(msg, "1 node(s) were unschedulable") {
			return fmt.Errorf("pod on a cordoned node: %q", msg)
		}
		return nil
	})
	if _, errOut, err := n.exec("kubectl", "uncordon", node); err != nil {
		t.Fatal(errOut)
	}
	eventually(t, 20*time.Second, func() error {
		phase, _, _ := n.exec("kubectl", "get", "pod", "waiter", "-o", "jsonpath={.status.phase}")
		if phase != "Running" {
			return fmt.Errorf("after uncordon the pod is %q", phase)
		}
		return nil
	})
	if out, _, _ := n.exec("kubectl", "get", "node", node); !hasRow(out, node, "Ready") {
		t.Errorf("kubectl get node after uncordon:\n%s", out)
	}
}

// The kubectl create commands for the kinds that are stored and served, and their
// columns.
func TestKubectlCreateKinds(t *testing.T) {
	n := newNode(t)
	n.start()
	for _, c := range []struct {
		create []string
		get    string
		row    []string
	}{
		{[]string{"role", "reader", "--verb=get,list", "--resource=pods"}, "role", []string{"reader"}},
		{[]string{"rolebinding", "reader", "--role=reader", "--serviceaccount=default:default"}, "rolebinding", []string{"reader", "Role/reader"}},
		{[]string{"clusterrole", "nodes", "--verb=get", "--resource=nodes"}, "clusterrole", []string{"nodes"}},
		{[]string{"clusterrolebinding", "nodes", "--clusterrole=nodes", "--user=alice"}, "clusterrolebinding", []string{"nodes", "ClusterRole/nodes"}},
		{[]string{"ingress", "web", "--rule=example.com/*=web:80"}, "ingress", []string{"web", "<none>", "example.com"}},
		{[]string{"poddisruptionbudget", "web", "--selector=app=web", "--min-available=1"}, "pdb", []string{"web", "1", "N/A", "0"}},
	} {
		if out, errOut, err := n.exec("kubectl", append([]string{"create"}, c.create...)...); err != nil {
			t.Errorf("kubectl create %s: %v %s %s", strings.Join(c.create, " "), err, out, errOut)
			continue
		}
		if out, errOut, err := n.exec("kubectl", "get", c.get); err != nil || !hasRow(out, c.row...) {
			t.Errorf("kubectl get %s: %v %s\n%s", c.get, err, errOut, out)
		}
	}
	// A binding's role cannot change.
	_, errOut, err := n.exec("kubectl", "patch", "rolebinding", "reader", "--type=merge", "-p", `{"roleRef":{"name":"other"}}`)
	if err == nil || !strings.Contains(errOut, "cannot change roleRef") {
		t.Errorf("changing a roleRef: %v %s", err, errOut)
	}
}

// kubectl drain evicts through pods/eviction, which a PodDisruptionBudget holds back:
// on one node the replacements cannot run (the node is cordoned), so the budget stops
// the second eviction, as on a real cluster.
func TestDrainRespectsDisruptionBudget(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	node := kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
	kubectl("create", "deployment", "web", "--image=busybox", "--replicas=2", "--", "sleep", "3600")
	kubectl("rollout", "status", "deployment/web", "--timeout=60s")
	kubectl("create", "poddisruptionbudget", "web", "--selector=app=web", "--min-available=1")
	eventually(t, 10*time.Second, func() error {
		out, _, _ := n.exec("kubectl", "get", "pdb", "web", "-o", "jsonpath={.status.currentHealthy}/{.status.disruptionsAllowed}")
		if out != "2/1" {
			return fmt.Errorf("pdb healthy/allowed %q, want 2/1", out)
		}
		return nil
	})
	out, errOut, err := n.exec("kubectl", "drain", node, "--ignore-daemonsets", "--timeout=8s")
	if err == nil || !strings.Contains(out+errOut, "Cannot evict pod as it would violate the pod's disruption budget") {
		t.Errorf("drain with a budget: %v\n%s%s", err, out, errOut)
	}
	if out := kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.status.phase} {end}"); strings.Count(out, "Running") != 1 {
		t.Errorf("after the budget held: pods %q, want one still running", out)
	}
	kubectl("delete", "pdb", "web")
	kubectl("drain", node, "--ignore-daemonsets", "--timeout=30s")
	if out := kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.status.phase} {end}"); strings.Contains(out, "Running") {
		t.Errorf("after drain: pods %q", out)
	}
	kubectl("uncordon", node)
	kubectl("rollout", "status", "deployment/web", "--timeout=60s")
}

// kubectl apply --prune with its default allow-list (every kind in it is served): what
// left the manifests goes.
func TestApplyPrune(t *testing.T) {
	n := newNode(t)
	n.start()
	dir := t.TempDir()
	both := filepath.Join(dir, "both.yaml")
	os.WriteFile(both, []byte(`apiVersion: v1
kind: ConfigMap
metadata: {name: settings, labels: {app: prune}}
data: {mode: fast}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, labels: {app: prune}}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
`), 0o644)
	one := filepath.Join(dir, "one.yaml")
	os.WriteFile(one, []byte(`apiVersion: v1
kind: ConfigMap
metadata: {name: settings, labels: {app: prune}}
data: {mode: fast}
`), 0o644)
	if out, errOut, err := n.exec("kubectl", "apply", "-f", both); err != nil {
		t.Fatalf("apply: %v %s %s", err, out, errOut)
	}
	if out, _, _ := n.exec("kubectl", "get", "pvc", "data"); !hasRow(out, "data") {
		t.Errorf("kubectl get pvc:\n%s", out)
	}
	out, errOut, err := n.exec("kubectl", "apply", "--prune", "-l", "app=prune", "-f", one)
	if err != nil || !strings.Contains(out, "persistentvolumeclaim/data pruned") {
		t.Errorf("apply --prune: %v\n%s%s", err, out, errOut)
	}
}

// A ServiceAccount's token (kubectl create token) authenticates as the account, and
// RBAC holds it to what its Role grants; kubectl auth can-i answers for it.
func TestServiceAccountTokensAndRBAC(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("create", "serviceaccount", "reader")
	kubectl("create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods")
	kubectl("create", "rolebinding", "reader", "--role=pod-reader", "--serviceaccount=default:reader")
	token := strings.TrimSpace(kubectl("create", "token", "reader"))
	as := func(args ...string) (string, string, error) {
		return n.exec("kubectl", append([]string{"--token=" + token}, args...)...)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"auth", "can-i", "list", "pods"}, "yes"},
		{[]string{"auth", "can-i", "delete", "pods"}, "no"},
		{[]string{"auth", "can-i", "list", "secrets"}, "no"},
		{[]string{"auth", "can-i", "list", "pods", "-n", "kube-system"}, "no"},
	} {
		if out, _, _ := as(c.args...); strings.TrimSpace(out) != c.want {
			t.Errorf("as reader, kubectl %s: %q, want %q", strings.Join(c.args, " "), out, c.want)
		}
	}
	if out, errOut, err := as("get", "pods"); err != nil {
		t.Errorf("as reader, get pods: %v %s %s", err, out, errOut)
	}
	_, errOut, err := as("get", "secrets")
	if want := `secrets is forbidden: User "system:serviceaccount:default:reader" cannot list resource "secrets" in API group "" in the namespace "default"`; err == nil || !strings.Contains(errOut, want) {
		t.Errorf("as reader, get secrets: %v %s", err, errOut)
	}
	if out, _, _ := as("auth", "whoami"); !strings.Contains(out, "system:serviceaccount:default:reader") {
		t.Errorf("as reader, whoami:\n%s", out)
	}
	// A binding to the default "view" ClusterRole gives reading everywhere in the namespace.
	kubectl("create", "rolebinding", "viewer", "--clusterrole=view", "--serviceaccount=default:reader")
	if out, _, _ := as("auth", "can-i", "list", "deployments.apps"); strings.TrimSpace(out) != "yes" {
		t.Errorf("with view, can-i list deployments: %q", out)
	}
	// TokenReview says who the token is; once the account is gone, the token is nobody.
	review := filepath.Join(t.TempDir(), "review.json")
	os.WriteFile(review, []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`+token+`"}}`), 0o644)
	if out := kubectl("create", "-f", review, "-o", "jsonpath={.status.authenticated} {.status.user.username}"); out != "true system:serviceaccount:default:reader" {
		t.Errorf("token review: %q", out)
	}
	kubectl("delete", "serviceaccount", "reader")
	if _, errOut, err := as("get", "pods"); err == nil || !strings.Contains(errOut, "Unauthorized") {
		t.Errorf("a deleted account's token: %v %s", err, errOut)
	}
}
