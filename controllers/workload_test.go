package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/store"
)

// world runs the workload controllers by hand against one API, standing in for the
// node agent by marking pods Running and Ready when asked.
type world struct {
	t   *testing.T
	api *apiserver.API
	d   *Deployment
	rs  *ReplicaSet
	gc  *GarbageCollector
	ctx context.Context
	inf *Informers
}

func newWorld(t *testing.T) *world {
	api := newAPI(t)
	events := startEvents(t, api, 0)
	d, _ := NewDeployment(DeploymentConfig{API: api, Events: events})
	rs, _ := NewReplicaSet(ReplicaSetConfig{API: api, Events: events})
	inf := NewInformers(api, nil)
	gc, _ := NewGarbageCollector(GCConfig{API: api, Informers: inf})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go inf.Run(ctx)
	return &world{t: t, api: api, d: d, rs: rs, gc: gc, ctx: ctx, inf: inf}
}

func (w *world) res(plural string) *apiserver.Resource {
	for _, r := range w.api.Registry().Resources() {
		if r.Plural == plural {
			return r
		}
	}
	w.t.Fatalf("no resource %s", plural)
	return nil
}

func (w *world) list(plural string) []store.Object {
	w.t.Helper()
	objs, _, err := w.api.List(w.res(plural), "default", apiserver.Selector{})
	if err != nil {
		w.t.Fatal(err)
	}
	return objs
}

func (w *world) pods() []*corev1.Pod {
	var out []*corev1.Pod
	for _, o := range w.list("pods") {
		out = append(out, o.(*corev1.Pod))
	}
	return out
}

func (w *world) replicaSets() []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, o := range w.list("replicasets") {
		out = append(out, o.(*appsv1.ReplicaSet))
	}
	return out
}

// kubelet marks every pod (or those keep selects) Running and Ready.
func (w *world) kubelet(keep func(*corev1.Pod) bool) {
	w.t.Helper()
	for _, p := range w.pods() {
		if keep != nil && !keep(p) || podReady(p) {
			continue
		}
		_, err := w.api.Update(w.ctx, w.res("pods"), p.Namespace, p.Name, "status", func(cur store.Object) (store.Object, error) {
			pod := cur.(*corev1.Pod)
			pod.Status.Phase = corev1.PodRunning
			pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue,
				LastTransitionTime: metav1.NewTime(time.Now().Add(-time.Hour))}}
			return pod, nil
		}, false)
		if err != nil {
			w.t.Fatal(err)
		}
	}
}

func (w *world) reconcileAll() {
	w.t.Helper()
	for _, o := range w.list("deployments") {
		if err := w.d.reconcile(w.ctx, key(o)); err != nil && !strings.Contains(err.Error(), "requeue") {
			w.t.Fatalf("deployment: %v", err)
		}
	}
	for _, rs := range w.replicaSets() {
		if err := w.rs.reconcile(w.ctx, key(rs)); err != nil {
			w.t.Fatalf("replicaset: %v", err)
		}
	}
	if err := w.reconcile(func(ctx context.Context, _ string) error { return w.gc.scan(ctx) }, ""); err != nil && err != ErrRequeue {
		w.t.Fatalf("gc: %v", err)
	}
}

// settle runs controllers and the kubelet until nothing changes, calling check after
// every round.
func (w *world) settle(check func()) {
	w.t.Helper()
	last := int64(-1)
	for i := 0; i < 50; i++ {
		w.reconcileAll()
		w.kubelet(nil)
		if check != nil {
			check()
		}
		_, rev, _ := w.api.List(w.res("namespaces"), "", apiserver.Selector{})
		if rev == last {
			return
		}
		last = rev
	}
	w.t.Fatal("controllers did not settle in 50 rounds")
}

func deployment(name string, replicas int32, image string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}}}}}
}

func (w *world) updateDeployment(name string, fn func(d *appsv1.Deployment)) {
	w.t.Helper()
	_, err := w.api.Update(w.ctx, w.res("deployments"), "default", name, "", func(cur store.Object) (store.Object, error) {
		fn(cur.(*appsv1.Deployment))
		return cur, nil
	}, false)
	if err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) getDeployment(name string) *appsv1.Deployment {
	o, err := w.api.Get(w.res("deployments"), "default", name)
	if err != nil {
		w.t.Fatal(err)
	}
	return o.(*appsv1.Deployment)
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
	if _, err := w.api.Create(w.ctx, w.res("deployments"), "default", deployment("web", 3, "nginx:1"), false); err != nil {
		t.Fatal(err)
	}
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
	poll(t, func() error {
		said := map[string]int{}
		for _, e := range listEvents(t, w.api) {
			said[e.InvolvedObject.Kind+" "+e.Source.Component+" "+e.Reason+": "+e.Message] += int(e.Count)
		}
		created := 0
		for _, p := range pods {
			created += said["ReplicaSet replicaset-controller SuccessfulCreate: Created pod: "+p.Name]
		}
		if said["Deployment deployment-controller ScalingReplicaSet: Scaled up replica set "+rs.Name+" from 0 to 3"] != 1 || created != 3 {
			return fmt.Errorf("events: %v", said)
		}
		return nil
	})
}

func TestRollingUpdateKeepsAvailability(t *testing.T) {
	w := newWorld(t)
	w.api.Create(w.ctx, w.res("deployments"), "default", deployment("web", 4, "nginx:1"), false)
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
	w.api.Create(w.ctx, w.res("deployments"), "default", d, false)
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
	w.api.Create(w.ctx, w.res("deployments"), "default", d, false)
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
	if _, err := w.api.Create(w.ctx, w.res("pods"), "default", orphan, false); err != nil {
		t.Fatal(err)
	}
	w.api.Create(w.ctx, w.res("replicasets"), "default", rs, false)
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
	w.api.Update(w.ctx, w.res("replicasets"), "default", "r", "", func(cur store.Object) (store.Object, error) {
		cur.(*appsv1.ReplicaSet).Spec.Replicas = ptr.To[int32](2)
		return cur, nil
	}, false)
	w.reconcileAll()
	for _, p := range w.pods() {
		if p.Name == "orphan" {
			t.Errorf("the not-ready pod survived a scale-down; ready ones were removed instead")
		}
	}
	got, _ := w.api.Get(w.res("replicasets"), "default", "r")
	if st := got.(*appsv1.ReplicaSet).Status; st.Replicas != 2 || st.ReadyReplicas != 2 || st.AvailableReplicas != 2 {
		t.Errorf("status %+v", st)
	}
}

func TestGarbageCollectorPolicies(t *testing.T) {
	for _, policy := range []metav1.DeletionPropagation{metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan} {
		t.Run(string(policy), func(t *testing.T) {
			w := newWorld(t)
			w.api.Create(w.ctx, w.res("deployments"), "default", deployment("web", 2, "nginx"), false)
			w.settle(nil)
			if _, _, err := w.api.Delete(w.ctx, w.res("deployments"), "default", "web", metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 10; i++ {
				w.reconcile(func(ctx context.Context, _ string) error { return w.gc.scan(ctx) }, "")
			}
			_, err := w.api.Get(w.res("deployments"), "default", "web")
			if !apierrors.IsNotFound(err) {
				t.Errorf("deployment still present: %v", err)
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
