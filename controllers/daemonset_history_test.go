package controllers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

// dsWorld is a world with one node and a DaemonSet controller for "default/agent".
type dsWorld struct {
	*world
	c *DaemonSet
}

func newDSWorld(t *testing.T, strategy appsv1.DaemonSetUpdateStrategyType, limit int32) *dsWorld {
	t.Helper()
	w := &dsWorld{world: newWorld(t)}
	w.c = NewDaemonSet(WorkloadConfig{Client: w.client, Informers: w.informers, Recorder: w.events})
	w.podExpect = append(w.podExpect, w.c.pc.expect)
	w.apply(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	lbls := map[string]string{"app": "agent"}
	w.apply(&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", UID: "uid-agent", Generation: 1}, Spec: appsv1.DaemonSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: lbls}, RevisionHistoryLimit: ptr.To(limit),
		UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: strategy},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent", "tier": "node"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "agent:1"}}}}}})
	return w
}

func (w *dsWorld) get() *appsv1.DaemonSet { return list[*appsv1.DaemonSet](w.world, "daemonsets")[0] }

func (w *dsWorld) settle() {
	w.t.Helper()
	for range 6 {
		w.reconcile(w.c.reconcile, "default/agent")
		w.kubelet(nil)
	}
}

// image sets the template's image, as a user would, and lets the controller act.
func (w *dsWorld) image(img string) {
	w.t.Helper()
	ds := w.get().DeepCopy()
	ds.Spec.Template.Spec.Containers[0].Image = img
	ds.Generation++
	w.update(ds)
	w.settle()
}

// history is each revision's number and image, by name, and each live pod's revision
// hash and template generation.
func (w *dsWorld) history() map[string]string {
	w.t.Helper()
	out := map[string]string{}
	for _, r := range w.revisions() {
		var data struct {
			Spec struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(r.Data.Raw, &data); err != nil {
			w.t.Fatalf("revision %s: %v", r.Name, err)
		}
		out[r.Name] = fmt.Sprintf("%d %s", r.Revision, data.Spec.Template.Spec.Containers[0].Image)
	}
	for _, p := range w.pods() {
		if p.DeletionTimestamp == nil {
			out["pod "+p.Spec.Containers[0].Image] = p.Labels[appsv1.ControllerRevisionHashLabelKey] + " generation " + p.Labels[templateGenerationLabel]
		}
	}
	return out
}

// revisionOf is the revision holding img.
func (w *dsWorld) revisionOf(img string) *appsv1.ControllerRevision {
	w.t.Helper()
	for _, r := range w.revisions() {
		if bytes.Contains(r.Data.Raw, []byte(`"image":"`+img+`"`)) {
			return r
		}
	}
	w.t.Fatalf("no revision holds %s", img)
	return nil
}

// A DaemonSet keeps a ControllerRevision per template it has had, as the daemon set
// controller does: named <set>-<hash>, labelled with the hash its pods carry, owned
// by the set, holding the template as a patch; a template it goes back to renumbers
// its revision, and no more than spec.revisionHistoryLimit old ones are kept.
func TestDaemonSetRevisionHistory(t *testing.T) {
	w := newDSWorld(t, appsv1.RollingUpdateDaemonSetStrategyType, 1)
	w.settle()
	revs := w.revisions()
	if len(revs) != 1 {
		t.Fatalf("%d revisions, want 1", len(revs))
	}
	first := revs[0]
	if ref := metav1.GetControllerOf(first); ref == nil || ref.UID != "uid-agent" || ref.Kind != "DaemonSet" {
		t.Errorf("controller of %s: %+v", first.Name, ref)
	}
	hash := first.Labels[appsv1.ControllerRevisionHashLabelKey]
	if hash == "" || first.Name != "agent-"+hash || first.Labels["app"] != "agent" || first.Labels["tier"] != "node" {
		t.Errorf("revision %s labels %v", first.Name, first.Labels)
	}
	// What the e2e suite's daemon.Match compares: getPatch of the set.
	if want, _ := revisionData(&w.get().Spec.Template); !bytes.Equal(first.Data.Raw, want) || !bytes.Contains(want, []byte(`"$patch":"replace"`)) {
		t.Errorf("data %s, want %s", first.Data.Raw, want)
	}
	diff(t, "first revision", map[string]string{first.Name: "1 agent:1", "pod agent:1": hash + " generation 1"}, w.history())

	w.image("agent:2")
	second := w.revisionOf("agent:2")
	hash2 := second.Labels[appsv1.ControllerRevisionHashLabelKey]
	diff(t, "an update makes a second revision and rolls the pod", map[string]string{first.Name: "1 agent:1", second.Name: "2 agent:2",
		"pod agent:2": hash2 + " generation 2"}, w.history())
	if st := w.get().Status; st.UpdatedNumberScheduled != 1 || st.DesiredNumberScheduled != 1 {
		t.Errorf("status %+v", st)
	}

	w.image("agent:3")
	third := w.revisionOf("agent:3")
	hash3 := third.Labels[appsv1.ControllerRevisionHashLabelKey]
	diff(t, "the oldest unused revision beyond the limit is gone", map[string]string{second.Name: "2 agent:2", third.Name: "3 agent:3",
		"pod agent:3": hash3 + " generation 3"}, w.history())

	w.image("agent:2")
	diff(t, "going back renumbers the old revision", map[string]string{second.Name: "4 agent:2", third.Name: "3 agent:3",
		"pod agent:2": hash2 + " generation 4"}, w.history())
}

// Old revisions beyond the limit that a pod still carries stay (OnDelete leaves the
// pod of the first template), and count against the limit, as cleanupHistory counts.
func TestDaemonSetHistoryKeepsLiveRevisions(t *testing.T) {
	w := newDSWorld(t, appsv1.OnDeleteDaemonSetStrategyType, 1)
	w.settle()
	first := w.revisions()[0]
	w.image("agent:2")
	w.image("agent:3")
	third := w.revisionOf("agent:3")
	diff(t, "the pod's revision kept, the unused one gone", map[string]string{first.Name: "1 agent:1", third.Name: "3 agent:3",
		"pod agent:1": first.Labels[appsv1.ControllerRevisionHashLabelKey] + " generation 1"}, w.history())
	if st := w.get().Status; st.UpdatedNumberScheduled != 0 || st.CurrentNumberScheduled != 1 {
		t.Errorf("status %+v", st)
	}
}

// Of two revisions holding the current template (one made by hand, as the e2e
// ControllerRevision lifecycle test makes one), the newer is kept, the pods carry its
// hash, and the older is deleted; a pod of the set's template generation is not
// replaced for it.
func TestDaemonSetDedupsCurrentRevisions(t *testing.T) {
	w := newDSWorld(t, appsv1.RollingUpdateDaemonSetStrategyType, 10)
	w.settle()
	first := w.revisions()[0]
	pod := w.pods()[0].Name
	dup := first.DeepCopy()
	dup.Name, dup.UID, dup.ResourceVersion, dup.Revision = "agent-byhand", "", "", 2
	dup.Labels[appsv1.ControllerRevisionHashLabelKey] = "byhand"
	w.apply(dup)
	w.settle()
	diff(t, "after the dedup", map[string]string{"agent-byhand": "2 agent:1", "pod agent:1": "byhand generation 1"}, w.history())
	if p := w.pods(); len(p) != 1 || p[0].Name != pod {
		t.Errorf("pods %v, want %s kept", p, pod)
	}
}

// A revision without the hash label gets its name as one; an orphan the selector
// matches is adopted.
func TestDaemonSetAdoptsRevisions(t *testing.T) {
	w := newDSWorld(t, appsv1.RollingUpdateDaemonSetStrategyType, 10)
	data := runtime.RawExtension{Raw: []byte(`{"spec":{"template":{"$patch":"replace","spec":{"containers":[{"name":"c","image":"agent:0"}]}}}}`)}
	w.apply(&appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "agent-old", Labels: map[string]string{"app": "agent"}}, Data: data, Revision: 1})
	w.settle()
	old := w.revisionOf("agent:0")
	if ref := metav1.GetControllerOf(old); ref == nil || ref.UID != "uid-agent" || old.Labels[appsv1.ControllerRevisionHashLabelKey] != "agent-old" {
		t.Errorf("adopted revision %s: controller %+v, labels %v", old.Name, ref, old.Labels)
	}
	if cur := w.revisionOf("agent:1"); cur.Revision != 2 {
		t.Errorf("revision %s is number %d, want 2 (after the adopted one)", cur.Name, cur.Revision)
	}
}

