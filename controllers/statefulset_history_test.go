package controllers

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

// The world's informers cache ControllerRevisions too, for the StatefulSet controller's
// history.
func (w *world) revisions() []*appsv1.ControllerRevision {
	return list[*appsv1.ControllerRevision](w, "controllerrevisions")
}

// A StatefulSet keeps a ControllerRevision per template it has had, named in its
// status and on its pods, renumbers an old one it goes back to, and keeps no more than
// spec.revisionHistoryLimit of those no pod uses.
func TestStatefulSetRevisionHistory(t *testing.T) {
	w := newWorld(t)
	c := NewStatefulSet(WorkloadConfig{Client: w.client, Informers: w.informers, Recorder: w.events})
	w.podExpect = append(w.podExpect, c.pc.expect)
	lbls := map[string]string{"app": "web"}
	w.apply(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "web", UID: "uid-web"}, Spec: appsv1.StatefulSetSpec{
		Replicas: ptr.To[int32](2), ServiceName: "web", Selector: &metav1.LabelSelector{MatchLabels: lbls}, RevisionHistoryLimit: ptr.To[int32](1),
		UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](0)}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", "tier": "front"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "httpd:1"}}}}}})
	get := func() *appsv1.StatefulSet { return list[*appsv1.StatefulSet](w, "statefulsets")[0] }
	settle := func() {
		for range 12 {
			w.reconcile(c.reconcile, "default/web")
			w.kubelet(nil)
		}
	}
	image := func(img string) {
		set := get().DeepCopy()
		set.Spec.Template.Spec.Containers[0].Image = img
		set.Generation++
		w.update(set)
		settle()
	}
	// history is each revision's number and image, by name, and what names them.
	history := func() map[string]string {
		out := map[string]string{}
		for _, r := range w.revisions() {
			tmpl, err := applyRevision(get(), r)
			if err != nil {
				t.Fatal(err)
			}
			out[r.Name] = fmt.Sprintf("%d %s", r.Revision, tmpl.Spec.Containers[0].Image)
		}
		st := get().Status
		out["status"] = "current=" + st.CurrentRevision + " update=" + st.UpdateRevision
		for _, p := range w.pods() {
			out[p.Name] = p.Labels[appsv1.ControllerRevisionHashLabelKey]
		}
		return out
	}

	settle()
	revs := w.revisions()
	if len(revs) != 1 {
		t.Fatalf("%d revisions, want 1", len(revs))
	}
	first := revs[0]
	if ref := metav1.GetControllerOf(first); ref == nil || ref.UID != "uid-web" || ref.Kind != "StatefulSet" {
		t.Errorf("controller of %s: %+v", first.Name, ref)
	}
	hash := first.Labels[appsv1.ControllerRevisionHashLabelKey]
	if first.Name != "web-"+hash || first.Labels["app"] != "web" || first.Labels["tier"] != "front" {
		t.Errorf("revision %s labels %v", first.Name, first.Labels)
	}
	var data struct {
		Spec struct {
			Template map[string]any `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(first.Data.Raw, &data); err != nil || data.Spec.Template["$patch"] != "replace" {
		t.Errorf("data %s: %v", first.Data.Raw, err)
	}
	diff(t, "first revision", map[string]string{first.Name: "1 httpd:1",
		"status": "current=" + first.Name + " update=" + first.Name, "web-0": first.Name, "web-1": first.Name}, history())

	image("httpd:2")
	second := get().Status.UpdateRevision
	image("httpd:3")
	third := get().Status.UpdateRevision
	if second == first.Name || third == second || third == first.Name {
		t.Fatalf("revisions %s, %s, %s", first.Name, second, third)
	}
	diff(t, "the oldest unused revision beyond the limit is gone", map[string]string{second: "2 httpd:2", third: "3 httpd:3",
		"status": "current=" + third + " update=" + third, "web-0": third, "web-1": third}, history())

	image("httpd:2")
	diff(t, "going back renumbers the old revision", map[string]string{second: "4 httpd:2", third: "3 httpd:3",
		"status": "current=" + second + " update=" + second, "web-0": second, "web-1": second}, history())
}

// A revision no one controls that the set's selector matches is adopted; one the set
// controls that it no longer matches is released.
func TestStatefulSetAdoptsRevisions(t *testing.T) {
	w := newWorld(t)
	c := NewStatefulSet(WorkloadConfig{Client: w.client, Informers: w.informers, Recorder: w.events})
	w.podExpect = append(w.podExpect, c.pc.expect)
	lbls := map[string]string{"app": "db"}
	set := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", UID: "uid-db"}, Spec: appsv1.StatefulSetSpec{
		Replicas: ptr.To[int32](0), ServiceName: "db", Selector: &metav1.LabelSelector{MatchLabels: lbls},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbls}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "db:1"}}}}}}
	w.apply(set)
	data := runtime.RawExtension{Raw: []byte(`{"spec":{"template":{"$patch":"replace","spec":{"containers":[{"name":"c","image":"db:0"}]}}}}`)}
	w.apply(&appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "db-orphan", Labels: lbls}, Data: data, Revision: 1})
	w.apply(&appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "db-other", Labels: map[string]string{"app": "other"},
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set, stsKind)}}, Data: data, Revision: 1})
	w.reconcile(c.reconcile, "default/db")
	owners := map[string]string{}
	for _, r := range w.revisions() {
		owners[r.Name] = "<none>"
		if ref := metav1.GetControllerOf(r); ref != nil {
			owners[r.Name] = ref.Name
		}
	}
	update := list[*appsv1.StatefulSet](w, "statefulsets")[0].Status.UpdateRevision
	if !strings.HasPrefix(update, "db-") {
		t.Fatalf("update revision %q", update)
	}
	diff(t, "controllers", map[string]string{"db-orphan": "db", "db-other": "<none>", update: "db"}, owners)
	for _, r := range w.revisions() {
		if r.Name == update && r.Revision != 2 {
			t.Errorf("revision %s is number %d, want 2 (after the adopted one)", r.Name, r.Revision)
		}
	}
}
