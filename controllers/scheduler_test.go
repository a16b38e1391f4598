package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
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

// A cordoned or tainted node takes only the pods that tolerate it; the others wait with
// kube-scheduler's condition and event, and are bound once the node allows them.
func TestSchedulerRespectsCordonAndTaints(t *testing.T) {
	w := newWorld(t)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{Unschedulable: true}}
	w.apply(node)
	w.apply(pod("web"))
	ds := pod("ds")
	ds.Spec.Tolerations = []corev1.Toleration{{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	w.apply(ds)
	w.reconcile(w.sched.reconcile, "default/web")
	w.reconcile(w.sched.reconcile, "default/ds")
	bound := func() map[string]string {
		out := map[string]string{}
		for _, p := range w.pods() {
			out[p.Name] = p.Spec.NodeName
		}
		return out
	}
	diff(t, "on a cordoned node", map[string]string{"web": "", "ds": "n1"}, bound())
	web, _ := w.client.CoreV1().Pods("default").Get(w.ctx, "web", metav1.GetOptions{})
	want := "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
	if len(web.Status.Conditions) != 1 || web.Status.Conditions[0].Reason != "Unschedulable" || web.Status.Conditions[0].Message != want {
		t.Errorf("waiting pod's conditions %+v", web.Status.Conditions)
	}
	// Uncordoned but tainted: still waiting, for the taint now.
	node.Spec.Unschedulable = false
	node.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}
	w.update(node)
	w.reconcile(w.sched.reconcile, "default/web")
	diff(t, "on a tainted node", map[string]string{"web": "", "ds": "n1"}, bound())
	node.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectPreferNoSchedule}}
	w.update(node)
	w.reconcile(w.sched.reconcile, "default/web")
	diff(t, "on a node that only prefers not", map[string]string{"web": "n1", "ds": "n1"}, bound())
	diff(t, "events", []string{
		"Warning FailedScheduling " + want,
		"Normal Scheduled Successfully assigned default/ds to n1",
		"Warning FailedScheduling 0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: db}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
		"Normal Scheduled Successfully assigned default/web to n1",
	}, w.recorded())
}

// Cordoning taints the node, uncordoning takes the taint away; other taints stay.
func TestNodeTaintFollowsCordon(t *testing.T) {
	w := newWorld(t)
	c := NewNodeTaints(NodeTaintConfig{Client: w.client, Informers: w.informers})
	other := corev1.Taint{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}
	w.apply(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{Unschedulable: true, Taints: []corev1.Taint{other}}})
	taints := func() []string {
		n, _ := w.client.CoreV1().Nodes().Get(w.ctx, "n1", metav1.GetOptions{})
		var out []string
		for _, t := range n.Spec.Taints {
			out = append(out, t.ToString())
		}
		return out
	}
	w.reconcile(c.reconcile, "n1")
	diff(t, "cordoned", []string{"dedicated=db:NoSchedule", "node.kubernetes.io/unschedulable:NoSchedule"}, taints())
	w.reconcile(c.reconcile, "n1")
	diff(t, "cordoned, again", []string{"dedicated=db:NoSchedule", "node.kubernetes.io/unschedulable:NoSchedule"}, taints())
	n, _ := w.client.CoreV1().Nodes().Get(w.ctx, "n1", metav1.GetOptions{})
	n.Spec.Unschedulable = false
	w.update(n)
	w.reconcile(c.reconcile, "n1")
	diff(t, "uncordoned", []string{"dedicated=db:NoSchedule"}, taints())
}
