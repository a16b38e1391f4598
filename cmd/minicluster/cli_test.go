package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/apiserver/apitest"
)

// cluster is an API server behind TLS and a token, and a kubeconfig for it.
type cluster struct {
	kubeconfig string
	dir        string
	close      func()
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	srv := apitest.NewServer(t)
	ts := httptest.NewTLSServer(apiserver.RequireToken("tok", srv.Handler()))
	var once sync.Once
	closeAll := func() {
		once.Do(func() {
			ts.CloseClientConnections()
			ts.Close()
		})
	}
	t.Cleanup(closeAll)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: ts.URL,
		CertificateAuthorityData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "tok"}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "c"
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return &cluster{kubeconfig: path, dir: dir, close: closeAll}
}

func (c *cluster) run(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(append([]string{"--kubeconfig", c.kubeconfig}, args...), strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

func (c *cluster) file(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var ageRE = regexp.MustCompile(`\b\d+[smhd]\b`)
var ipRE = regexp.MustCompile(`10\.\d+\.\d+\.\d+`)

var spacesRE = regexp.MustCompile(` +`)

// normalize hides what changes between runs (ages, dynamic ClusterIPs) and the column
// padding that follows from them; TestTablePrinter checks the padding exactly.
func normalize(s string) string {
	s = spacesRE.ReplaceAllString(s, " ")
	s = ipRE.ReplaceAllStringFunc(s, func(ip string) string {
		if ip == "10.96.0.1" {
			return ip
		}
		return "10.x.x.x"
	})
	return ageRE.ReplaceAllString(s, "AGE")
}

func TestApplyGetDelete(t *testing.T) {
	c := newCluster(t)
	backend, _ := os.ReadFile("../../manifests/backend.yaml")
	path := c.file(t, "backend.yaml", string(backend))

	steps := []struct {
		name     string
		stdin    string
		args     []string
		wantOut  string
		wantErr  string
		wantCode int
	}{
		{name: "apply creates", args: []string{"apply", "-f", path},
			wantOut: "service/backend created\ndeployment.apps/backend created\n"},
		{name: "apply again is unchanged", args: []string{"apply", "-f", path},
			wantOut: "service/backend unchanged\ndeployment.apps/backend unchanged\n"},
		{name: "apply a change from stdin", stdin: strings.Replace(string(backend), "replicas: 3", "replicas: 2", 1), args: []string{"apply", "-f", "-"},
			wantOut: "service/backend unchanged\ndeployment.apps/backend configured\n"},
		{name: "get svc", args: []string{"get", "svc"}, wantOut: "" +
			"NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE\n" +
			"backend ClusterIP 10.x.x.x <none> 80/TCP AGE\n" +
			"kubernetes ClusterIP 10.96.0.1 <none> 443/TCP AGE\n"},
		{name: "get deploy wide, flags after the type", args: []string{"get", "deploy", "-o", "wide"}, wantOut: "" +
			"NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR\n" +
			"backend 0/2 0 0 AGE backend registry.k8s.io/e2e-test-images/agnhost:2.53 app=backend\n"},
		{name: "get -o name across types", args: []string{"get", "svc,deploy", "-o", "name", "-l", "app!=none"},
			wantOut: "service/backend\nservice/kubernetes\ndeployment.apps/backend\n"},
		{name: "get all namespaces", args: []string{"get", "ns", "-A"}, wantOut: "" +
			"NAME STATUS AGE\n" +
			"default Active AGE\n" +
			"kube-node-lease Active AGE\n" +
			"kube-public Active AGE\n" +
			"kube-system Active AGE\n"},
		{name: "get endpoints -A", args: []string{"-n", "kube-system", "get", "ep", "-A"}, wantOut: "" +
			"NAMESPACE NAME ENDPOINTS AGE\n" +
			"default kubernetes 127.0.0.1:6443 AGE\n"},
		{name: "get yaml", args: []string{"get", "svc", "backend", "-o", "yaml"}, wantOut: "clusterIP: 10.x.x.x"},
		{name: "empty namespace", args: []string{"get", "pods", "-n", "kube-system"}, wantErr: "No resources found in kube-system namespace.\n"},
		{name: "missing object", args: []string{"get", "svc", "nope"}, wantCode: 1,
			wantErr: "Error from server (NotFound): services \"nope\" not found\n"},
		{name: "unknown type", args: []string{"get", "widgets"}, wantCode: 1, wantErr: `the server doesn't have a resource type "widgets"`},
		{name: "delete by file", args: []string{"delete", "-f", path},
			wantOut: "service \"backend\" deleted\ndeployment.apps \"backend\" deleted\n"},
		{name: "delete missing", args: []string{"delete", "svc", "backend"}, wantCode: 1, wantErr: "(NotFound)"},
		{name: "version", args: []string{"version"}, wantOut: "Server Version: v1.32.0-minicluster"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			out, errOut, code := c.run(t, st.stdin, st.args...)
			if code != st.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, st.wantCode, out, errOut)
			}
			if got := normalize(out); st.wantOut != "" && !strings.Contains(got, st.wantOut) || st.wantOut == "" && got != "" {
				t.Errorf("stdout:\n%s\nwant:\n%s", got, st.wantOut)
			}
			if st.wantErr != "" && !strings.Contains(errOut, st.wantErr) || st.wantErr == "" && errOut != "" {
				t.Errorf("stderr %q, want %q", errOut, st.wantErr)
			}
		})
	}
}

