package apiserver

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const podsPath = "/api/v1/namespaces/default/pods"

func podJSON(name string, labels string) string {
	return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + name + `","labels":` + labels + `},
	 "spec":{"containers":[{"name":"c","image":"busybox:1.36","command":["sleep","1000"]}]}}`
}

func TestDeploymentVerbs(t *testing.T) {
	s := newTestServer(t)
	base := "/apis/apps/v1/namespaces/default/deployments"
	runSteps(t, s, []step{
		{name: "create with defaults", method: "POST", path: base, contentType: jsonCT, body: deployJSON, wantCode: 201,
			check: func(t *testing.T, r response) {
				o := r.object()
				for _, c := range []struct {
					path []any
					want any
				}{
					{[]any{"spec", "strategy", "type"}, "RollingUpdate"},
					{[]any{"spec", "strategy", "rollingUpdate", "maxSurge"}, "25%"},
					{[]any{"spec", "revisionHistoryLimit"}, 10.0},
					{[]any{"spec", "template", "spec", "restartPolicy"}, "Always"},
					{[]any{"spec", "template", "spec", "dnsPolicy"}, "ClusterFirst"},
					{[]any{"spec", "template", "spec", "terminationGracePeriodSeconds"}, 30.0},
					{[]any{"spec", "template", "spec", "containers", 0, "imagePullPolicy"}, "IfNotPresent"},
					{[]any{"spec", "template", "spec", "containers", 0, "ports", 0, "protocol"}, "TCP"},
				} {
					if got := get(o, c.path...); got != c.want {
						t.Errorf("%v = %v, want %v", c.path, got, c.want)
					}
				}
			}},
		{name: "scale get", method: "GET", path: base + "/web/scale", wantCode: 200, check: func(t *testing.T, r response) {
			wantField("Scale", "kind")(t, r)
			wantField("autoscaling/v1", "apiVersion")(t, r)
			wantField(2.0, "spec", "replicas")(t, r)
			wantField("app=web", "status", "selector")(t, r)
		}},
		{name: "scale patch (kubectl scale)", method: "PATCH", path: base + "/web/scale", contentType: mergeCT,
			body: `{"spec":{"replicas":5}}`, wantCode: 200, check: wantField(5.0, "spec", "replicas")},
		{name: "generation bumped by spec change", method: "GET", path: base + "/web", wantCode: 200, check: func(t *testing.T, r response) {
			wantField(5.0, "spec", "replicas")(t, r)
			wantField(2.0, "metadata", "generation")(t, r)
		}},
		{name: "scale put", method: "PUT", path: base + "/web/scale", contentType: jsonCT,
			body:     `{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"web"},"spec":{"replicas":1}}`,
			wantCode: 200, check: wantField(1.0, "spec", "replicas")},
		{name: "negative scale", method: "PATCH", path: base + "/web/scale", contentType: mergeCT,
			body: `{"spec":{"replicas":-1}}`, wantCode: 422, check: wantCauses("spec.replicas")},
		{name: "label change keeps generation", method: "PATCH", path: base + "/web", contentType: mergeCT,
			body: `{"metadata":{"labels":{"tier":"front"}}}`, wantCode: 200, check: wantField(3.0, "metadata", "generation")},
		{name: "status ignored on main resource", method: "PATCH", path: base + "/web", contentType: mergeCT,
			body: `{"status":{"replicas":7}}`, wantCode: 200, check: wantField(nil, "status", "replicas")},
		{name: "status subresource", method: "PUT", path: base + "/web/status", contentType: jsonCT,
			body:     strings.Replace(deployJSON, `"replicas":2,`, `"replicas":9,`, 1)[:len(deployJSON)-1] + `,"status":{"replicas":1,"readyReplicas":1}}`,
			wantCode: 200, check: func(t *testing.T, r response) {
				wantField(1.0, "status", "readyReplicas")(t, r)
				wantField(1.0, "spec", "replicas")(t, r) // spec untouched by a status write
			}},
		{name: "strategic merge keeps other containers", method: "PATCH", path: base + "/web",
			contentType: "application/strategic-merge-patch+json",
			body:        `{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}`, wantCode: 200,
			check: func(t *testing.T, r response) {
				names := map[any]bool{}
				for i := 0; i < 3; i++ {
					names[get(r.object(), "spec", "template", "spec", "containers", i, "name")] = true
				}
				if !names["web"] || !names["sidecar"] || len(names) != 3 { // the third is nil: exactly two
					t.Errorf("containers after strategic merge: %v", names)
				}
			}},
		{name: "json patch", method: "PATCH", path: base + "/web", contentType: "application/json-patch+json",
			body: `[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28"}]`, wantCode: 200,
			check: wantField("nginx:1.28", "spec", "template", "spec", "containers", 0, "image")},
		{name: "bad json patch", method: "PATCH", path: base + "/web", contentType: "application/json-patch+json",
			body: `[{"op":"replace","path":"/spec/nope/0","value":1}]`, wantCode: 422}, // as kube-apiserver: it does not apply
		{name: "json patch too many operations", method: "PATCH", path: base + "/web", contentType: "application/json-patch+json",
			body: "[" + strings.Repeat(`{"op":"test","path":"/kind","value":"Deployment"},`, 10000) + `{"op":"test","path":"/kind","value":"Deployment"}]`, wantCode: 413},
		// Issue 19: copies of copies double the document each time (40 operations took
		// the daemon to 2.6 GB); kube-apiserver's 3 MiB bound on what copies add ends it.
		{name: "json patch copy bomb", method: "PATCH", path: base + "/web", contentType: "application/json-patch+json",
			body: copyBomb(39), wantCode: 422}, // unbounded, 2^39 KiB: the test would not end
		{name: "json patch copies within the bound", method: "PATCH", path: base + "/web", contentType: "application/json-patch+json",
			body:     `[{"op":"add","path":"/metadata/annotations","value":{"a0":"v"}},{"op":"copy","from":"/metadata/annotations/a0","path":"/metadata/annotations/b0"}]`,
			wantCode: 200, check: wantField("v", "metadata", "annotations", "b0")},
		{name: "unsupported patch type", method: "PATCH", path: base + "/web", contentType: "text/plain", body: `{}`, wantCode: 415},
		{name: "selector immutable", method: "PATCH", path: base + "/web", contentType: mergeCT,
			body:     `{"spec":{"selector":{"matchLabels":{"app":"other"}},"template":{"metadata":{"labels":{"app":"other"}}}}}`,
			wantCode: 422, check: wantCauses("spec.selector")},
		{name: "selector must match template", method: "POST", path: base, contentType: jsonCT,
			body:     strings.Replace(strings.Replace(deployJSON, `"name":"web"`, `"name":"x"`, 1), `"labels":{"app":"web"}`, `"labels":{"app":"nope"}`, 1),
			wantCode: 422, check: wantCauses("spec.template.metadata.labels")},
		{name: "dry run stores nothing", method: "POST", path: base + "?dryRun=All", contentType: jsonCT,
			body: strings.Replace(deployJSON, `"name":"web"`, `"name":"dry"`, 1), wantCode: 201},
		{name: "dry run object absent", method: "GET", path: base + "/dry", wantCode: 404},
		{name: "wrong kind in body", method: "POST", path: base, contentType: jsonCT, body: svcJSON, wantCode: 400},
	})
}

