package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The scheduler binds unscheduled pods to the node, once, and leaves bound and
// terminating pods alone.
func TestSchedulerBindsUnscheduledPods(t *testing.T) {
	w := newWorld(t)
	w.apply(pod("new"))
	elsewhere := pod("elsewhere")
	elsewhere.Spec.NodeName = "n2"
	w.apply(elsewhere)
	leaving := pod("leaving")
	leaving.DeletionTimestamp = &metav1.Time{}
	w.apply(leaving)
	for _, name := range []string{"new", "elsewhere", "leaving", "new", "missing"} {
		w.reconcile(w.sched.reconcile, "default/"+name)
	}
	nodes := map[string]string{}
	for _, p := range w.pods() {
		nodes[p.Name] = p.Spec.NodeName
	}
	diff(t, "nodes", map[string]string{"new": "n1", "elsewhere": "n2", "leaving": ""}, nodes)
	bindings := 0
	for _, a := range w.client.Actions() {
		if a.GetSubresource() == "binding" {
			bindings++
		}
	}
	if bindings != 1 {
		t.Errorf("%d bindings, want 1", bindings)
	}
	diff(t, "events", []string{"Normal Scheduled Successfully assigned default/new to n1"}, w.recorded())
}
