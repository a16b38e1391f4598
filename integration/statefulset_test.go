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

// A StatefulSet of 3 behind a headless service: pods come up in order, each resolves
// by name through the service from a pod, each gets a claim of its own bound to a
// node-local volume, a deleted pod comes back under its name with its volume's data,
// and scaling down removes the highest ordinal first and keeps the claims.
func TestStatefulSet(t *testing.T) {
	n := newNode(t)
	n.start()
	manifest := filepath.Join(t.TempDir(), "web.yaml")
	os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: [netexec, --http-port=8080]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
`), 0o644)
	if _, errOut, err := n.exec("kubectl", "apply", "-f", manifest); err != nil {
		t.Fatal(errOut)
	}
	// In order: whenever web-i exists, web-(i-1) is running and ready.
	ips := map[string]string{}
	eventually(t, 60*time.Second, func() error {
		pods := n.podStatuses(t, "app=web")
		ready := map[string]bool{}
		for _, p := range pods {
			ready[p.Name] = p.Phase == "Running" && p.Ready
			ips[p.Name] = p.IP
		}
		for _, p := range pods {
			var i int
			if _, err := fmt.Sscanf(p.Name, "web-%d", &i); err != nil {
				t.Fatalf("pod %s is not web-<ordinal>", p.Name)
			}
			if i > 0 && !ready[fmt.Sprintf("web-%d", i-1)] {
				t.Fatalf("web-%d exists while web-%d is not ready: %+v", i, i-1, pods)
			}
		}
		if len(pods) != 3 || !ready["web-0"] || !ready["web-1"] || !ready["web-2"] {
			return fmt.Errorf("pods %+v", pods)
		}
		return nil
	})
	if out, _, _ := n.exec("kubectl", "get", "sts", "web"); !hasRow(out, "web", "3/3") {
		t.Errorf("kubectl get sts:\n%s", out)
	}
	// Each name resolves from a pod, through the headless service.
	eventually(t, 20*time.Second, func() error {
		for _, name := range []string{"web-0", "web-1"} {
			out, err := n.podShell(ips["web-2"], "busybox nslookup "+name+".web.default.svc.cluster.local")
			if err != nil || !strings.Contains(out, ips[name]) {
				return fmt.Errorf("%s from web-2: %v %s (want %s)", name, err, out, ips[name])
			}
		}
		return nil
	})
	if out, err := n.podShell(ips["web-1"], "hostname"); err != nil || strings.TrimSpace(out) != "web-1" {
		t.Errorf("web-1's hostname %q %v", out, err)
	}
	// Deleted, web-1 comes back under its name.
	uid := func(name string) string {
		out, _, _ := n.exec("kubectl", "get", "pod", name, "-o", "jsonpath={.metadata.uid}")
		return out
	}
	// Each pod has its claim, bound to a volume of the default class.
	out, _, _ := n.exec("kubectl", "get", "pvc")
	for i := range 3 {
		if !hasRow(out, fmt.Sprintf("data-web-%d", i), "Bound") || !strings.Contains(out, "local-path") {
			t.Errorf("kubectl get pvc:\n%s", out)
		}
	}
	if out, _, _ := n.exec("kubectl", "get", "pv"); strings.Count(out, "Bound") != 3 || !strings.Contains(out, "default/data-web-1") {
		t.Errorf("kubectl get pv:\n%s", out)
	}
	if out, _, _ := n.exec("kubectl", "get", "sc"); !hasRow(out, "local-path", "(default)") {
		t.Errorf("kubectl get sc:\n%s", out)
	}
	if _, errOut, err := n.exec("kubectl", "exec", "web-1", "--", "sh", "-c", "echo written-by-web-1 > /data/id"); err != nil {
		t.Fatal(errOut)
	}
	old := uid("web-1")
	if _, errOut, err := n.exec("kubectl", "delete", "pod", "web-1"); err != nil {
		t.Fatal(errOut)
	}
	eventually(t, 60*time.Second, func() error {
		if u := uid("web-1"); u == "" || u == old {
			return fmt.Errorf("web-1 uid %q (was %q)", u, old)
		}
		out, _, _ := n.exec("kubectl", "get", "sts", "web")
		if !hasRow(out, "web", "3/3") {
			return fmt.Errorf("kubectl get sts:\n%s", out)
		}
		return nil
	})
	if got, errOut, err := n.exec("kubectl", "exec", "web-1", "--", "cat", "/data/id"); err != nil || got != "written-by-web-1\n" {
		t.Errorf("the new web-1's volume holds %q (%v %s)", got, err, errOut)
	}
	if got, _, _ := n.exec("kubectl", "exec", "web-0", "--", "ls", "/data"); got != "" {
		t.Errorf("web-0's volume holds %q: not a volume of its own", got)
	}
	// Down to 1: web-2 goes, then web-1.
	if _, errOut, err := n.exec("kubectl", "scale", "sts", "web", "--replicas=1"); err != nil {
		t.Fatal(errOut)
	}
	eventually(t, 60*time.Second, func() error {
		pods := n.podStatuses(t, "app=web")
		names := map[string]bool{}
		for _, p := range pods {
			names[p.Name] = true
		}
		if names["web-2"] && !names["web-1"] {
			t.Fatalf("web-1 went before web-2: %+v", pods)
		}
		if len(pods) != 1 || !names["web-0"] {
			return fmt.Errorf("pods %+v", pods)
		}
		return nil
	})
	// The claims stay (retention Retain); a claim deleted frees its volume, which goes
	// with its directory (reclaim Delete).
	if out, _, _ := n.exec("kubectl", "get", "pvc"); strings.Count(out, "Bound") != 3 {
		t.Errorf("claims after scaling down:\n%s", out)
	}
	dirs, _ := filepath.Glob(filepath.Join(n.dataDir, "storage", "pvc-*_default_data-web-2"))
	if len(dirs) != 1 {
		t.Fatalf("web-2's volume directory: %v", dirs)
	}
	if _, errOut, err := n.exec("kubectl", "delete", "pvc", "data-web-2"); err != nil {
		t.Fatal(errOut)
	}
	eventually(t, 20*time.Second, func() error {
		out, _, _ := n.exec("kubectl", "get", "pv")
		if _, err := os.Stat(dirs[0]); err == nil || strings.Contains(out, "data-web-2") {
			return fmt.Errorf("the freed volume stays:\n%s", out)
		}
		return nil
	})
}
