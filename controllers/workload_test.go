package controllers

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// deployment is a Deployment as the API server stores it, with its defaults: a rolling
// update of 25% / 25%.
func deployment(name string, replicas int32, image string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}}}}}
}

func (w *world) updateDeployment(name string, fn func(d *appsv1.Deployment)) {
	w.t.Helper()
	d := w.getDeployment(name).DeepCopy()
	fn(d)
	d.Generation++
	w.update(d)
}

func (w *world) getDeployment(name string) *appsv1.Deployment {
	w.t.Helper()
	for _, d := range w.deployments() {
		if d.Name == name {
			return d
		}
	}
	w.t.Fatalf("no deployment %s", name)
	return nil
}

func imagesOf(pods []*corev1.Pod) map[string]int {
	m := map[string]int{}
	for _, p := range pods {
		m[p.Spec.Containers[0].Image]++
	}
	return m
}

func TestDeploymentCreatesReplicaSetAndPods(t *testing.T) {
	w := newWorld(t)
	w.apply(deployment("web", 3, "nginx:1"))
	w.settle(nil)
	rss := w.replicaSets()
	if len(rss) != 1 {
		t.Fatalf("%d replicasets", len(rss))
	}
	rs := rss[0]
	hash := rs.Labels["pod-template-hash"]
	if hash == "" || rs.Name != "web-"+hash || rs.Annotations[revisionAnnotation] != "1" || rs.Spec.Selector.MatchLabels["pod-template-hash"] != hash {
		t.Errorf("replicaset %s labels %v annotations %v", rs.Name, rs.Labels, rs.Annotations)
	}
	pods := w.pods()
	if len(pods) != 3 {
		t.Fatalf("%d pods, want 3", len(pods))
	}
	for _, p := range pods {
		ref := metav1.GetControllerOf(p)
		if !strings.HasPrefix(p.Name, rs.Name+"-") || len(p.Name) != len(rs.Name)+6 || ref == nil || ref.UID != rs.UID || p.Labels["pod-template-hash"] != hash {
			t.Errorf("pod %s labels %v owner %v", p.Name, p.Labels, ref)
		}
	}
	d := w.getDeployment("web")
	st := d.Status
	if st.Replicas != 3 || st.UpdatedReplicas != 3 || st.ReadyReplicas != 3 || st.AvailableReplicas != 3 || st.ObservedGeneration != d.Generation {
		t.Errorf("status %+v", st)
	}
	conds := map[appsv1.DeploymentConditionType]string{}
	for _, c := range st.Conditions {
		conds[c.Type] = string(c.Status) + "/" + c.Reason
	}
	if conds[appsv1.DeploymentAvailable] != "True/MinimumReplicasAvailable" || conds[appsv1.DeploymentProgressing] != "True/NewReplicaSetAvailable" {
		t.Errorf("conditions %v", conds)
	}
	if d.Annotations[revisionAnnotation] != "1" {
		t.Errorf("deployment revision %q", d.Annotations[revisionAnnotation])
	}
	// What kubectl describe shows, from the controllers' events.
	want := []string{"Normal ScalingReplicaSet Scaled up replica set " + rs.Name + " from 0 to 3"}
	for _, p := range pods {
		want = append(want, "Normal SuccessfulCreate Created pod: "+p.Name)
	}
	got := w.recorded()
	sort.Strings(want)
	sort.Strings(got)
	diff(t, "events", want, got)
}

func TestRollingUpdateKeepsAvailability(t *testing.T) {
	w := newWorld(t)
	w.apply(deployment("web", 4, "nginx:1"))
	w.settle(nil)
	w.updateDeployment("web", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "nginx:2" })
	// 25%/25% of 4: at most 5 pods, at least 3 ready at every step.
	w.settle(func() {
		pods := w.pods()
		ready := 0
		for _, p := range pods {
			if podReady(p) {
				ready++
			}
		}
		if len(pods) > 5 || ready < 3 {
			t.Fatalf("during the rollout: %d pods, %d ready (%v)", len(pods), ready, imagesOf(pods))
		}
	})
	if got := imagesOf(w.pods()); got["nginx:2"] != 4 || len(got) != 1 {
		t.Errorf("after the rollout: %v", got)
	}
	rss := w.replicaSets()
	if len(rss) != 2 {
		t.Fatalf("%d replicasets, want the new and one old", len(rss))
	}
	for _, rs := range rss {
		want := int32(0)
		if rs.Spec.Template.Spec.Containers[0].Image == "nginx:2" {
			want = 4
			if rs.Annotations[revisionAnnotation] != "2" {
				t.Errorf("new replicaset revision %q", rs.Annotations[revisionAnnotation])
			}
		}
		if *rs.Spec.Replicas != want {
			t.Errorf("%s: %d replicas, want %d", rs.Name, *rs.Spec.Replicas, want)
		}
	}
}

