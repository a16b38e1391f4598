package controllers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/store"
)

// ReplicaSetConfig configures the ReplicaSet controller.
type ReplicaSetConfig struct {
	API *apiserver.API
	// Events, if set, receives SuccessfulCreate/SuccessfulDelete/FailedCreate events.
	Events *Events
	Log    *slog.Logger
}

// ReplicaSet keeps spec.replicas pods of a ReplicaSet's template in existence.
type ReplicaSet struct {
	api    *apiserver.API
	rsRes  *apiserver.Resource
	podRes *apiserver.Resource
	loop   *Loop
	now    func() time.Time
	rec    *Recorder
}

// NewReplicaSet builds the controller.
func NewReplicaSet(cfg ReplicaSetConfig) (*ReplicaSet, error) {
	if cfg.API == nil {
		return nil, errors.New("replicaset controller: no API")
	}
	reg := cfg.API.Registry()
	c := &ReplicaSet{api: cfg.API, rsRes: reg.Lookup("apps", "replicasets"), podRes: reg.Lookup("", "pods"), now: time.Now,
		rec: cfg.Events.For("replicaset-controller", "")}
	c.loop = NewLoop("replicaset", cfg.Log, c.reconcile)
	return c, nil
}

// Run reconciles until ctx is cancelled.
func (c *ReplicaSet) Run(ctx context.Context) error {
	return runOwner(ctx, c.api, c.loop, c.rsRes, c.podRes, "ReplicaSet")
}

func key(o store.Object) string { return o.GetNamespace() + "/" + o.GetName() }

func splitKey(k string) (string, string) {
	ns, name, _ := strings.Cut(k, "/")
	return ns, name
}

// ownedBy lists objects of r in ns whose controller is owner, adopting orphans that
// match sel (as Kubernetes' ControllerRefManager does).
func ownedBy(ctx context.Context, api *apiserver.API, r *apiserver.Resource, owner store.Object, gvk metav1.GroupVersionKind, sel labels.Selector) ([]store.Object, error) {
	objs, _, err := api.List(r, owner.GetNamespace(), apiserver.Selector{})
	if err != nil {
		return nil, err
	}
	var out []store.Object
	for _, o := range objs {
		ref := metav1.GetControllerOf(o)
		switch {
		case ref != nil && ref.UID == owner.GetUID():
			out = append(out, o)
		case ref == nil && o.GetDeletionTimestamp() == nil && sel.Matches(labels.Set(o.GetLabels())) && owner.GetDeletionTimestamp() == nil:
			adopted, err := api.Update(ctx, r, o.GetNamespace(), o.GetName(), "", func(cur store.Object) (store.Object, error) {
				if metav1.GetControllerOf(cur) != nil {
					return nil, fmt.Errorf("%s/%s: %w", cur.GetNamespace(), cur.GetName(), ErrRequeue)
				}
				cur.SetOwnerReferences(append(cur.GetOwnerReferences(), *controllerRef(owner, gvk)))
				return cur, nil
			}, false)
			if err != nil {
				return nil, err
			}
			out = append(out, adopted)
		}
	}
	return out, nil
}

func controllerRef(owner store.Object, gvk metav1.GroupVersionKind) *metav1.OwnerReference {
	return &metav1.OwnerReference{APIVersion: metav1.GroupVersion{Group: gvk.Group, Version: gvk.Version}.String(), Kind: gvk.Kind,
		Name: owner.GetName(), UID: owner.GetUID(), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
}

var rsKind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}

func (c *ReplicaSet) reconcile(ctx context.Context, k string) error {
	ns, name := splitKey(k)
	obj, err := c.api.Get(c.rsRes, ns, name)
	if apierrors.IsNotFound(err) {
		return nil // the garbage collector removes its pods
	}
	if err != nil {
		return err
	}
	rs := obj.(*appsv1.ReplicaSet)
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil {
		return nil // invalid selectors never pass validation
	}
	owned, err := ownedBy(ctx, c.api, c.podRes, rs, rsKind, sel)
	if err != nil {
		return err
	}
	var active []*corev1.Pod
	for _, o := range owned {
		if p := o.(*corev1.Pod); isActive(p) {
			active = append(active, p)
		}
	}
	if rs.DeletionTimestamp == nil {
		if err := c.scale(ctx, rs, active); err != nil {
			return err
		}
		if active, err = c.activePods(rs); err != nil {
			return err
		}
	}
	return c.updateStatus(ctx, rs, active)
}