// A pod of the set's template generation is up to date even when the current revision
// carries another hash (the e2e lifecycle test replaces the first revision by one of
// its own): it is neither replaced nor relabelled.
func TestDaemonSetPodOfTemplateGenerationIsUpdated(t *testing.T) {
	w := newDSWorld(t, appsv1.RollingUpdateDaemonSetStrategyType, 10)
	w.settle()
	first := w.revisions()[0]
	hash := first.Labels[appsv1.ControllerRevisionHashLabelKey]
	pod := w.pods()[0].Name
	dup := first.DeepCopy()
	dup.Name, dup.UID, dup.ResourceVersion, dup.Revision = "agent-byhand", "", "", 2
	dup.Labels[appsv1.ControllerRevisionHashLabelKey] = "byhand"
	w.apply(dup)
	if err := w.client.AppsV1().ControllerRevisions("default").Delete(w.ctx, first.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.settle()
	diff(t, "history", map[string]string{"agent-byhand": "2 agent:1", "pod agent:1": hash + " generation 1"}, w.history())
	if p := w.pods(); len(p) != 1 || p[0].Name != pod {
		t.Errorf("pods %v, want %s kept", p, pod)
	}
	if st := w.get().Status; st.UpdatedNumberScheduled != 1 {
		t.Errorf("status %+v", st)
	}
}

// A revision's data is byte for byte what Kubernetes 1.32's getPatch makes of the
// template — its clients (the e2e suite's daemon.Match) compare the bytes — including
// the null creationTimestamp that 1.32's types write and newer ones omit.
func TestRevisionDataMatchesKubernetes132(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "ds"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	got, err := revisionData(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"spec":{"template":{"$patch":"replace","metadata":{"creationTimestamp":null,"labels":{"app":"ds"}},"spec":{"containers":[{"image":"busybox","name":"c","resources":{}}]}}}}`
	if string(got) != want {
		t.Errorf("data\n%s\nwant\n%s", got, want)
	}
}
