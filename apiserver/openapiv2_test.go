package apiserver

import (
	"reflect"
	"strings"
	"testing"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// client-go's OpenAPISchema (what Helm and kubectl's v2 validation call) reads
// /openapi/v2 in protobuf; every served kind is found there by its GVK extension.
func TestOpenAPIv2(t *testing.T) {
	s := newTestServer(t)
	dc, err := discovery.NewDiscoveryClientForConfig(&rest.Config{Host: s.url})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := dc.OpenAPISchema()
	if err != nil {
		t.Fatalf("OpenAPISchema: %v", err)
	}
	if doc.GetSwagger() != "2.0" || doc.GetInfo().GetVersion() == "" {
		t.Errorf("swagger %q, info %v", doc.GetSwagger(), doc.GetInfo())
	}
	kinds := map[string]string{}
	for _, nd := range doc.GetDefinitions().GetAdditionalProperties() {
		for _, ext := range nd.GetValue().GetVendorExtension() {
			if ext.GetName() == "x-kubernetes-group-version-kind" {
				kinds[nd.GetName()] = ext.GetValue().GetYaml()
			}
		}
	}
	for _, r := range s.API().Registry().Resources() {
		if y := kinds[defName(reflect.TypeOf(r.New()).Elem())]; !strings.Contains(y, "kind: "+r.Kind_) {
			t.Errorf("%s: no definition with its kind (%q)", r.Kind_, y)
		}
	}
	var secret, data bool
	for _, nd := range doc.GetDefinitions().GetAdditionalProperties() {
		if nd.GetName() == "io.k8s.api.core.v1.Secret" {
			secret = true
			for _, p := range nd.GetValue().GetProperties().GetAdditionalProperties() {
				data = data || p.GetName() == "data"
			}
		}
	}
	if !secret || !data {
		t.Errorf("Secret definition %v, its data property %v", secret, data)
	}
	if r := s.do(t, "GET", "/openapi/v2", "", ""); r.code != 200 || get(r.object(), "swagger") != "2.0" ||
		get(r.object(), "paths", "/api/v1/namespaces/{namespace}/configmaps/{name}", "get", "x-kubernetes-action") != "get" {
		t.Errorf("/openapi/v2 in JSON: %d %.300s", r.code, r.body)
	}
}