func TestRecreateScalesDownFirst(t *testing.T) {
	w := newWorld(t)
	d := deployment("db", 2, "postgres:15")
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	w.apply(d)
	w.settle(nil)
	w.updateDeployment("db", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "postgres:16" })
	w.settle(func() {
		if got := imagesOf(w.pods()); got["postgres:15"] > 0 && got["postgres:16"] > 0 {
			t.Fatalf("old and new pods together under Recreate: %v", got)
		}
	})
	if got := imagesOf(w.pods()); got["postgres:16"] != 2 {
		t.Errorf("after Recreate: %v", got)
	}
}

func TestScaleAndHistoryLimit(t *testing.T) {
	w := newWorld(t)
	d := deployment("web", 3, "v0")
	d.Spec.RevisionHistoryLimit = ptr.To[int32](1)
	w.apply(d)
	w.settle(nil)
	for _, n := range []int32{5, 1} {
		w.updateDeployment("web", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To(n) })
		w.settle(nil)
		if got := len(w.pods()); got != int(n) {
			t.Errorf("scaled to %d: %d pods", n, got)
		}
	}
	for _, img := range []string{"v1", "v2", "v3"} {
		w.updateDeployment("web", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = img })
		w.settle(nil)
	}
	if rss := w.replicaSets(); len(rss) != 2 {
		t.Errorf("%d replicasets kept with revisionHistoryLimit 1, want 2 (new + 1 old)", len(rss))
	}
	if rev := w.getDeployment("web").Annotations[revisionAnnotation]; rev != "4" {
		t.Errorf("revision %q after three rollouts, want 4", rev)
	}
}

func TestReplicaSetDeletesNotReadyFirstAndAdopts(t *testing.T) {
	w := newWorld(t)
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](3),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "r"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "r"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}}
	orphan := pod("orphan")
	orphan.Labels = map[string]string{"app": "r"}
	w.apply(orphan)
	w.apply(rs)
	w.reconcileAll()
	pods := w.pods()
	if len(pods) != 3 {
		t.Fatalf("%d pods, want 3 (the orphan adopted + 2 new)", len(pods))
	}
	var adopted *corev1.Pod
	for _, p := range pods {
		if p.Name == "orphan" {
			adopted = p
		}
	}
	if adopted == nil || metav1.GetControllerOf(adopted) == nil {
		t.Fatal("orphan pod matching the selector not adopted")
	}
	w.kubelet(func(p *corev1.Pod) bool { return p.Name != "orphan" })
	w.reconcileAll()
	scaled := w.replicaSets()[0].DeepCopy()
	scaled.Spec.Replicas = ptr.To[int32](2)
	w.update(scaled)
	w.reconcileAll()
	w.reconcileAll() // the status, once the cache shows the deletion
	for _, p := range w.pods() {
		if p.Name == "orphan" {
			t.Errorf("the not-ready pod survived a scale-down; ready ones were removed instead")
		}
	}
	if st := w.replicaSets()[0].Status; st.Replicas != 2 || st.ReadyReplicas != 2 || st.AvailableReplicas != 2 {
		t.Errorf("status %+v", st)
	}
	// A pod whose labels stop matching is released (and replaced), as the
	// ControllerRefManager does.
	leaving := w.pods()[0].DeepCopy()
	leaving.Labels = map[string]string{"app": "elsewhere"}
	w.update(leaving)
	w.reconcileAll()
	w.reconcileAll()
	owned := 0
	for _, p := range w.pods() {
		switch {
		case p.Name == leaving.Name && metav1.GetControllerOf(p) != nil:
			t.Errorf("pod %s no longer matches but is still owned", p.Name)
		case p.Name != leaving.Name && metav1.GetControllerOf(p) != nil:
			owned++
		}
	}
	if owned != 2 {
		t.Errorf("%d pods owned after the release, want 2 (a replacement made)", owned)
	}
}