func TestPodsSelectorsAndErrors(t *testing.T) {
	s := newTestServer(t)
	big := `{"metadata":{"name":"big","annotations":{"a":"` + strings.Repeat("x", 3<<20) + `"}}}`
	runSteps(t, s, []step{
		{name: "create a", method: "POST", path: podsPath, contentType: jsonCT, body: podJSON("a", `{"app":"x","tier":"1"}`), wantCode: 201,
			check: wantField("Pending", "status", "phase")},
		{name: "create b", method: "POST", path: podsPath, contentType: jsonCT, body: podJSON("b", `{"app":"y"}`), wantCode: 201},
		{name: "generateName", method: "POST", path: podsPath, contentType: jsonCT,
			body: strings.Replace(podJSON("", `{"app":"x"}`), `"name":""`, `"generateName":"gen-"`, 1), wantCode: 201,
			check: func(t *testing.T, r response) {
				if n, _ := get(r.object(), "metadata", "name").(string); !strings.HasPrefix(n, "gen-") || len(n) != 9 {
					t.Errorf("generated name %q", n)
				}
			}},
		{name: "yaml body", method: "POST", path: podsPath, contentType: "application/yaml",
			body: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: y\nspec:\n  containers:\n  - name: c\n    image: busybox\n", wantCode: 201},
		{name: "label selector", method: "GET", path: podsPath + "?labelSelector=app%3Dx,tier", wantCode: 200, check: func(t *testing.T, r response) {
			items, _ := get(r.object(), "items").([]any)
			if len(items) != 1 || get(items[0], "metadata", "name") != "a" {
				t.Errorf("selected %d items: %s", len(items), r.body)
			}
			wantField("PodList", "kind")(t, r)
		}},
		{name: "field selector", method: "GET", path: "/api/v1/pods?fieldSelector=metadata.name%3Db,status.phase%3DPending", wantCode: 200,
			check: func(t *testing.T, r response) {
				if items, _ := get(r.object(), "items").([]any); len(items) != 1 {
					t.Errorf("selected %d items", len(items))
				}
			}},
		{name: "unsupported field", method: "GET", path: podsPath + "?fieldSelector=spec.foo%3Dx", wantCode: 400},
		{name: "event about a", method: "POST", path: "/api/v1/namespaces/default/events", contentType: jsonCT,
			body: `{"metadata":{"name":"a.1"},"involvedObject":{"kind":"Pod","name":"a","namespace":"default","uid":"u-a"},"reason":"Started","type":"Normal"}`, wantCode: 201},
		{name: "event about b", method: "POST", path: "/api/v1/namespaces/default/events", contentType: jsonCT,
			body: `{"metadata":{"name":"b.1"},"involvedObject":{"kind":"Pod","name":"b","namespace":"default","uid":"u-b"},"reason":"Started","type":"Normal"}`, wantCode: 201},
		{name: "events by involved object (kubectl describe)", method: "GET", wantCode: 200,
			path: "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Da,involvedObject.namespace%3Ddefault,involvedObject.kind%3DPod,involvedObject.uid%3Du-a",
			check: func(t *testing.T, r response) {
				if items, _ := get(r.object(), "items").([]any); len(items) != 1 || get(items[0].(map[string]any), "metadata", "name") != "a.1" {
					t.Errorf("selected %v", items)
				}
			}},
		{name: "bad label selector", method: "GET", path: podsPath + "?labelSelector=a%20in%20(", wantCode: 400},
		{name: "invalid pod", method: "POST", path: podsPath, contentType: jsonCT,
			body:     `{"metadata":{"name":"Bad_Name","labels":{"bad key":"v"}},"spec":{"containers":[{"name":"c","ports":[{"containerPort":70000,"protocol":"ICMP"}]}]}}`,
			wantCode: 422, check: wantCauses("metadata.name", "metadata.labels", "spec.containers[0].image",
				"spec.containers[0].ports[0].containerPort", "spec.containers[0].ports[0].protocol")},
		{name: "malformed json", method: "POST", path: podsPath, contentType: jsonCT, body: `{"metadata":`, wantCode: 400},
		{name: "wrong field type", method: "POST", path: podsPath, contentType: jsonCT, body: `{"metadata":{"name":5}}`, wantCode: 400},
		{name: "malformed yaml", method: "POST", path: podsPath, contentType: "application/yaml", body: "a: [", wantCode: 400},
		{name: "too large", method: "POST", path: podsPath, contentType: jsonCT, body: big, wantCode: 413},
		{name: "strict unknown field", method: "POST", path: podsPath + "?fieldValidation=Strict", contentType: jsonCT,
			body: strings.Replace(podJSON("s", `{}`), `"spec":{`, `"spec":{"bogus":1,`, 1), wantCode: 400,
			check: func(t *testing.T, r response) {
				if !strings.Contains(r.status().Message, `unknown field "spec.bogus"`) {
					t.Errorf("message %q does not name the field", r.status().Message)
				}
			}},
		{name: "warn unknown field", method: "POST", path: podsPath, contentType: jsonCT,
			body: strings.Replace(podJSON("w", `{}`), `"spec":{`, `"spec":{"bogus":1,`, 1), wantCode: 201,
			check: func(t *testing.T, r response) {
				if !strings.Contains(r.header.Get("Warning"), "spec.bogus") {
					t.Errorf("no Warning header naming the field: %v", r.header)
				}
			}},
		{name: "missing namespace", method: "POST", path: "/api/v1/namespaces/nope/pods", contentType: jsonCT, body: podJSON("p", `{}`), wantCode: 404},
		{name: "namespace in body differs", method: "POST", path: podsPath, contentType: jsonCT,
			body: strings.Replace(podJSON("p", `{}`), `"name":"p"`, `"name":"p","namespace":"kube-system"`, 1), wantCode: 400},
		{name: "unknown resource", method: "GET", path: "/api/v1/namespaces/default/widgets", wantCode: 404},
		{name: "unknown group", method: "GET", path: "/apis/example.com/v1/namespaces/default/widgets/n", wantCode: 404,
			check: func(t *testing.T, r response) { // kube-apiserver's words
				if st := r.status(); st.Message != "the server could not find the requested resource" || st.Reason != metav1.StatusReasonNotFound {
					t.Errorf("status %+v", st)
				}
			}},
		{name: "unknown subresource", method: "GET", path: podsPath + "/a/bogus", wantCode: 404},
		{name: "method not allowed", method: "POST", path: podsPath + "/a", contentType: jsonCT, body: `{}`, wantCode: 405},
		{name: "not acceptable", method: "GET", path: podsPath, headers: []string{"Accept", "text/html"}, wantCode: 406},
		{name: "protobuf table not served", method: "GET", path: podsPath, headers: []string{"Accept", "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io"}, wantCode: 406},
		{name: "wrong content type", method: "POST", path: podsPath, contentType: "text/plain", body: "hello", wantCode: 415},
		{name: "truncated protobuf", method: "POST", path: podsPath, contentType: "application/vnd.kubernetes.protobuf", body: "k8s\x00\x0a\x05", wantCode: 400},
		{name: "deletecollection", method: "DELETE", path: podsPath + "?labelSelector=app%3Dx", wantCode: 200, check: func(t *testing.T, r response) {
			if items, _ := get(r.object(), "items").([]any); len(items) != 2 {
				t.Errorf("deleted %d, want 2 (a and gen-)", len(items))
			}
		}},
		{name: "others remain", method: "GET", path: podsPath, wantCode: 200, check: func(t *testing.T, r response) {
			if items, _ := get(r.object(), "items").([]any); len(items) != 3 {
				t.Errorf("%d pods left, want b, y, w", len(items))
			}
		}},
		{name: "probe defaults", method: "POST", path: podsPath, contentType: jsonCT, wantCode: 201,
			body: strings.Replace(podJSON("probed", `{}`), `"command":["sleep","1000"]`,
				`"command":["sleep","1000"],"livenessProbe":{"httpGet":{"port":8080}},"readinessProbe":{"exec":{"command":["true"]},"periodSeconds":2}`, 1),
			check: func(t *testing.T, r response) {
				c := []any{"spec", "containers", 0}
				for _, f := range []struct {
					path []any
					want any
				}{
					{[]any{"livenessProbe", "httpGet", "path"}, "/"}, {[]any{"livenessProbe", "httpGet", "scheme"}, "HTTP"},
					{[]any{"livenessProbe", "timeoutSeconds"}, 1.0}, {[]any{"livenessProbe", "periodSeconds"}, 10.0},
					{[]any{"livenessProbe", "successThreshold"}, 1.0}, {[]any{"livenessProbe", "failureThreshold"}, 3.0},
					{[]any{"readinessProbe", "periodSeconds"}, 2.0}, {[]any{"readinessProbe", "failureThreshold"}, 3.0},
				} {
					if got := get(r.object(), append(c, f.path...)...); got != f.want {
						t.Errorf("%v = %v, want %v (kube-apiserver's default)", f.path, got, f.want)
					}
				}
			}},
	})
}

func TestDeleteWithFinalizersAndPropagation(t *testing.T) {
	s := newTestServer(t)
	runSteps(t, s, []step{
		{name: "create held", method: "POST", path: podsPath, contentType: jsonCT,
			body: strings.Replace(podJSON("held", `{}`), `"name":"held"`, `"name":"held","finalizers":["example.com/hold"]`, 1), wantCode: 201},
		{name: "delete marks", method: "DELETE", path: podsPath + "/held", wantCode: 200, check: func(t *testing.T, r response) {
			if get(r.object(), "metadata", "deletionTimestamp") == nil {
				t.Errorf("no deletionTimestamp: %s", r.body)
			}
		}},
		{name: "still there", method: "GET", path: podsPath + "/held", wantCode: 200},
		{name: "finalizer removed", method: "PATCH", path: podsPath + "/held", contentType: mergeCT, body: `{"metadata":{"finalizers":null}}`, wantCode: 200},
		{name: "now gone", method: "GET", path: podsPath + "/held", wantCode: 404},
		{name: "create fg", method: "POST", path: podsPath, contentType: jsonCT, body: podJSON("fg", `{}`), wantCode: 201},
		{name: "foreground recorded", method: "DELETE", path: podsPath + "/fg", contentType: jsonCT, body: `{"propagationPolicy":"Foreground"}`,
			wantCode: 200, check: wantField("foregroundDeletion", "metadata", "finalizers", 0)},
		{name: "bad policy", method: "DELETE", path: podsPath + "/fg?propagationPolicy=Sideways", wantCode: 400},
		{name: "uid precondition", method: "DELETE", path: podsPath + "/fg", contentType: jsonCT, body: `{"preconditions":{"uid":"nope"}}`, wantCode: 409},
	})
}

func TestNamespaceTerminatingRefusesContent(t *testing.T) {
	s := newTestServer(t)
	runSteps(t, s, []step{
		{name: "create ns", method: "POST", path: "/api/v1/namespaces", contentType: jsonCT, body: `{"metadata":{"name":"team"}}`, wantCode: 201,
			check: func(t *testing.T, r response) {
				wantField("kubernetes", "spec", "finalizers", 0)(t, r)
				wantField("Active", "status", "phase")(t, r)
			}},
		{name: "pod in ns", method: "POST", path: "/api/v1/namespaces/team/pods", contentType: jsonCT, body: podJSON("p", `{}`), wantCode: 201},
		{name: "delete ns", method: "DELETE", path: "/api/v1/namespaces/team", wantCode: 200, check: wantField("Terminating", "status", "phase")},
		{name: "create refused", method: "POST", path: "/api/v1/namespaces/team/pods", contentType: jsonCT, body: podJSON("q", `{}`),
			wantCode: 403, check: wantReason(metav1.StatusReasonForbidden)},
		{name: "invalid ns name", method: "POST", path: "/api/v1/namespaces", contentType: jsonCT, body: `{"metadata":{"name":"a.b"}}`,
			wantCode: 422, check: wantCauses("metadata.name")},
	})
}

func TestTables(t *testing.T) {
	s := newTestServer(t)
	table := []string{"Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
	s.do(t, "POST", "/api/v1/namespaces/default/services", jsonCT, svcJSON)
	runSteps(t, s, []step{
		{name: "services", method: "GET", path: "/api/v1/namespaces/default/services", headers: table, wantCode: 200,
			check: func(t *testing.T, r response) {
				var tb metav1.Table
				if err := json.Unmarshal(r.body, &tb); err != nil || tb.Kind != "Table" {
					t.Fatalf("not a Table: %v %s", err, r.body)
				}
				var names []string
				for _, c := range tb.ColumnDefinitions {
					if c.Priority == 0 {
						names = append(names, c.Name)
					}
				}
				if got := strings.Join(names, ","); got != "Name,Type,Cluster-IP,External-IP,Port(s),Age" {
					t.Errorf("columns %s", got)
				}
				if len(tb.Rows) != 2 || tb.Rows[0].Cells[0] != "backend" || tb.Rows[0].Cells[4] != "80/TCP" || tb.Rows[0].Cells[6] != "app=backend" {
					t.Errorf("rows %+v", tb.Rows)
				}
				var meta metav1.PartialObjectMetadata
				if json.Unmarshal(tb.Rows[0].Object.Raw, &meta); meta.Namespace != "default" || meta.Kind != "PartialObjectMetadata" {
					t.Errorf("row object %s", tb.Rows[0].Object.Raw)
				}
			}},
	})
}

func TestDiscoveryAndVersion(t *testing.T) {
	s := newTestServer(t)
	runSteps(t, s, []step{
		{name: "version", method: "GET", path: "/version", wantCode: 200, check: func(t *testing.T, r response) {
			wantField("1", "major")(t, r)
			wantField("32", "minor")(t, r)
			if v, _ := get(r.object(), "gitVersion").(string); !strings.Contains(v, "minicluster") {
				t.Errorf("gitVersion %q", v)
			}
		}},
		{name: "api", method: "GET", path: "/api", wantCode: 200, check: wantField("v1", "versions", 0)},
		{name: "apis", method: "GET", path: "/apis", wantCode: 200, check: wantField("discovery.k8s.io", "groups", 0, "name")},
		{name: "apps", method: "GET", path: "/apis/apps/v1", wantCode: 200, check: func(t *testing.T, r response) {
			var l metav1.APIResourceList
			json.Unmarshal(r.body, &l)
			found := map[string]bool{}
			for _, res := range l.APIResources {
				found[res.Name] = true
				if res.Name == "deployments" && (res.ShortNames[0] != "deploy" || res.Categories[0] != "all") {
					t.Errorf("deployments: %+v", res)
				}
			}
			if !found["deployments/scale"] || !found["replicasets/status"] {
				t.Errorf("subresources missing: %v", found)
			}
		}},
		{name: "unknown path", method: "GET", path: "/apis/nope", wantCode: 404},
	})
}

func TestTokenRequired(t *testing.T) {
	h := RequireToken("secret", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("in")) }))
	for _, c := range []struct {
		path, auth string
		want       int
	}{
		{"/api/v1/pods", "", 401}, {"/api/v1/pods", "Bearer wrong", 401}, {"/api/v1/pods", "Bearer secret", 200},
		{"/version", "", 200}, {"/healthz", "", 200}, {"/readyz", "", 200}, {"/livez", "", 200}, {"/versionx", "", 401},
	} {
		req := httptest.NewRequest("GET", c.path, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s with %q: %d, want %d", c.path, c.auth, rec.Code, c.want)
		}
		if c.want == 401 && !strings.Contains(rec.Body.String(), `"reason":"Unauthorized"`) {
			t.Errorf("401 body is not a Status: %s", rec.Body)
		}
	}
}

