//go:build integration

package integration

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKubectl drives the installed kubectl through the commands users type.
func TestKubectl(t *testing.T) {
	n := newNode(t)
	n.start()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	backend, err := os.ReadFile("../manifests/backend.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b3 := write("backend.yaml", string(backend))
	b4 := write("backend4.yaml", strings.Replace(string(backend), "replicas: 3", "replicas: 4", 1))
	ssa := write("ssa.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: ssa}\nspec:\n  ports: [{port: 80, name: http}]\n")
	bogus := write("bogus.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: bogus}\nspec:\n  ports: [{port: 80, bogus: 1}]\n")
	invalid := write("invalid.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: invalid}\nspec:\n  ports: [{port: 70000}]\n")

	steps := []struct {
		args   []string
		want   []string // substrings of stdout (or stderr when fail)
		fail   bool
		noWant string
	}{
		{args: []string{"version"}, want: []string{"Server Version: v1.32.0-minicluster"}},
		{args: []string{"api-resources"}, want: []string{"deployments", "deploy", "apps/v1", "endpointslices", "discovery.k8s.io/v1"}},
		{args: []string{"explain", "pod.spec.containers.ports"}, want: []string{"FIELD: ports <[]ContainerPort>", "List of ports to expose from the container",
			"containerPort\t<integer> -required-"}},
		{args: []string{"explain", "svc.spec.type"}, want: []string{"KIND:       Service", "type determines how the Service is exposed"}},
		{args: []string{"apply", "-f", b3}, want: []string{"service/backend created", "deployment.apps/backend created"}},
		{args: []string{"apply", "-f", b3}, want: []string{"service/backend unchanged", "deployment.apps/backend unchanged"}},
		{args: []string{"apply", "-f", b4}, want: []string{"deployment.apps/backend configured"}},
		{args: []string{"apply", "--server-side", "-f", ssa}, want: []string{"service/ssa serverside-applied"}},
		{args: []string{"create", "deployment", "web", "--image=nginx", "--replicas=2"}, want: []string{"deployment.apps/web created"}},
		{args: []string{"create", "service", "clusterip", "plain", "--tcp=5678:8080"}, want: []string{"service/plain created"}},
		{args: []string{"expose", "deployment", "web", "--port=80"}, want: []string{"service/web exposed"}},
		{args: []string{"scale", "deployment", "web", "--replicas=3"}, want: []string{"deployment.apps/web scaled"}},
		{args: []string{"get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"}, want: []string{"3"}},
		{args: []string{"label", "svc", "web", "tier=front"}, want: []string{"service/web labeled"}},
		{args: []string{"annotate", "svc", "web", "note=hi"}, want: []string{"service/web annotated"}},
		{args: []string{"get", "svc", "--show-labels"}, want: []string{"LABELS", "tier=front"}},
		{args: []string{"patch", "deploy", "web", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}}}`},
			want: []string{"deployment.apps/web patched"}},
		{args: []string{"patch", "deploy", "web", "--type=merge", "-p", `{"metadata":{"labels":{"m":"1"}}}`}, want: []string{"patched"}},
		{args: []string{"patch", "deploy", "web", "--type=json", "-p", `[{"op":"replace","path":"/spec/replicas","value":1}]`}, want: []string{"patched"}},
		{args: []string{"get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.metadata.labels.m}"},
			want: []string{"1 nginx:1.27 1"}},
		{args: []string{"get", "svc", "nope"}, fail: true, want: []string{`Error from server (NotFound): services "nope" not found`}},
		{args: []string{"create", "-f", b3}, fail: true,
			want: []string{`Error from server (AlreadyExists): error when creating "` + b3 + `": services "backend" already exists`}},
		{args: []string{"apply", "-f", invalid}, fail: true,
			want: []string{`The Service "invalid" is invalid: `, `* spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive`}},
		{args: []string{"apply", "-f", bogus}, fail: true, want: []string{`unknown field "spec.ports[0].bogus"`}},
		{args: []string{"get", "svc,ep,endpointslices,deploy,rs,pods,ns,events", "-o", "wide"}, want: []string{"service/backend", "deployment.apps/web", "endpoints/kubernetes", "namespace/default"}},
		{args: []string{"get", "all", "-A"}, want: []string{"NAMESPACE", "service/kubernetes"}},
		{args: []string{"get", "svc", "backend", "-o", "yaml"}, want: []string{"kind: Service", "clusterIP: 10."}},
		{args: []string{"get", "svc", "-o", "json"}, want: []string{`"kind": "List"`}},
		{args: []string{"get", "deploy", "-o", "name"}, want: []string{"deployment.apps/backend", "deployment.apps/web"}},
		{args: []string{"get", "endpointslices", "-A"}, want: []string{"ADDRESSTYPE", "backend-", "kubernetes-", "<unset>"}},
		{args: []string{"delete", "deploy", "web"}, want: []string{`deployment.apps "web" deleted`}},
		{args: []string{"create", "namespace", "team"}, want: []string{"namespace/team created"}},
		{args: []string{"-n", "team", "create", "service", "clusterip", "s", "--tcp=80:80"}, want: []string{"service/s created"}},
		{args: []string{"delete", "namespace", "team"}, want: []string{`namespace "team" deleted`}},
		{args: []string{"get", "namespace", "team"}, fail: true, want: []string{"NotFound"}},
	}
	for _, st := range steps {
		out, errOut, err := n.exec("kubectl", st.args...)
		if (err != nil) != st.fail {
			t.Errorf("kubectl %s: err=%v\nstdout %s\nstderr %s", strings.Join(st.args, " "), err, out, errOut)
			continue
		}
		text := out + errOut
		for _, w := range st.want {
			if !strings.Contains(text, w) {
				t.Errorf("kubectl %s: output lacks %q:\n%s", strings.Join(st.args, " "), w, text)
			}
		}
	}

	// replace with the current object works; replace with a stale one is a Conflict.
	cur, _, err := n.exec("kubectl", "get", "svc", "plain", "-o", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	stale := write("stale.yaml", cur)
	if out, errOut, err := n.exec("kubectl", "replace", "-f", stale); err != nil || !strings.Contains(out, "service/plain replaced") {
		t.Fatalf("replace: %v %s %s", err, out, errOut)
	}
	if _, errOut, err := n.exec("kubectl", "label", "svc", "plain", "changed=yes"); err != nil {
		t.Fatal(errOut)
	}
	if _, errOut, err := n.exec("kubectl", "replace", "-f", stale); err == nil || !strings.Contains(errOut, "Operation cannot be fulfilled on services \"plain\": the object has been modified") {
		t.Errorf("stale replace: err=%v %s", err, errOut)
	}
}

// kubectl get -w prints a row for an object created while it watches.
func TestKubectlWatch(t *testing.T) {
	n := newNode(t)
	n.start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.netns, "kubectl", "get", "svc", "-w")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(n.dataDir, "kubeconfig"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel()
	lines := bufio.NewScanner(stdout)
	seen := func(what string) {
		t.Helper()
		for lines.Scan() {
			if strings.Contains(lines.Text(), what) {
				return
			}
		}
		t.Fatalf("kubectl get -w ended before printing %q", what)
	}
	seen("kubernetes")
	if _, errOut, err := n.exec("kubectl", "create", "service", "clusterip", "late", "--tcp=80:80"); err != nil {
		t.Fatal(errOut)
	}
	seen("late")
}