func TestApplyReportsEachFailureWithLines(t *testing.T) {
	c := newCluster(t)
	path := c.file(t, "mixed.yaml", `apiVersion: v1
kind: Service
metadata:
  name: bad
spec:
  ports:
  - port: 0
---
apiVersion: v1
kind: Service
metadata:
  name: good
spec:
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: typo
spec:
  replicas: "three"
`)
	out, errOut, code := c.run(t, "", "apply", "-f", path)
	if code == 0 {
		t.Fatal("apply with failing documents exited 0")
	}
	if out != "service/good created\n" {
		t.Errorf("stdout %q: the good document must still be applied", out)
	}
	for _, want := range []string{
		`Error from server (Invalid): error when creating "` + path + `": Service "bad" is invalid`,
		path + ":7: spec.ports[0].port:",
		path + ":22: spec.replicas: cannot unmarshal string",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

func TestSplitCommandAndFlags(t *testing.T) {
	cmd, rest := splitCommand([]string{"--kubeconfig", "x", "-n", "ns", "get", "svc", "--data-dir=/d"})
	if cmd != "get" || strings.Join(rest, " ") != "--kubeconfig x -n ns svc --data-dir=/d" {
		t.Errorf("splitCommand: %q %q", cmd, rest)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"bogus"}, nil, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), `unknown command "bogus"`) {
		t.Errorf("unknown command: %d %q", code, errOut.String())
	}
	if code := run([]string{"--kubeconfig", "/nonexistent", "get", "svc"}, nil, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "kubeconfig") {
		t.Errorf("missing kubeconfig: %d %q", code, errOut.String())
	}
}

func TestDescribeHelpers(t *testing.T) {
	for in, want := range map[string]string{"apiVersion": "API Version", "firstTimestamp": "First Timestamp", "uid": "UID",
		"involvedObject": "Involved Object", "podIPs": "Pod IPs", "type": "Type"} {
		if got := fieldTitle(in); got != want {
			t.Errorf("fieldTitle(%q) = %q, want %q", in, got, want)
		}
	}
	cpu := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
	for _, c := range []struct {
		res  corev1.ResourceRequirements
		want corev1.PodQOSClass
	}{
		{corev1.ResourceRequirements{}, corev1.PodQOSBestEffort},
		{corev1.ResourceRequirements{Limits: cpu}, corev1.PodQOSGuaranteed},
		{corev1.ResourceRequirements{Limits: cpu, Requests: cpu}, corev1.PodQOSGuaranteed},
		{corev1.ResourceRequirements{Requests: cpu}, corev1.PodQOSBurstable},
	} {
		if got := apiserver.PodQOSClass(corev1.PodSpec{Containers: []corev1.Container{{Resources: c.res}}}); got != c.want {
			t.Errorf("qosClass(%v) = %s, want %s", c.res, got, c.want)
		}
	}
}

