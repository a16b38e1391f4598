package controllers

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/apiserver/apitest"
	"github.com/minicluster/minicluster/store"
)

func newAPI(t *testing.T) *apiserver.API { return apitest.NewAPI(t) }

func pod(name string, finalizers ...string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: finalizers},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
}

func TestNamespaceDeletionEmptiesThenRemoves(t *testing.T) {
	api := newAPI(t)
	ctx := context.Background()
	reg := api.Registry()
	nsRes, podRes, svcRes := reg.Lookup("", "namespaces"), reg.Lookup("", "pods"), reg.Lookup("", "services")
	if _, err := api.Create(ctx, nsRes, "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, false); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*corev1.Pod{pod("a"), pod("held", "example.com/hold")} {
		if _, err := api.Create(ctx, podRes, "team", p, false); err != nil {
			t.Fatal(err)
		}
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := api.Create(ctx, svcRes, "team", svc, false); err != nil {
		t.Fatal(err)
	}
	c, err := NewNamespace(NamespaceConfig{API: api})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.reconcile(ctx, "team"); err != nil {
		t.Fatalf("reconcile of a live namespace: %v", err)
	}
	if objs, _, _ := api.List(podRes, "team", apiserver.Selector{}); len(objs) != 2 {
		t.Fatalf("a live namespace was emptied: %d pods", len(objs))
	}
	if _, _, err := api.Delete(ctx, nsRes, "", "team", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.reconcile(ctx, "team"); err == nil {
		t.Fatal("reconcile finished while a pod with a finalizer remains")
	}
	if _, err := api.Get(nsRes, "", "team"); err != nil {
		t.Fatalf("namespace removed before its content: %v", err)
	}
	if _, err := api.Get(svcRes, "team", "s"); !apierrors.IsNotFound(err) {
		t.Errorf("service not deleted: %v", err)
	}
	_, err = api.Update(ctx, podRes, "team", "held", "", func(cur store.Object) (store.Object, error) {
		cur.SetFinalizers(nil)
		return cur, nil
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.reconcile(ctx, "team"); err != nil {
		t.Fatalf("reconcile after the content is gone: %v", err)
	}
	if _, err := api.Get(nsRes, "", "team"); !apierrors.IsNotFound(err) {
		t.Errorf("namespace still present: %v", err)
	}
	if err := c.reconcile(ctx, "team"); err != nil {
		t.Errorf("reconcile of a removed namespace must be a no-op: %v", err)
	}
}
