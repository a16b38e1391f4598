package apiserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/minicluster/minicluster/store"
)

type testServer struct {
	*Server
	url string
	// vars are values learned by earlier steps, substituted for {{name}} in later ones.
	vars map[string]string
}

func (s *testServer) expand(v string) string {
	for k, val := range s.vars {
		v = strings.ReplaceAll(v, "{{"+k+"}}", val)
	}
	return v
}

// newTestServer serves a fresh store; configure changes the server's configuration.
func newTestServer(t testing.TB, configure ...func(*Config)) *testServer {
	return newTestServerHistory(t, 0, configure...)
}

// newTestServerHistory keeps only history events for watch resumption (0: the default).
func newTestServerHistory(t testing.TB, history int, configure ...func(*Config)) *testServer {
	t.Helper()
	st, err := store.Open(store.Config{Path: filepath.Join(t.TempDir(), "db"), History: history})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: t.TempDir(), Listen: "127.0.0.1:6443", ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"),
		ClusterDomain: "cluster.local", Store: st}
	for _, f := range configure {
		f(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Boot(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		if err := st.Check(); err != nil {
			t.Errorf("bbolt consistency: %v", err)
		}
		st.Close()
	})
	return &testServer{Server: srv, url: hs.URL, vars: map[string]string{}}
}

type response struct {
	code   int
	body   []byte
	header http.Header
}

func (r response) status() metav1.Status {
	var st metav1.Status
	json.Unmarshal(r.body, &st)
	return st
}

func (r response) object() map[string]any {
	var m map[string]any
	json.Unmarshal(r.body, &m)
	return m
}

// get walks a decoded JSON object by keys and indexes ("spec", "ports", 0, "nodePort").
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func (s *testServer) do(t *testing.T, method, path, contentType, body string, headers ...string) response {
	t.Helper()
	return s.doWith(t, http.DefaultClient, method, path, contentType, body, headers...)
}

// noRedirects is a client that returns redirects rather than following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (s *testServer) doWith(t *testing.T, client *http.Client, method, path, contentType, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, s.url+s.expand(path), strings.NewReader(s.expand(body)))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf strings.Builder
	bufio.NewReader(resp.Body).WriteTo(&buf)
	return response{code: resp.StatusCode, body: []byte(buf.String()), header: resp.Header}
}

const (
	jsonCT  = "application/json"
	mergeCT = "application/merge-patch+json"
)

const svcJSON = `{"apiVersion":"v1","kind":"Service","metadata":{"name":"backend","labels":{"app":"backend"}},
 "spec":{"selector":{"app":"backend"},"ports":[{"name":"http","port":80,"targetPort":8080}]}}`

const deployJSON = `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},
 "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},
  "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx:1.27","ports":[{"containerPort":80}]}]}}}}`

// step is one request in a scripted conversation with the server; steps run in order
// against one server, so later steps see earlier writes.
type step struct {
	name              string
	method, path      string
	contentType, body string
	headers           []string
	wantCode          int
	noRedirect        bool // the answer as it is, not where a redirect leads
	check             func(t *testing.T, r response)
}

func runSteps(t *testing.T, s *testServer, steps []step) {
	t.Helper()
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			client := http.DefaultClient
			if st.noRedirect {
				client = noRedirects
			}
			r := s.doWith(t, client, st.method, st.path, st.contentType, st.body, st.headers...)
			if r.code != st.wantCode {
				t.Fatalf("%s %s: code %d, want %d; body: %s", st.method, st.path, r.code, st.wantCode, r.body)
			}
			if r.code >= 400 {
				if stt := r.status(); stt.Kind != "Status" || stt.Status != metav1.StatusFailure || int(stt.Code) != r.code {
					t.Errorf("error body is not a failure Status with code %d: %s", r.code, r.body)
				}
			}
			if st.check != nil {
				st.check(t, r)
			}
		})
		if !ok {
			t.FailNow()
		}
	}
}

