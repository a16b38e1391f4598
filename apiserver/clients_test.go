package apiserver

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
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

// client-go's events.k8s.io/v1 client (kube-proxy's, k9s's) watches core events in its
// shape, in protobuf.
func TestEventsV1WatchWithClientGo(t *testing.T) {
	s := newTestServer(t)
	cs := kubernetes.NewForConfigOrDie(&rest.Config{Host: s.url, ContentConfig: rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf"}})
	ctx := context.Background()
	w, err := cs.EventsV1().Events("default").Watch(ctx, metav1.ListOptions{FieldSelector: "regarding.name=p"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for _, name := range []string{"other", "p"} {
		ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: name + ".1"}, InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: name, Namespace: "default"},
			Reason: "Started", Message: "Started container", Type: corev1.EventTypeNormal}
		if _, err := cs.CoreV1().Events("default").Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case e := <-w.ResultChan():
		ev, ok := e.Object.(*eventsv1.Event)
		if !ok || e.Type != watch.Added || ev.Name != "p.1" || ev.Regarding.Name != "p" || ev.Note != "Started container" {
			t.Errorf("watch event %s %#v", e.Type, e.Object)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event")
	}
}