// watchLines opens a watch and returns a channel of decoded events.
func (s *testServer) watchLines(t *testing.T, path string, headers ...string) <-chan map[string]any {
	t.Helper()
	req, _ := http.NewRequest("GET", s.url+path, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("watch %s: %d", path, resp.StatusCode)
	}
	out := make(chan map[string]any, 100)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev map[string]any
			json.Unmarshal(sc.Bytes(), &ev)
			out <- ev
		}
	}()
	t.Cleanup(func() { resp.Body.Close() })
	return out
}

func nextWatchEvent(t *testing.T, ch <-chan map[string]any) map[string]any {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event in 5s")
	}
	return nil
}

func TestWatch(t *testing.T) {
	s := newTestServer(t)
	created := s.do(t, "POST", podsPath, jsonCT, podJSON("a", `{"app":"x"}`))
	rv := get(created.object(), "metadata", "resourceVersion").(string)

	live := s.watchLines(t, podsPath+"?watch=true&resourceVersion="+rv+"&labelSelector=app%3Dx")
	initial := s.watchLines(t, podsPath+"?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
	if ev := nextWatchEvent(t, initial); ev["type"] != "ADDED" || get(ev, "object", "metadata", "name") != "a" {
		t.Errorf("initial event %v", ev)
	}
	if ev := nextWatchEvent(t, initial); ev["type"] != "BOOKMARK" || get(ev, "object", "metadata", "annotations", "k8s.io/initial-events-end") != "true" {
		t.Errorf("initial events end %v", ev)
	}
	s.do(t, "POST", podsPath, jsonCT, podJSON("b", `{"app":"x"}`))
	if ev := nextWatchEvent(t, live); ev["type"] != "ADDED" || get(ev, "object", "metadata", "name") != "b" {
		t.Errorf("live event %v", ev)
	}
	if ev := nextWatchEvent(t, initial); ev["type"] != "ADDED" || get(ev, "object", "metadata", "name") != "b" {
		t.Errorf("event after initial burst %v", ev)
	}
	s.do(t, "PATCH", podsPath+"/b", mergeCT, `{"metadata":{"labels":{"app":"y"}}}`)
	if ev := nextWatchEvent(t, live); ev["type"] != "DELETED" {
		t.Errorf("object leaving the selector: %v, want DELETED", ev["type"])
	}

	table := s.watchLines(t, podsPath+"?watch=true&resourceVersion="+rv, "Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	if ev := nextWatchEvent(t, table); get(ev, "object", "kind") != "Table" || get(ev, "object", "columnDefinitions", 0, "name") != "Name" {
		t.Errorf("first table event %v", ev)
	}
	if ev := nextWatchEvent(t, table); get(ev, "object", "columnDefinitions") != nil || get(ev, "object", "rows", 0, "cells", 0) != "b" {
		t.Errorf("second table event %v", ev)
	}

	ended := s.watchLines(t, podsPath+"?watch=true&timeoutSeconds=1")
	deadline := time.After(5 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-ended:
		case <-deadline:
			t.Fatal("watch with timeoutSeconds=1 still open after 5s")
		}
	}
}

