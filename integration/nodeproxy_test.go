//go:build integration

package integration

import (
	"encoding/json"
	"strings"
	"testing"
)

// nodes/{name}/proxy serves what the kubelet serves there that this node has, and a
// proxy path without its trailing slash is redirected to it, as kube-apiserver does.
func TestNodeProxy(t *testing.T) {
	n := newNode(t)
	n.start()
	kubectl := n.kubectlFor(t)
	kubectl("run", "p", "--image=busybox", "--", "sleep", "3600")
	node := kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
	if got := kubectl("get", "--raw", "/api/v1/nodes/"+node+"/proxy/healthz"); got != "ok" {
		t.Errorf("healthz %q", got)
	}
	var pods struct {
		Kind  string
		Items []struct{ Metadata struct{ Name string } }
	}
	if err := json.Unmarshal([]byte(kubectl("get", "--raw", "/api/v1/nodes/"+node+"/proxy/pods")), &pods); err != nil ||
		pods.Kind != "PodList" || len(pods.Items) != 1 || pods.Items[0].Metadata.Name != "p" {
		t.Errorf("pods: %+v %v", pods, err)
	}
	if got := kubectl("get", "--raw", "/api/v1/nodes/"+node+"/proxy/logs/"); !strings.Contains(got, "<pre>") {
		t.Errorf("logs/ %q", got)
	}
	// With the kubelet's port, or scheme and port, as kube-apiserver splits the name.
	for _, name := range []string{node + ":10250", "https:" + node + ":10250"} {
		if got := kubectl("get", "--raw", "/api/v1/nodes/"+name+"/proxy/healthz"); got != "ok" {
			t.Errorf("%s: healthz %q", name, got)
		}
	}
	for path, want := range map[string]string{
		"/api/v1/nodes/" + node + "/proxy/stats/nope": "the server could not find the requested resource",
		"/api/v1/nodes/ghost/proxy/healthz":           `nodes "ghost" not found`,
	} {
		if _, errOut, err := n.exec("kubectl", "get", "--raw", path); err == nil || !strings.Contains(errOut, want) {
			t.Errorf("%s: %v %s", path, err, errOut)
		}
	}
	token := kubectl("config", "view", "--raw", "-o", "jsonpath={.users[0].user.token}")
	for _, path := range []string{"/api/v1/namespaces/default/pods/p/proxy", "/api/v1/nodes/" + node + "/proxy"} {
		out, errOut, err := n.exec("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H", "Authorization: Bearer "+token,
			"https://127.0.0.1:6443"+path+"?x=1")
		if want := "301 https://127.0.0.1:6443" + path + "/?x=1"; err != nil || out != want {
			t.Errorf("%s: %q (%v %s), want %q", path, out, err, errOut, want)
		}
	}
}
