package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func pod(name string, finalizers ...string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: finalizers},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
}

func TestNamespaceDeletionEmptiesThenRemoves(t *testing.T) {
	w := newWorld(t)
	w.apply(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}, Spec: corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}}})
	for _, p := range []*corev1.Pod{pod("a"), pod("held", "example.com/hold")} {
		p.Namespace = "team"
		w.apply(p)
	}
	w.apply(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "team"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}})
	names := func() []string {
		var out []string
		for _, p := range w.pods() {
			out = append(out, p.Name)
		}
		for _, s := range list[*corev1.Service](w, "services") {
			out = append(out, "svc/"+s.Name)
		}
		return out
	}
	w.reconcile(w.ns.reconcile, "team")
	diff(t, "a live namespace's content after a reconcile", []string{"a", "held", "svc/s"}, names())

	if err := w.client.CoreV1().Namespaces().Delete(w.ctx, "team", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.sync()
	if err := w.ns.reconcile(w.ctx, "team"); err == nil {
		t.Fatal("reconcile finished while content remained")
	}
	diff(t, "content after the first pass (the held pod waits for its finalizer)", []string{"held"}, names())
	if ns := list[*corev1.Namespace](w, "namespaces"); len(ns) != 2 {
		t.Fatalf("namespace removed before its content: %d namespaces", len(ns))
	}
	held := w.pods()[0].DeepCopy()
	held.Finalizers = nil
	w.update(held)
	if err := w.client.Tracker().Delete(w.resourceOf("Pod"), "team", "held"); err != nil { // as the API server, once the finalizer is gone
		t.Fatal(err)
	}
	w.reconcile(w.ns.reconcile, "team")
	team := list[*corev1.Namespace](w, "namespaces")[1]
	if team.Name != "team" || len(team.Spec.Finalizers) != 0 {
		t.Errorf("namespace %s not finalized: finalizers %v", team.Name, team.Spec.Finalizers)
	}
}