func wantReason(reason metav1.StatusReason) func(*testing.T, response) {
	return func(t *testing.T, r response) {
		t.Helper()
		if got := r.status().Reason; got != reason {
			t.Errorf("reason %q, want %q: %s", got, reason, r.body)
		}
	}
}

func wantCauses(fields ...string) func(*testing.T, response) {
	return func(t *testing.T, r response) {
		t.Helper()
		st := r.status()
		if st.Reason != metav1.StatusReasonInvalid || st.Details == nil {
			t.Fatalf("not an Invalid status with details: %s", r.body)
		}
		got := map[string]bool{}
		for _, c := range st.Details.Causes {
			got[c.Field] = true
		}
		for _, f := range fields {
			if !got[f] {
				t.Errorf("no cause for field %s in %s", f, r.body)
			}
		}
	}
}

func wantField(want any, path ...any) func(*testing.T, response) {
	return func(t *testing.T, r response) {
		t.Helper()
		if got := get(r.object(), path...); got != want {
			t.Errorf("%v = %v (%T), want %v; body %s", path, got, got, want, r.body)
		}
	}
}

func TestServiceLifecycle(t *testing.T) {
	s := newTestServer(t)
	runSteps(t, s, []step{
		{name: "create", method: "POST", path: "/api/v1/namespaces/default/services", contentType: jsonCT, body: svcJSON,
			wantCode: 201, check: func(t *testing.T, r response) {
				o := r.object()
				ip, _ := get(o, "spec", "clusterIP").(string)
				s.vars["clusterIP"] = ip
				// The static band is the range's first 256 addresses, 10.96.0.0-10.96.0.255 (not
				// every address whose third byte is 0: 10.109.0.108 is dynamic).
				addr, err := netip.ParseAddr(ip)
				if b := addr.As4(); err != nil || !netip.MustParsePrefix("10.96.0.0/12").Contains(addr) || b[1] == 96 && b[2] == 0 {
					t.Errorf("clusterIP %q: want a dynamic address in 10.96.0.0/12 above the static band", ip)
				}
				for _, c := range []struct {
					path []any
					want any
				}{
					{[]any{"spec", "type"}, "ClusterIP"}, {[]any{"spec", "sessionAffinity"}, "None"},
					{[]any{"spec", "ports", 0, "protocol"}, "TCP"}, {[]any{"spec", "ports", 0, "targetPort"}, 8080.0},
					{[]any{"metadata", "generation"}, 1.0}, {[]any{"metadata", "namespace"}, "default"},
					{[]any{"spec", "clusterIPs", 0}, ip}, {[]any{"kind"}, "Service"}, {[]any{"apiVersion"}, "v1"},
				} {
					if got := get(o, c.path...); got != c.want {
						t.Errorf("%v = %v, want %v", c.path, got, c.want)
					}
				}
				if get(o, "metadata", "uid") == nil || get(o, "metadata", "resourceVersion") == nil {
					t.Errorf("uid/resourceVersion not set: %s", r.body)
				}
			}},
		{name: "duplicate", method: "POST", path: "/api/v1/namespaces/default/services", contentType: jsonCT, body: svcJSON,
			wantCode: 409, check: wantReason(metav1.StatusReasonAlreadyExists)},
		{name: "get", method: "GET", path: "/api/v1/namespaces/default/services/backend", wantCode: 200,
			check: func(t *testing.T, r response) { wantField(s.vars["clusterIP"], "spec", "clusterIP")(t, r) }},
		{name: "get yaml", method: "GET", path: "/api/v1/namespaces/default/services/backend", headers: []string{"Accept", "application/yaml"},
			wantCode: 200, check: func(t *testing.T, r response) {
				if !strings.Contains(string(r.body), "clusterIP: "+s.vars["clusterIP"]) || r.header.Get("Content-Type") != "application/yaml" {
					t.Errorf("yaml: %s", r.body)
				}
			}},
		{name: "take the same clusterIP", method: "POST", path: "/api/v1/namespaces/default/services", contentType: jsonCT,
			body:     `{"metadata":{"name":"other"},"spec":{"clusterIP":"{{clusterIP}}","ports":[{"port":80}]}}`,
			wantCode: 422, check: wantCauses("spec.clusterIPs[0]")},
		{name: "clusterIP outside the range", method: "POST", path: "/api/v1/namespaces/default/services", contentType: jsonCT,
			body:     `{"metadata":{"name":"other"},"spec":{"clusterIP":"10.0.0.5","ports":[{"port":80}]}}`,
			wantCode: 422, check: wantCauses("spec.clusterIPs[0]")},
		{name: "requested clusterIP", method: "POST", path: "/api/v1/namespaces/default/services", contentType: jsonCT,
			body:     `{"metadata":{"name":"dns"},"spec":{"clusterIP":"10.96.0.10","ports":[{"port":53,"protocol":"UDP"}]}}`,
			wantCode: 201, check: wantField("10.96.0.10", "spec", "clusterIP")},
		{name: "headless", method: "POST", path: "/api/v1/namespaces/default/services", contentType: jsonCT,
			body:     `{"metadata":{"name":"db"},"spec":{"clusterIP":"None","selector":{"app":"db"}}}`,
			wantCode: 201, check: wantField("None", "spec", "clusterIP")},
		{name: "nodeport allocated", method: "POST", path: "/api/v1/namespaces/default/services", contentType: jsonCT,
			body:     `{"metadata":{"name":"np"},"spec":{"type":"NodePort","ports":[{"port":80}]}}`,
			wantCode: 201, check: func(t *testing.T, r response) {
				np, _ := get(r.object(), "spec", "ports", 0, "nodePort").(float64)
				if np < 30000 || np > 32767 {
					t.Errorf("nodePort %v outside 30000-32767", np)
				}
				s.vars["nodePort"] = fmt.Sprint(np)
			}},
		{name: "nodeport taken", method: "POST", path: "/api/v1/namespaces/default/services", contentType: jsonCT,
			body:     `{"metadata":{"name":"np2"},"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":{{nodePort}}}]}}`,
			wantCode: 422, check: wantCauses("spec.ports[0].nodePort")},
		{name: "nodeport outside range", method: "POST", path: "/api/v1/namespaces/default/services", contentType: jsonCT,
			body:     `{"metadata":{"name":"np2"},"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":80}]}}`,
			wantCode: 422, check: wantCauses("spec.ports[0].nodePort")},
		{name: "nodeport released when the type changes", method: "PATCH", path: "/api/v1/namespaces/default/services/np", contentType: mergeCT,
			body: `{"spec":{"type":"ClusterIP","ports":[{"port":80,"nodePort":null}]}}`, wantCode: 200},
		{name: "released nodeport can be requested", method: "POST", path: "/api/v1/namespaces/default/services", contentType: jsonCT,
			body: `{"metadata":{"name":"np3"},"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":{{nodePort}}}]}}`, wantCode: 201},
		{name: "clusterIP immutable", method: "PATCH", path: "/api/v1/namespaces/default/services/backend", contentType: mergeCT,
			body: `{"spec":{"clusterIP":"10.96.0.99"}}`, wantCode: 422, check: wantCauses("spec.clusterIP")},
		{name: "replace without clusterIP keeps it", method: "PUT", path: "/api/v1/namespaces/default/services/backend", contentType: jsonCT,
			body: svcJSON, wantCode: 200, check: func(t *testing.T, r response) { wantField(s.vars["clusterIP"], "spec", "clusterIP")(t, r) }},
		{name: "stale resourceVersion", method: "PUT", path: "/api/v1/namespaces/default/services/backend", contentType: jsonCT,
			body:     strings.Replace(svcJSON, `"name":"backend"`, `"name":"backend","resourceVersion":"1"`, 1),
			wantCode: 409, check: wantReason(metav1.StatusReasonConflict)},
		{name: "name mismatch", method: "PUT", path: "/api/v1/namespaces/default/services/other", contentType: jsonCT,
			body: svcJSON, wantCode: 400, check: wantReason(metav1.StatusReasonBadRequest)},
		{name: "delete", method: "DELETE", path: "/api/v1/namespaces/default/services/backend", wantCode: 200},
		{name: "gone", method: "GET", path: "/api/v1/namespaces/default/services/backend", wantCode: 404, check: wantReason(metav1.StatusReasonNotFound)},
		{name: "its clusterIP is free again", method: "POST", path: "/api/v1/namespaces/default/services", contentType: jsonCT,
			body: `{"metadata":{"name":"reuse"},"spec":{"clusterIP":"{{clusterIP}}","ports":[{"port":80}]}}`, wantCode: 201},
	})
}

