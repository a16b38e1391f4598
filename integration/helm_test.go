//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// helmPath finds the pinned Helm that `make deps` installs.
func helmPath(t *testing.T) string {
	for _, p := range []string{os.Getenv("MC_HELM"), "/var/cache/minicluster-tools/helm"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	t.Fatal("helm is not installed: `make deps` installs it into /var/cache/minicluster-tools")
	return ""
}

// The chart `helm create` makes goes through Helm 3's whole life cycle against the
// daemon, with release storage in Secrets (the default) and in ConfigMaps, OpenAPI
// validation on.
func TestHelm(t *testing.T) {
	helm := helmPath(t)
	n := newNode(t)
	n.start()
	home := t.TempDir()
	run := func(driver string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", n.netns, helm}, args...)...)
		cmd.Dir = home
		cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(n.dataDir, "kubeconfig"), "HELM_DRIVER="+driver,
			"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
			"HELM_DATA_HOME="+filepath.Join(home, "data"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(driver string, args ...string) string {
		t.Helper()
		out, err := run(driver, args...)
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	must("secret", "create", "demo")
	chart := filepath.Join(home, "demo")
	must("secret", "install", "web", chart, "--wait", "--timeout", "90s")
	if out := must("secret", "list"); !hasRow(out, "web", "default", "1") || !strings.Contains(out, "deployed") {
		t.Errorf("helm list:\n%s", out)
	}
	if out := must("secret", "status", "web"); !strings.Contains(out, "STATUS: deployed") {
		t.Errorf("helm status:\n%s", out)
	}
	if out, _, _ := n.exec("kubectl", "get", "secrets", "-l", "owner=helm", "-o", "jsonpath={.items[*].type}"); out != "helm.sh/release.v1" {
		t.Errorf("release storage: secrets of types %q", out)
	}
	must("secret", "upgrade", "web", chart, "--set", "replicaCount=2", "--wait", "--timeout", "90s")
	eventually(t, 30*time.Second, func() error {
		if pods := n.podStatuses(t, "app.kubernetes.io/instance=web"); len(pods) != 2 {
			return fmt.Errorf("%d pods after the upgrade to 2 replicas", len(pods))
		}
		return nil
	})
	must("secret", "rollback", "web", "1", "--wait", "--timeout", "90s")
	if out := must("secret", "history", "web"); !hasRow(out, "1") || !hasRow(out, "2") || !hasRow(out, "3") || !strings.Contains(out, "Rollback to 1") {
		t.Errorf("helm history:\n%s", out)
	}
	// The chart's test pod runs `wget web-demo:80` in /: it saves /index.html into its
	// own root, not the host's.
	_, hadIndex := os.Stat("/index.html")
	if out, err := run("secret", "test", "web", "--timeout", "90s"); err != nil || !strings.Contains(out, "Phase:          Succeeded") {
		logs, _, _ := n.exec("kubectl", "logs", "web-demo-test-connection")
		state, _, _ := n.exec("kubectl", "get", "pods,endpointslices", "-o", "wide")
		t.Fatalf("helm test: %v\n%s\nthe test pod's log:\n%s\n%s", err, out, logs, state)
	}
	if _, err := os.Stat("/index.html"); err == nil && hadIndex != nil {
		os.Remove("/index.html")
		t.Error("helm test's pod wrote /index.html into the host's root")
	}
	must("secret", "uninstall", "web", "--wait", "--timeout", "90s")
	eventually(t, 30*time.Second, func() error {
		out, _, _ := n.exec("kubectl", "get", "deploy,svc,sa,secrets", "-l", "app.kubernetes.io/instance=web", "-o", "name")
		if out != "" {
			return fmt.Errorf("left after uninstall: %s", out)
		}
		return nil
	})

	// The other storage driver.
	must("configmap", "install", "cm", chart, "--wait", "--timeout", "90s")
	if out := must("configmap", "list"); !hasRow(out, "cm", "default", "1") {
		t.Errorf("helm list (configmap driver):\n%s", out)
	}
	if out, _, _ := n.exec("kubectl", "get", "configmaps", "-l", "owner=helm", "-o", "name"); !strings.Contains(out, "configmap/sh.helm.release.v1.cm.v1") {
		t.Errorf("release storage in configmaps: %q", out)
	}
	must("configmap", "uninstall", "cm", "--wait", "--timeout", "90s")
}