func (c *ReplicaSet) activePods(rs *appsv1.ReplicaSet) ([]*corev1.Pod, error) {
	objs, _, err := c.api.List(c.podRes, rs.Namespace, apiserver.Selector{})
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for _, o := range objs {
		if ref := metav1.GetControllerOf(o); ref != nil && ref.UID == rs.UID && isActive(o.(*corev1.Pod)) {
			out = append(out, o.(*corev1.Pod))
		}
	}
	return out, nil
}

// isActive: not finished and not being deleted.
func isActive(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func (c *ReplicaSet) scale(ctx context.Context, rs *appsv1.ReplicaSet, active []*corev1.Pod) error {
	want := int(ptr.Deref(rs.Spec.Replicas, 1))
	for i := len(active); i < want; i++ {
		pod, err := c.api.Create(ctx, c.podRes, rs.Namespace, podFromTemplate(rs), false)
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return nil // the namespace controller is emptying it
		}
		if err != nil {
			c.rec.Event(rs, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
			return fmt.Errorf("create pod for %s/%s: %w", rs.Namespace, rs.Name, err)
		}
		c.rec.Event(rs, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", pod.GetName())
	}
	if len(active) <= want {
		return nil
	}
	rankForDeletion(active)
	for _, p := range active[:len(active)-want] {
		_, _, err := c.api.Delete(ctx, c.podRes, p.Namespace, p.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err == nil {
			c.rec.Event(rs, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
		}
	}
	return nil
}

func podFromTemplate(rs *appsv1.ReplicaSet) *corev1.Pod {
	t := rs.Spec.Template.DeepCopy()
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: rs.Name + "-", Labels: t.Labels, Annotations: t.Annotations,
			OwnerReferences: []metav1.OwnerReference{*controllerRef(rs, rsKind)}},
		Spec: t.Spec,
	}
}

// rankForDeletion puts the pods to remove first at the front, as Kubernetes does:
// unscheduled before scheduled, pending before running, not ready before ready, more
// restarts first, newer before older.
func rankForDeletion(pods []*corev1.Pod) {
	score := func(p *corev1.Pod) []int64 {
		ready := int64(0)
		if podReady(p) {
			ready = 1
		}
		scheduled := int64(0)
		if p.Spec.NodeName != "" {
			scheduled = 1
		}
		running := int64(0)
		if p.Status.Phase == corev1.PodRunning {
			running = 1
		}
		return []int64{scheduled, running, ready, -restarts(p), -p.CreationTimestamp.UnixNano()}
	}
	sort.SliceStable(pods, func(i, j int) bool {
		a, b := score(pods[i]), score(pods[j])
		for k := range a {
			if a[k] != b[k] {
				return a[k] < b[k]
			}
		}
		return pods[i].Name > pods[j].Name
	})
}

func restarts(p *corev1.Pod) int64 {
	n := int64(0)
	for _, cs := range p.Status.ContainerStatuses {
		n += int64(cs.RestartCount)
	}
	return n
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podAvailable: ready for at least minReadySeconds.
func podAvailable(p *corev1.Pod, minReady int32, now time.Time) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return minReady == 0 || !c.LastTransitionTime.Add(time.Duration(minReady)*time.Second).After(now)
		}
	}
	return false
}

func (c *ReplicaSet) updateStatus(ctx context.Context, rs *appsv1.ReplicaSet, active []*corev1.Pod) error {
	sel, _ := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchLabels: rs.Spec.Template.Labels})
	st := appsv1.ReplicaSetStatus{Replicas: int32(len(active)), ObservedGeneration: rs.Generation, Conditions: rs.Status.Conditions}
	waitForAvailable := false
	for _, p := range active {
		if sel.Matches(labels.Set(p.Labels)) {
			st.FullyLabeledReplicas++
		}
		if podReady(p) {
			st.ReadyReplicas++
			if podAvailable(p, rs.Spec.MinReadySeconds, c.now()) {
				st.AvailableReplicas++
			} else {
				waitForAvailable = true
			}
		}
	}
	if !apiequality.Semantic.DeepEqual(st, rs.Status) {
		_, err := c.api.Update(ctx, c.rsRes, rs.Namespace, rs.Name, "status", func(cur store.Object) (store.Object, error) {
			cur.(*appsv1.ReplicaSet).Status = st
			return cur, nil
		}, false)
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if waitForAvailable {
		c.loop.EnqueueAfter(key(rs), time.Duration(rs.Spec.MinReadySeconds)*time.Second)
	}
	return nil
}