// One client's watches are capped: past the cap a 429 Status, and a closed watch frees
// its place.
func TestWatchCapPerClient(t *testing.T) {
	st, err := store.Open(store.Config{Path: filepath.Join(t.TempDir(), "db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := New(Config{DataDir: t.TempDir(), Listen: "127.0.0.1:6443", ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"), Store: st, MaxWatchesPerClient: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Boot(context.Background()); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	open := func() *http.Response {
		resp, err := http.Get(hs.URL + "/api/v1/namespaces/default/pods?watch=true")
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	a, b := open(), open()
	if a.StatusCode != 200 || b.StatusCode != 200 {
		t.Fatalf("first two: %d %d", a.StatusCode, b.StatusCode)
	}
	c := open()
	body, _ := io.ReadAll(c.Body)
	if c.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "too many watches") {
		t.Errorf("third: %d %s", c.StatusCode, body)
	}
	a.Body.Close()
	err = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		d := open()
		d.Body.Close()
		return d.StatusCode == 200, nil
	})
	if err != nil {
		t.Fatal("a closed watch did not free its place")
	}
	b.Body.Close()
}

// On the unix socket each process is a client of its own (issue 19: all of them shared
// one cap of 500 watches): this process's third watch is refused, another process's first
// is not.
func TestWatchCapPerProcessOnTheSocket(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl (make deps)")
	}
	s := newTestServer(t, func(c *Config) { c.MaxWatchesPerClient = 2 })
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := listenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := s.httpServer(s.Handler())
	go srv.Serve(ln)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	const path = "http://minicluster/api/v1/namespaces/default/pods?watch=true"
	var open []*http.Response
	for range 3 {
		resp, err := client.Get(path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		open = append(open, resp)
	}
	if open[0].StatusCode != 200 || open[1].StatusCode != 200 || open[2].StatusCode != http.StatusTooManyRequests {
		t.Fatalf("this process's watches: %d %d %d", open[0].StatusCode, open[1].StatusCode, open[2].StatusCode)
	}
	out, _ := exec.Command("curl", "-sS", "-m", "1", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", sock, path).Output()
	if string(out) != "200" {
		t.Errorf("another process's first watch: %q, want 200 (cut by curl's timeout)", out)
	}
}

// A client that trickles its headers (slowloris) is cut off after the header timeout;
// others are served meanwhile.
func TestSlowHeadersCutOff(t *testing.T) {
	defer func(d time.Duration) { headerTimeout = d }(headerTimeout)
	headerTimeout = 300 * time.Millisecond
	s := newTestServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.httpServer(s.Handler())
	go srv.Serve(ln)
	defer srv.Close()
	slow, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.Write([]byte("GET /version HTTP/1.1\r\nHost: x\r\n"))
	start := time.Now()
	other := make(chan error, 1)
	go func() { // another client meanwhile
		resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		other <- err
	}()
	defer func() {
		if err := <-other; err != nil {
			t.Errorf("a well-behaved client: %v", err)
		}
	}()
	for range 10 { // a header line every 100 ms, never the end
		if _, err := slow.Write([]byte("X-Slow: 1\r\n")); err != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(slow)
	if took := time.Since(start); err != nil || took > 3*time.Second {
		t.Errorf("slow client: read %q, %v after %s", b, err, took)
	}
	if strings.Contains(string(b), "200 OK") {
		t.Errorf("the slow request was served: %q", b)
	}
}