func TestWatchTooOld(t *testing.T) {
	st := newTestServerHistory(t, 4)
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		st.do(t, "POST", podsPath, jsonCT, podJSON(n, `{}`))
	}
	ch := st.watchLines(t, podsPath+"?watch=true&resourceVersion=1")
	ev := nextWatchEvent(t, ch)
	if ev["type"] != "ERROR" || get(ev, "object", "code") != 410.0 || get(ev, "object", "reason") != "Expired" {
		t.Errorf("got %v, want ERROR 410 Expired", ev)
	}
}

func TestOpenAPIv3(t *testing.T) {
	s := newTestServer(t)
	r := s.do(t, "GET", "/openapi/v3", "", "")
	url, _ := get(r.object(), "paths", "apis/apps/v1", "serverRelativeURL").(string)
	if !strings.HasPrefix(url, "/openapi/v3/apis/apps/v1?hash=") {
		t.Fatalf("index: %s", r.body)
	}
	doc := s.do(t, "GET", url, "", "").object()
	patch := get(doc, "paths", "/apis/apps/v1/namespaces/{namespace}/deployments/{name}", "patch")
	if get(patch, "x-kubernetes-group-version-kind", "kind") != "Deployment" || get(patch, "parameters", 0, "name") != "fieldValidation" {
		t.Errorf("patch operation: %v", patch)
	}
	containers := get(doc, "components", "schemas", "io.k8s.api.core.v1.PodSpec", "properties", "containers")
	if get(containers, "x-kubernetes-patch-merge-key") != "name" || get(containers, "type") != "array" {
		t.Errorf("containers schema: %v", containers)
	}
	if get(doc, "components", "schemas", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "properties", "creationTimestamp", "allOf") == nil &&
		get(doc, "components", "schemas", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "properties", "creationTimestamp", "format") != "date-time" {
		t.Errorf("creationTimestamp is not a date-time")
	}
	// What kubectl explain needs: the kind on its schema, descriptions, required fields.
	deploy := get(doc, "components", "schemas", "io.k8s.api.apps.v1.Deployment")
	if get(deploy, "x-kubernetes-group-version-kind", 0, "kind") != "Deployment" || !strings.HasPrefix(fmt.Sprint(get(deploy, "description")), "Deployment enables") {
		t.Errorf("Deployment schema: kind %v, description %q", get(deploy, "x-kubernetes-group-version-kind"), get(deploy, "description"))
	}
	spec := get(doc, "components", "schemas", "io.k8s.api.apps.v1.DeploymentSpec")
	if fmt.Sprint(get(spec, "required")) != "[selector template]" || get(spec, "properties", "replicas", "description") == nil {
		t.Errorf("DeploymentSpec: required %v, replicas %v", get(spec, "required"), get(spec, "properties", "replicas"))
	}
	if code := s.do(t, "GET", "/openapi/v3/apis/nope/v1", "", "").code; code != 404 {
		t.Errorf("unknown group-version: %d", code)
	}
}