func TestGarbageCollectorPolicies(t *testing.T) {
	for _, policy := range []metav1.DeletionPropagation{metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan} {
		t.Run(string(policy), func(t *testing.T) {
			w := newWorld(t)
			w.apply(deployment("web", 2, "nginx"))
			w.settle(nil)
			err := w.client.AppsV1().Deployments("default").Delete(w.ctx, "web", metav1.DeleteOptions{PropagationPolicy: &policy})
			if err != nil {
				t.Fatal(err)
			}
			for range 10 {
				w.reconcile(func(ctx context.Context, _ string) error { return w.gc.scan(ctx) }, gcKey)
			}
			if d := w.deployments(); len(d) != 0 {
				t.Errorf("deployment still present: %+v", d[0].ObjectMeta)
			}
			rss, pods := w.replicaSets(), w.pods()
			if policy == metav1.DeletePropagationOrphan {
				if len(rss) != 1 || len(pods) != 2 || len(rss[0].OwnerReferences) != 0 {
					t.Errorf("orphan: %d replicasets (owners %v), %d pods", len(rss), rss, len(pods))
				}
				return
			}
			if len(rss) != 0 || len(pods) != 0 {
				t.Errorf("%s: %d replicasets and %d pods left", policy, len(rss), len(pods))
			}
		})
	}
}

// A ReplicaSet reconciled again before its pod cache shows the pods it created creates
// none again: it waits for its expectations, reporting status meanwhile.
func TestReplicaSetWaitsForItsOwnWrites(t *testing.T) {
	w := newWorld(t)
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](3),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "r"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "r"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}}
	w.apply(rs)
	w.sync()
	if err := w.rs.reconcile(w.ctx, "default/r"); err != nil {
		t.Fatal(err)
	}
	// The pod cache is stale: it holds none of the three new pods.
	if err := w.rs.reconcile(w.ctx, "default/r"); err != ErrRequeue {
		t.Errorf("reconcile on a stale cache: %v, want ErrRequeue", err)
	}
	if n := len(w.pods()); n != 3 {
		t.Fatalf("%d pods after two reconciles on a stale cache, want 3", n)
	}
	w.sync()
	if err := w.rs.reconcile(w.ctx, "default/r"); err != nil {
		t.Errorf("reconcile once the cache caught up: %v", err)
	}
	if n := len(w.pods()); n != 3 {
		t.Errorf("%d pods, want 3", n)
	}
}

func TestTemplateHashStable(t *testing.T) {
	a := deployment("web", 1, "nginx").Spec.Template
	b := *a.DeepCopy()
	b.Labels["pod-template-hash"] = "zzz"
	if templateHash(&a, 0) != templateHash(&b, 0) || !sameTemplate(&a, &b) {
		t.Error("the hash label changes the template hash")
	}
	c := *a.DeepCopy()
	c.Spec.Containers[0].Image = "nginx:2"
	if templateHash(&a, 0) == templateHash(&c, 0) || templateHash(&a, 0) == templateHash(&a, 1) {
		t.Error("different templates (or collision counts) share a hash")
	}
}

// A rollback reuses the old ReplicaSet and makes it the newest revision (its old one
// in revision-history), as kubectl rollout undo expects; change-cause follows the
// Deployment onto its ReplicaSets.
func TestRollbackBumpsRevisionAndCopiesChangeCause(t *testing.T) {
	w := newWorld(t)
	d := deployment("web", 2, "nginx:1")
	d.Annotations = map[string]string{"kubernetes.io/change-cause": "first", corev1.LastAppliedConfigAnnotation: "{}"}
	w.apply(d)
	w.settle(nil)
	setImage := func(image, cause string) {
		w.updateDeployment("web", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].Image = image
			d.Annotations["kubernetes.io/change-cause"] = cause
		})
		w.settle(nil)
	}
	setImage("nginx:2", "second")
	setImage("nginx:1", "back to the first") // what kubectl rollout undo writes
	revs := map[string]string{}
	for _, rs := range w.replicaSets() {
		revs[rs.Spec.Template.Spec.Containers[0].Image] = rs.Annotations[revisionAnnotation] + " " + rs.Annotations[revisionHistoryAnnotation] +
			" " + rs.Annotations["kubernetes.io/change-cause"] + " " + rs.Annotations[corev1.LastAppliedConfigAnnotation]
	}
	diff(t, "replicasets: revision, history, change-cause, last-applied", map[string]string{"nginx:1": "3 1 back to the first ", "nginx:2": "2  second "}, revs)
	if got := w.getDeployment("web").Annotations[revisionAnnotation]; got != "3" {
		t.Errorf("deployment revision %q, want 3", got)
	}
	setImage("nginx:2", "forward again")
	revs = map[string]string{}
	for _, rs := range w.replicaSets() {
		revs[rs.Spec.Template.Spec.Containers[0].Image] = rs.Annotations[revisionAnnotation] + " " + rs.Annotations[revisionHistoryAnnotation]
	}
	diff(t, "after a second undo", map[string]string{"nginx:1": "3 1", "nginx:2": "4 2"}, revs)
}

