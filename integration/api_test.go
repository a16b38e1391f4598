//go:build integration

package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func getJSON(t *testing.T, c *http.Client, url string, header ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func field(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, _ := v.(map[string]any)
		v = mm[p]
	}
	return v
}

// httpsClient dials the node's HTTPS listener from inside its netns, trusting its CA.
func (n *node) httpsClient(t *testing.T) *http.Client {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(n.dataDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Transport: &http.Transport{DialContext: n.dialInNetns, TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func (n *node) token(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dataDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestServeApplyReadBack(t *testing.T) {
	n := newNode(t)
	n.start()

	for _, f := range []string{"ca.crt", "ca.key", "apiserver.crt", "apiserver.key", "token", "kubeconfig", "minicluster.db", "api.sock"} {
		st, err := os.Stat(filepath.Join(n.dataDir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if perm := st.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %o, want 600", f, perm)
		}
		if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 0 {
			t.Errorf("%s owned by uid %d, want root", f, sys.Uid)
		}
	}

	out, errOut, err := n.cli("apply", "-f", "../manifests/backend.yaml")
	if err != nil || out != "service/backend created\ndeployment.apps/backend created\n" {
		t.Fatalf("apply: %v\nstdout %q\nstderr %q", err, out, errOut)
	}

	// Over the unix socket, as in the README: curl --unix-socket.
	raw, _, err := n.exec("curl", "-sS", "--unix-socket", n.socket(), "http://localhost/api/v1/namespaces/default/services/backend")
	if err != nil {
		t.Fatalf("curl over the socket: %v", err)
	}
	var viaSocket map[string]any
	if err := json.Unmarshal([]byte(raw), &viaSocket); err != nil {
		t.Fatalf("socket reply %q: %v", raw, err)
	}
	ip, _ := field(viaSocket, "spec", "clusterIP").(string)
	if !strings.HasPrefix(ip, "10.") {
		t.Fatalf("clusterIP %q", ip)
	}

	// Over HTTPS with the token, with curl and with Go's client.
	tok := n.token(t)
	raw, _, err = n.exec("curl", "-sS", "--cacert", filepath.Join(n.dataDir, "ca.crt"), "-H", "Authorization: Bearer "+tok,
		"https://127.0.0.1:6443/api/v1/namespaces/default/services/backend")
	var viaTLS map[string]any
	if err != nil || json.Unmarshal([]byte(raw), &viaTLS) != nil || field(viaTLS, "metadata", "uid") != field(viaSocket, "metadata", "uid") {
		t.Fatalf("curl over HTTPS (%v): %s", err, raw)
	}
	hc := n.httpsClient(t)
	code, st := getJSON(t, hc, "https://127.0.0.1:6443/api/v1/namespaces/default/services")
	if code != 401 || st["kind"] != "Status" || st["reason"] != "Unauthorized" {
		t.Errorf("no token: %d %v, want a 401 Status", code, st)
	}
	code, st = getJSON(t, hc, "https://127.0.0.1:6443/api/v1/namespaces/default/services", "Authorization", "Bearer wrong")
	if code != 401 {
		t.Errorf("wrong token: %d", code)
	}
	code, v := getJSON(t, hc, "https://127.0.0.1:6443/version")
	if code != 200 || v["minor"] != "32" {
		t.Errorf("/version without a token: %d %v", code, v)
	}

	// A watch over HTTPS sees a service created afterwards.
	rv := field(viaSocket, "metadata", "resourceVersion").(string)
	req, _ := http.NewRequest("GET", "https://127.0.0.1:6443/api/v1/namespaces/default/services?watch=true&resourceVersion="+rv, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := hc.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, _, err := n.exec("curl", "-sS", "--fail-with-body", "--unix-socket", n.socket(), "-H", "Content-Type: application/json",
		"-d", `{"metadata":{"name":"watched"},"spec":{"ports":[{"port":8080}]}}`, "http://localhost/api/v1/namespaces/default/services"); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	found := false
	for !found && sc.Scan() {
		var ev map[string]any
		json.Unmarshal(sc.Bytes(), &ev)
		found = ev["type"] == "ADDED" && field(ev, "object", "metadata", "name") == "watched"
	}
	if !found {
		t.Fatalf("watch ended without ADDED for the new service: %v", sc.Err())
	}
}

// The minicluster CLI and the real kubectl print the same tables.
func TestCLIMatchesKubectl(t *testing.T) {
	n := newNode(t)
	n.start()
	if _, errOut, err := n.exec("kubectl", "apply", "-f", "../manifests/backend.yaml", "--validate=false"); err != nil {
		t.Logf("kubectl apply (needs OpenAPI, a later issue): %v %s", err, errOut)
		if _, errOut, err := n.cli("apply", "-f", "../manifests/backend.yaml"); err != nil {
			t.Fatal(errOut)
		}
	}
	for _, args := range [][]string{{"get", "svc"}, {"get", "svc", "-o", "wide"}, {"get", "deploy", "-o", "wide"}, {"get", "ns"},
		{"get", "endpoints", "-A"}, {"get", "svc", "backend", "-o", "name"}} {
		want, errK, err := n.exec("kubectl", args...)
		if err != nil {
			t.Fatalf("kubectl %v: %v %s", args, err, errK)
		}
		got, errM, err := n.cli(args...)
		if err != nil {
			t.Fatalf("minicluster %v: %v %s", args, err, errM)
		}
		if stripAges(got) != stripAges(want) {
			t.Errorf("%v:\nminicluster:\n%s\nkubectl:\n%s", args, got, want)
		}
	}
}

// stripAges blanks the AGE cells (the two commands run a second apart at most) while
// keeping every other cell and the column alignment.
func stripAges(s string) string {
	re := regexp.MustCompile(`\b\d+s\b`)
	return re.ReplaceAllStringFunc(s, func(a string) string { return strings.Repeat("#", len(a)) })
}

// After kill -9 every acknowledged write is there, with the same uid and ClusterIP.
func TestKillNineKeepsAcknowledgedWrites(t *testing.T) {
	n := newNode(t)
	n.start()
	c := n.socketClient()
	type ack struct{ uid, ip string }
	acked := map[string]ack{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				name := fmt.Sprintf("s-%d-%d", w, i)
				body := fmt.Sprintf(`{"metadata":{"name":%q},"spec":{"ports":[{"port":80}]}}`, name)
				resp, err := c.Post("http://x/api/v1/namespaces/default/services", "application/json", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 201 {
					t.Errorf("create %s: %d %s", name, resp.StatusCode, data)
					return
				}
				var m map[string]any
				json.Unmarshal(data, &m)
				mu.Lock()
				acked[name] = ack{field(m, "metadata", "uid").(string), field(m, "spec", "clusterIP").(string)}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	n.stop(syscall.SIGKILL)
	n.start()
	code, list := getJSON(t, n.socketClient(), "http://x/api/v1/namespaces/default/services")
	if code != 200 {
		t.Fatalf("list after restart: %d", code)
	}
	got := map[string]ack{}
	ips := map[string]bool{}
	for _, it := range list["items"].([]any) {
		m := it.(map[string]any)
		ip := field(m, "spec", "clusterIP").(string)
		if ips[ip] {
			t.Errorf("clusterIP %s held by two services", ip)
		}
		ips[ip] = true
		got[field(m, "metadata", "name").(string)] = ack{field(m, "metadata", "uid").(string), ip}
	}
	if len(acked) != 80 {
		t.Fatalf("only %d creates acknowledged", len(acked))
	}
	for name, a := range acked {
		if got[name] != a {
			t.Errorf("%s: after kill -9 %+v, acknowledged %+v", name, got[name], a)
		}
	}
	if len(got) != len(acked)+1 { // + the kubernetes service
		t.Errorf("%d services after restart, want %d", len(got), len(acked)+1)
	}
}

func TestGracefulShutdownAndNamespaceLifecycle(t *testing.T) {
	n := newNode(t)
	n.start()
	manifest := filepath.Join(t.TempDir(), "team.yaml")
	os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: Service
metadata: {name: s, namespace: team}
spec:
  ports: [{port: 80}]
`), 0o600)
	if out, errOut, err := n.cli("apply", "-f", manifest); err != nil || out != "namespace/team created\nservice/s created\n" {
		t.Fatalf("apply: %v %q %s", err, out, errOut)
	}
	if _, errOut, err := n.exec("kubectl", "delete", "namespace", "team", "--wait=false"); err != nil {
		t.Fatalf("delete namespace: %v %s", err, errOut)
	}
	eventually(t, 10*time.Second, func() error {
		code, _ := getJSON(t, n.socketClient(), "http://x/api/v1/namespaces/team")
		if code != 404 {
			return fmt.Errorf("namespace still there (%d)", code)
		}
		return nil
	})
	// A watch stays open while the daemon stops: SIGTERM must still end it promptly.
	resp, err := n.socketClient().Get("http://x/api/v1/pods?watch=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	if err := n.stop(syscall.SIGTERM); err != nil {
		t.Errorf("daemon exit after SIGTERM: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	if _, err := os.Stat(n.socket()); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

// The workload controllers run in the daemon: a Deployment gets a ReplicaSet and pods,
// follows scaling, and deleting it removes everything it owned.
func TestWorkloadControllers(t *testing.T) {
	n := newNode(t)
	n.start()
	if _, errOut, err := n.cli("apply", "-f", "../manifests/backend.yaml"); err != nil {
		t.Fatal(errOut)
	}
	count := func(kind string) int {
		out, _, err := n.cli("get", kind, "-o", "name")
		if err != nil {
			return -1
		}
		return len(strings.Fields(out))
	}
	waitCount := func(kind string, want int) {
		t.Helper()
		eventually(t, 10*time.Second, func() error {
			if got := count(kind); got != want {
				return fmt.Errorf("%d %s, want %d", got, kind, want)
			}
			return nil
		})
	}
	waitCount("rs", 1)
	waitCount("pods", 3)
	if _, errOut, err := n.exec("kubectl", "scale", "deployment", "backend", "--replicas=5"); err != nil {
		t.Fatal(errOut)
	}
	waitCount("pods", 5)
	if _, errOut, err := n.exec("kubectl", "delete", "deployment", "backend"); err != nil {
		t.Fatal(errOut)
	}
	waitCount("rs", 0)
	waitCount("pods", 0)
}