func TestAggregatedDiscovery(t *testing.T) {
	s := newTestServer(t)
	accept := "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
	r := s.do(t, "GET", "/apis", "", "", "Accept", accept)
	if r.header.Get("Content-Type") != aggregatedType {
		t.Fatalf("content type %q", r.header.Get("Content-Type"))
	}
	o := r.object()
	if get(o, "kind") != "APIGroupDiscoveryList" || get(o, "items", 0, "metadata", "name") != "discovery.k8s.io" {
		t.Errorf("/apis: %s", r.body)
	}
	core := s.do(t, "GET", "/api", "", "", "Accept", accept).object()
	res, _ := get(core, "items", 0, "versions", 0, "resources").([]any)
	found := false
	for _, x := range res {
		if get(x, "resource") == "services" && get(x, "scope") == "Namespaced" && get(x, "subresources", 0, "subresource") == "status" {
			found = true
		}
	}
	if !found {
		t.Errorf("services missing from /api aggregated discovery: %v", res)
	}
	if legacy := s.do(t, "GET", "/api", "", "").object(); get(legacy, "kind") != "APIVersions" {
		t.Errorf("plain /api must stay legacy: %v", legacy)
	}
}

func TestServerSideApply(t *testing.T) {
	s := newTestServer(t)
	base := "/apis/apps/v1/namespaces/default/deployments"
	applyCT := "application/apply-patch+yaml"
	v1 := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {a: "1", b: "2"}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: nginx:1.27}
      - {name: side, image: busybox}