func TestServeFlags(t *testing.T) {
	c, err := parseServeFlags([]string{"--dns-forward-for", "192.168.1.7/16, 10.1.0.0/24", "--dns-upstream", "127.0.0.9"}, &bytes.Buffer{})
	if err != nil || fmt.Sprint(c.dnsForwardFor) != "[192.168.0.0/16 10.1.0.0/24]" || fmt.Sprint(c.dnsUpstreams) != "[127.0.0.9:53]" {
		t.Errorf("parsed %v %v: %v", c.dnsForwardFor, c.dnsUpstreams, err)
	}
	for _, bad := range [][]string{{"--dns-forward-for", "192.168.1.7"}, {"--dns-upstream", "resolver.example"}, {"--instance", "Mc"}, {"--dns-ttl", "0s"}} {
		if _, err := parseServeFlags(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzCommandLine(f *testing.F) {
	f.Add("get svc -o wide -n x")
	f.Add("apply -f")
	f.Add("serve --service-cidr 10.0.0.0/99 --instance X")
	f.Add("delete -f a b")
	f.Add("serve --dns-forward-for 10.0.0.0/8,,x")
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Fields(line)
		splitCommand(args)
		parseServeFlags(args, &bytes.Buffer{})
		newClientFromArgs(append([]string{"--kubeconfig", "/nonexistent"}, args...))
	})
}

func TestTablePrinter(t *testing.T) {
	table := &metav1.Table{
		ColumnDefinitions: []metav1.TableColumnDefinition{{Name: "Name"}, {Name: "Type"}, {Name: "Cluster-IP"},
			{Name: "Port(s)"}, {Name: "Age"}, {Name: "Selector", Priority: 1}},
		Rows: []metav1.TableRow{
			{Cells: []any{"backend", "ClusterIP", "10.96.142.23", "80/TCP", "3s", "app=backend"},
				Object: runtime.RawExtension{Raw: []byte(`{"metadata":{"namespace":"default"}}`)}},
			{Cells: []any{"kubernetes", "ClusterIP", "10.96.0.1", "443/TCP", "1m", nil},
				Object: runtime.RawExtension{Raw: []byte(`{"metadata":{"namespace":"default"}}`)}},
		},
	}
	for _, tt := range []struct {
		name string
		p    tablePrinter
		want string
	}{
		{"plain", tablePrinter{}, "" +
			"NAME         TYPE        CLUSTER-IP     PORT(S)   AGE\n" +
			"backend      ClusterIP   10.96.142.23   80/TCP    3s\n" +
			"kubernetes   ClusterIP   10.96.0.1      443/TCP   1m\n"},
		{"wide with namespace", tablePrinter{wide: true, withNS: true}, "" +
			"NAMESPACE   NAME         TYPE        CLUSTER-IP     PORT(S)   AGE   SELECTOR\n" +
			"default     backend      ClusterIP   10.96.142.23   80/TCP    3s    app=backend\n" +
			"default     kubernetes   ClusterIP   10.96.0.1      443/TCP   1m    <none>\n"},
		{"names with prefix", tablePrinter{names: true, prefix: "service/"}, "service/backend\nservice/kubernetes\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := newTabWriter(&buf)
			tt.p.w = w
			tt.p.print(table, true)
			w.Flush()
			if buf.String() != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", buf.String(), tt.want)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestGetWatchPrintsNewRows(t *testing.T) {
	c := newCluster(t)
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"--kubeconfig", c.kubeconfig, "get", "svc", "-w"}, nil, &out, &errOut)
	}()
	waitFor := func(what string) {
		t.Helper()
		err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
			return strings.Contains(out.String(), what), nil
		})
		if err != nil {
			t.Fatalf("%q not printed; stdout %q stderr %q", what, out.String(), errOut.String())
		}
	}
	waitFor("kubernetes")
	path := c.file(t, "s.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: late}\nspec: {ports: [{port: 81}]}\n")
	if _, errText, code := c.run(t, "", "apply", "-f", path); code != 0 {
		t.Fatal(errText)
	}
	waitFor("late")
	if lines := strings.Count(out.String(), "NAME"); lines != 1 {
		t.Errorf("header printed %d times:\n%s", lines, out.String())
	}
	c.close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("get -w did not return when the server went away")
	}
}

