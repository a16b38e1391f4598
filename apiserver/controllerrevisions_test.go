package apiserver

import (
	"encoding/json"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ControllerRevisions are served as kube-apiserver serves them: validated on create,
// their data fixed once written (their revision number not), listed with kubectl's
// columns, in JSON and protobuf, with an OpenAPI schema.
func TestControllerRevisions(t *testing.T) {
	s := newTestServer(t)
	const revs = "/apis/apps/v1/namespaces/default/controllerrevisions"
	revJSON := func(name, rest string) string {
		return `{"apiVersion":"apps/v1","kind":"ControllerRevision","metadata":{"name":"` + name + `",` +
			`"ownerReferences":[{"apiVersion":"apps/v1","kind":"StatefulSet","name":"web","uid":"u1","controller":true}]}` + rest + `}`
	}
	table := []string{"Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
	runSteps(t, s, []step{
		{name: "create", method: "POST", path: revs, contentType: jsonCT, wantCode: 201,
			body: revJSON("web-7c9f", `,"revision":1,"data":{"spec":{"template":{"$patch":"replace","spec":{"containers":[{"name":"c","image":"httpd:1"}]}}}}`),
			check: func(t *testing.T, r response) {
				wantField(1.0, "revision")(t, r)
				wantField("httpd:1", "data", "spec", "template", "spec", "containers", 0, "image")(t, r)
			}},
		{name: "table", method: "GET", path: revs, headers: table, wantCode: 200, check: func(t *testing.T, r response) {
			var tbl metav1.Table
			if err := json.Unmarshal(r.body, &tbl); err != nil {
				t.Fatal(err)
			}
			var cols []string
			for _, c := range tbl.ColumnDefinitions {
				cols = append(cols, c.Name)
			}
			if strings.Join(cols, ",") != "Name,Controller,Revision,Age" {
				t.Errorf("columns %v", cols)
			}
			if !strings.Contains(string(r.body), `"cells":["web-7c9f","statefulset.apps/web",1,`) {
				t.Errorf("table %s", r.body)
			}
		}},
		{name: "data is required", method: "POST", path: revs, contentType: jsonCT, wantCode: 422,
			body: revJSON("no-data", `,"revision":1`), check: wantCauses("data")},
		{name: "null data", method: "POST", path: revs, contentType: jsonCT, wantCode: 422,
			body: revJSON("null-data", `,"data":null`), check: wantCauses("data")},
		{name: "data is an object", method: "POST", path: revs, contentType: jsonCT, wantCode: 422,
			body: revJSON("list-data", `,"data":[1]`), check: wantCauses("data")},
		{name: "revision is not negative", method: "POST", path: revs, contentType: jsonCT, wantCode: 422,
			body: revJSON("negative", `,"revision":-1,"data":{}`), check: wantCauses("revision")},
		{name: "name is a DNS subdomain", method: "POST", path: revs, contentType: jsonCT, wantCode: 422,
			body: revJSON("Web_1", `,"data":{}`), check: wantCauses("metadata.name")},
		{name: "revision may be renumbered", method: "PATCH", path: revs + "/web-7c9f", contentType: mergeCT, wantCode: 200,
			body: `{"revision":4,"metadata":{"labels":{"app":"web"}}}`, check: wantField(4.0, "revision")},
		{name: "data is immutable", method: "PATCH", path: revs + "/web-7c9f", contentType: mergeCT, wantCode: 422,
			body: `{"data":{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"httpd:2"}]}}}}}`, check: wantCauses("data")},
		{name: "by label", method: "GET", path: revs + "?labelSelector=app%3Dweb", wantCode: 200, check: func(t *testing.T, r response) {
			if items, _ := get(r.object(), "items").([]any); len(items) != 1 {
				t.Errorf("selected %d: %s", len(items), r.body)
			}
		}},
		{name: "the same data re-encoded is no change", method: "PUT", path: revs + "/web-7c9f", contentType: jsonCT, wantCode: 200,
			body: revJSON("web-7c9f", `,"revision":4,"data":{ "spec" : {"template":{"spec":{"containers":[{"image":"httpd:1","name":"c"}]},"$patch":"replace"}}}`)},
		{name: "discovery", method: "GET", path: "/apis/apps/v1", wantCode: 200, check: func(t *testing.T, r response) {
			var l metav1.APIResourceList
			json.Unmarshal(r.body, &l)
			for _, res := range l.APIResources {
				if res.Name == "controllerrevisions" {
					if !res.Namespaced || res.Kind != "ControllerRevision" {
						t.Errorf("controllerrevisions: %+v", res)
					}
					return
				}
			}
			t.Errorf("no controllerrevisions in %s", r.body)
		}},
	})

	r := s.do(t, "GET", revs+"/web-7c9f", "", "", "Accept", protobufType)
	var got appsv1.ControllerRevision
	if _, _, err := pbSerializer.Decode(r.body, nil, &got); err != nil || got.Revision != 4 || !strings.Contains(string(got.Data.Raw), "httpd:1") {
		t.Errorf("protobuf: %v revision %d data %s", err, got.Revision, got.Data.Raw)
	}

	index := s.do(t, "GET", "/openapi/v3", "", "")
	url, _ := get(index.object(), "paths", "apis/apps/v1", "serverRelativeURL").(string)
	doc := s.do(t, "GET", url, "", "").object()
	if get(doc, "paths", "/apis/apps/v1/namespaces/{namespace}/controllerrevisions/{name}", "get") == nil {
		t.Errorf("no controllerrevisions path in the OpenAPI document")
	}
	schema := get(doc, "components", "schemas", "io.k8s.api.apps.v1.ControllerRevision")
	if get(schema, "x-kubernetes-group-version-kind", 0, "kind") != "ControllerRevision" || get(schema, "properties", "data") == nil {
		t.Errorf("ControllerRevision schema: %v", schema)
	}
}