`
	runSteps(t, s, []step{
		{name: "fieldManager required", method: "PATCH", path: base + "/web", contentType: applyCT, body: v1, wantCode: 400},
		{name: "apply creates", method: "PATCH", path: base + "/web?fieldManager=me", contentType: applyCT, body: v1, wantCode: 201,
			check: func(t *testing.T, r response) {
				wantField("me", "metadata", "managedFields", 0, "manager")(t, r)
				wantField("Apply", "metadata", "managedFields", 0, "operation")(t, r)
				if get(r.object(), "metadata", "managedFields", 0, "fieldsV1", "f:spec", "f:template", "f:spec", "f:containers", `k:{"name":"side"}`) == nil {
					t.Errorf("keyed container missing from fieldsV1: %s", r.body)
				}
			}},
		{name: "another writer adds a label", method: "PATCH", path: base + "/web", contentType: mergeCT,
			body: `{"metadata":{"labels":{"other":"x"}}}`, wantCode: 200},
		{name: "apply again drops b and the sidecar", method: "PATCH", path: base + "/web?fieldManager=me", contentType: applyCT,
			body:     strings.NewReplacer(`, b: "2"`, ``, "      - {name: side, image: busybox}\n", "", "replicas: 2", "replicas: 3").Replace(v1),
			wantCode: 200, check: func(t *testing.T, r response) {
				wantField(3.0, "spec", "replicas")(t, r)
				wantField(nil, "metadata", "labels", "b")(t, r)
				wantField("x", "metadata", "labels", "other")(t, r) // not this manager's: kept
				wantField("1", "metadata", "labels", "a")(t, r)
				if c := get(r.object(), "spec", "template", "spec", "containers").([]any); len(c) != 1 {
					t.Errorf("containers after dropping the sidecar: %v", c)
				}
				wantField(2.0, "metadata", "generation")(t, r)
				if fields := get(r.object(), "metadata", "managedFields", 0, "fieldsV1"); get(fields, "f:kind") != nil || get(fields, "f:metadata", "f:name") != nil {
					t.Errorf("identity fields recorded as owned: %v", fields)
				}
			}},
	})
}

func TestWatchBookmarks(t *testing.T) {
	old := bookmarkInterval
	bookmarkInterval = 50 * time.Millisecond
	defer func() { bookmarkInterval = old }()
	s := newTestServer(t)
	ch := s.watchLines(t, podsPath+"?watch=true&allowWatchBookmarks=true&resourceVersion="+fmt.Sprint(s.API().store.Rev()))
	ev := nextWatchEvent(t, ch)
	if ev["type"] != "BOOKMARK" || get(ev, "object", "kind") != "Pod" || get(ev, "object", "metadata", "resourceVersion") != fmt.Sprint(s.API().store.Rev()) {
		t.Errorf("bookmark %v", ev)
	}
	plain := s.watchLines(t, podsPath+"?watch=true&timeoutSeconds=1&resourceVersion="+fmt.Sprint(s.API().store.Rev()))
	for ev := range plain {
		t.Errorf("watch without allowWatchBookmarks got %v", ev)
	}
}

func TestGracefulPodDeletion(t *testing.T) {
	s := newTestServer(t)
	bound := strings.Replace(podJSON("g", `{}`), `"spec":{`, `"spec":{"nodeName":"n1","terminationGracePeriodSeconds":20,`, 1)
	runSteps(t, s, []step{
		{name: "create bound pod", method: "POST", path: podsPath, contentType: jsonCT, body: bound, wantCode: 201},
		{name: "delete marks it terminating", method: "DELETE", path: podsPath + "/g", wantCode: 200, check: func(t *testing.T, r response) {
			wantField(20.0, "metadata", "deletionGracePeriodSeconds")(t, r)
			if get(r.object(), "metadata", "deletionTimestamp") == nil {
				t.Errorf("no deletionTimestamp: %s", r.body)
			}
		}},
		{name: "still there", method: "GET", path: podsPath + "/g", wantCode: 200},
		{name: "shown as Terminating", method: "GET", path: podsPath + "/g", headers: []string{"Accept", "application/json;as=Table;v=v1;g=meta.k8s.io"},
			wantCode: 200, check: wantField("Terminating", "rows", 0, "cells", 2)},
		{name: "a longer grace does not extend it", method: "DELETE", path: podsPath + "/g?gracePeriodSeconds=60", wantCode: 200,
			check: wantField(20.0, "metadata", "deletionGracePeriodSeconds")},
		{name: "grace 0 (the node is done) removes it", method: "DELETE", path: podsPath + "/g?gracePeriodSeconds=0", wantCode: 200},
		{name: "gone", method: "GET", path: podsPath + "/g", wantCode: 404},
		{name: "unbound pods go at once", method: "POST", path: podsPath, contentType: jsonCT, body: podJSON("u", `{}`), wantCode: 201},
		{name: "delete unbound", method: "DELETE", path: podsPath + "/u", wantCode: 200},
		{name: "unbound gone", method: "GET", path: podsPath + "/u", wantCode: 404},
	})
}

// copyBomb is a JSON patch that adds a 1 KiB annotation and then copies the annotations
// into themselves n times, doubling them each time.
func copyBomb(n int) string {
	ops := []string{`{"op":"add","path":"/metadata/annotations","value":{"a0":"` + strings.Repeat("x", 1024) + `"}}`}
	for i := range n {
		ops = append(ops, fmt.Sprintf(`{"op":"copy","from":"/metadata/annotations","path":"/metadata/annotations/b%d"}`, i))
	}
	return "[" + strings.Join(ops, ",") + "]"
}