// The daemon refuses a data dir, or a file in it, that group or others can use.
func TestCheckDataDir(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o700) // as the daemon makes it
	secret := filepath.Join(dir, "token")
	if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkDataDir(dir); err != nil {
		t.Fatalf("a 0700 dir with a 0600 file: %v", err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o755}, {dir, 0o701}, {secret, 0o644}, {secret, 0o620}} {
		os.Chmod(c.path, c.mode)
		if err := checkDataDir(dir); err == nil || !strings.Contains(err.Error(), "unsafe data dir: "+c.path) {
			t.Errorf("%s at %o: %v", c.path, c.mode, err)
		}
		os.Chmod(dir, 0o700)
		os.Chmod(secret, 0o600)
	}
	// Issue 19 (12): a parent others may write to (without the sticky bit) is refused.
	parent := t.TempDir()
	nested := filepath.Join(parent, "data")
	if err := os.Mkdir(nested, 0o700); err != nil {
		t.Fatal(err)
	}
	for mode, ok := range map[os.FileMode]bool{0o755: true, 0o777 | os.ModeSticky: true, 0o777: false, 0o775: false} {
		os.Chmod(parent, mode)
		err := checkDataDir(nested)
		if ok != (err == nil) || !ok && !strings.Contains(err.Error(), "unsafe data dir: its parent "+parent+" is writable") {
			t.Errorf("parent at %s: %v", mode, err)
		}
	}
}

// describe without root: the endpoints line comes from the ready endpoints of the
// service's slices, the events table from the object's events, a name that is no
// object's is a prefix, and errors come after the output.
func TestDescribe(t *testing.T) {
	c := newCluster(t)
	path := c.file(t, "web.yaml", `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.244.0.5], conditions: {ready: true}}
- {addresses: [10.244.0.6], conditions: {ready: false}}
`)
	if _, errOut, code := c.run(t, "", "apply", "-f", path); code != 0 {
		t.Fatal(errOut)
	}
	out, _, _ := c.run(t, "", "get", "svc", "web", "-o", "json")
	var svc struct{ Metadata struct{ UID string } }
	if err := json.Unmarshal([]byte(out), &svc); err != nil || svc.Metadata.UID == "" {
		t.Fatalf("get svc web: %q %v", out, err)
	}
	uid := svc.Metadata.UID
	event := c.file(t, "ev.yaml", `apiVersion: v1
kind: Event
metadata: {name: web.1}
involvedObject: {apiVersion: v1, kind: Service, name: web, namespace: default, uid: `+uid+`}
type: Warning
reason: Tested
message: twice
source: {component: tester}
count: 2
firstTimestamp: "2026-01-01T00:00:00Z"
lastTimestamp: "2026-01-01T00:10:00Z"
`)
	if _, errOut, code := c.run(t, "", "apply", "-f", event); code != 0 {
		t.Fatal(errOut)
	}
	out, errOut, code := c.run(t, "", "describe", "svc", "nope", "we")
	if code != 1 || errOut != "Error from server (NotFound): services \"nope\" not found\n" {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"Name:                     web\n", "Selector:                 app=web\n",
		"Port:                     http  80/TCP\n", "TargetPort:               8080/TCP\n", "Endpoints:                10.244.0.5:8080\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe svc lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`Warning\s+Tested\s+\S+ \(x2 over \S+\)\s+tester\s+twice\n\n$`).MatchString(out) {
		t.Errorf("no events table ending the output (and the prefix match's blank line):\n%s", out)
	}
	if _, errOut, code := c.run(t, "", "describe", "pods"); code != 0 || errOut != "No resources found in default namespace.\n" {
		t.Errorf("no pods: exit %d, stderr %q", code, errOut)
	}
}