// A rollout that makes no progress for progressDeadlineSeconds is marked
// ProgressDeadlineExceeded (kubectl rollout status then fails); progress renews it.
func TestProgressDeadline(t *testing.T) {
	w := newWorld(t)
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	w.d.now = func() time.Time { return now }
	d := deployment("web", 2, "nginx:1")
	d.Spec.ProgressDeadlineSeconds = ptr.To[int32](60)
	w.apply(d)
	w.settle(nil)
	w.updateDeployment("web", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "broken:1" })
	stuck := func(p *corev1.Pod) bool { return p.Spec.Containers[0].Image != "broken:1" } // the new pods never get ready
	progressing := func() string {
		for _, c := range w.getDeployment("web").Status.Conditions {
			if c.Type == appsv1.DeploymentProgressing {
				return string(c.Status) + "/" + c.Reason + ": " + c.Message
			}
		}
		return ""
	}
	for range 3 {
		w.reconcileAll()
		w.kubelet(stuck)
	}
	if got := progressing(); !strings.HasPrefix(got, "True/") {
		t.Fatalf("within the deadline: %s", got)
	}
	now = now.Add(61 * time.Second)
	w.reconcileAll()
	newRS := ""
	for _, rs := range w.replicaSets() {
		if rs.Spec.Template.Spec.Containers[0].Image == "broken:1" {
			newRS = rs.Name
		}
	}
	if want := "False/ProgressDeadlineExceeded: ReplicaSet \"" + newRS + "\" has timed out progressing."; progressing() != want {
		t.Errorf("after the deadline: %s, want %s", progressing(), want)
	}
	// Fixed: progress again, then complete.
	w.updateDeployment("web", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "nginx:2" })
	w.settle(nil)
	if got := progressing(); !strings.HasPrefix(got, "True/NewReplicaSetAvailable") {
		t.Errorf("after a fix: %s", got)
	}
}

// rollingToMissingImage is a deployment "web" of 10 "good" pods (maxSurge 3,
// maxUnavailable 2) just updated to an image whose pods never become ready.
func rollingToMissingImage(t *testing.T) *world {
	w := newWorld(t)
	d := deployment("web", 10, "good")
	d.Spec.Strategy.RollingUpdate.MaxSurge = ptr.To(intstr.FromInt32(3))
	d.Spec.Strategy.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromInt32(2))
	w.apply(d)
	w.settle(nil)
	w.updateDeployment("web", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "missing" })
	return w
}

// A rollout to an image that never starts keeps maxUnavailable: the old ReplicaSet goes
// down to replicas-maxUnavailable and no further, even when the deployment controller
// runs again before the old ReplicaSet's status shows its new size (as the e2e suite's
// "proportional scaling" spec checks).
func TestRollingUpdateKeepsMinimumWithStaleStatus(t *testing.T) {
	w := rollingToMissingImage(t)
	// The deployment controller alone, several times: the ReplicaSets' statuses lag.
	for range 4 {
		w.reconcile(w.d.reconcile, "default/web")
	}
	for range 10 {
		w.reconcileAll()
		w.kubelet(func(p *corev1.Pod) bool { return p.Spec.Containers[0].Image == "good" })
	}
	for _, rs := range w.replicaSets() {
		if rs.Spec.Template.Spec.Containers[0].Image == "good" && ptr.Deref(rs.Spec.Replicas, 0) != 8 {
			t.Errorf("old ReplicaSet scaled to %d, want 8 (10 - maxUnavailable 2)", ptr.Deref(rs.Spec.Replicas, 0))
		}
	}
}

// Resized in the middle of a rollout, a deployment shares the difference out in
// proportion to its ReplicaSets' sizes, as Kubernetes does (the e2e suite's
// "proportional scaling": 8 and 5 of 10+3 become 20 and 13 of 30+3).
func TestProportionalScaling(t *testing.T) {
	w := rollingToMissingImage(t)
	good := func(p *corev1.Pod) bool { return p.Spec.Containers[0].Image == "good" }
	for range 10 {
		w.reconcileAll()
		w.kubelet(good)
	}
	sizes := func() map[string]int32 {
		m := map[string]int32{}
		for _, rs := range w.replicaSets() {
			m[rs.Spec.Template.Spec.Containers[0].Image] = ptr.Deref(rs.Spec.Replicas, 0)
		}
		return m
	}
	if got := sizes(); got["good"] != 8 || got["missing"] != 5 {
		t.Fatalf("mid-rollout sizes %v, want good 8 and missing 5", got)
	}
	w.updateDeployment("web", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](30) })
	for range 10 {
		w.reconcileAll()
		w.kubelet(good)
	}
	if got := sizes(); got["good"] != 20 || got["missing"] != 13 {
		t.Errorf("after scaling to 30: %v, want good 20 and missing 13", got)
	}
}
