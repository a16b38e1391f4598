package controllers

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
)

// WorkloadConfig configures the Deployment and ReplicaSet controllers.
type WorkloadConfig struct {
	Client    kubernetes.Interface
	Informers informers.SharedInformerFactory
	// Recorder receives the controller's events (nil: none).
	Recorder record.EventRecorder
	Log      *slog.Logger
}

func (c *WorkloadConfig) defaults() {
	if c.Recorder == nil {
		c.Recorder = &record.FakeRecorder{}
	}
}

// ReplicaSet keeps spec.replicas pods of a ReplicaSet's template in existence. The
// same controller keeps ReplicationControllers, seen as ReplicaSets (their selector a
// map, their status the same fields), as kube-controller-manager does.
type ReplicaSet struct {
	client  kubernetes.Interface
	pc      *podControl // for the owners' kind
	get     func(ns, name string) (*appsv1.ReplicaSet, error)
	status  func(ctx context.Context, rs *appsv1.ReplicaSet) error
	synced  []cache.InformerSynced
	loop    *Loop
	now     func() time.Time
	workers int
}

// NewReplicaSet builds the controller.
func NewReplicaSet(cfg WorkloadConfig) *ReplicaSet {
	cfg.defaults()
	rsInf, podInf := cfg.Informers.Apps().V1().ReplicaSets(), cfg.Informers.Core().V1().Pods()
	sets := rsInf.Lister()
	c := &ReplicaSet{client: cfg.Client, pc: newPodControl(cfg.Client, podInf.Lister(), cfg.Recorder, rsKind),
		get:    func(ns, name string) (*appsv1.ReplicaSet, error) { return sets.ReplicaSets(ns).Get(name) },
		synced: []cache.InformerSynced{rsInf.Informer().HasSynced, podInf.Informer().HasSynced},
		now:    time.Now, workers: 2}
	c.status = func(ctx context.Context, rs *appsv1.ReplicaSet) error {
		_, err := c.client.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(ctx, rs, metav1.UpdateOptions{})
		return err
	}
	c.loop = NewLoop("replicaset", cfg.Log, c.reconcile)
	rsInf.Informer().AddEventHandler(c.loop.Handler())
	podInf.Informer().AddEventHandler(c.pc.expect.handler())
	podInf.Informer().AddEventHandler(ownerHandler(c.loop, "ReplicaSet"))
	return c
}

var rcKind = corev1.SchemeGroupVersion.WithKind("ReplicationController")

// NewReplicationController builds the ReplicaSet controller for ReplicationControllers.
func NewReplicationController(cfg WorkloadConfig) *ReplicaSet {
	cfg.defaults()
	rcInf, podInf := cfg.Informers.Core().V1().ReplicationControllers(), cfg.Informers.Core().V1().Pods()
	rcs := rcInf.Lister()
	c := &ReplicaSet{client: cfg.Client, pc: newPodControl(cfg.Client, podInf.Lister(), cfg.Recorder, rcKind),
		get: func(ns, name string) (*appsv1.ReplicaSet, error) {
			rc, err := rcs.ReplicationControllers(ns).Get(name)
			if err != nil {
				return nil, err
			}
			return rcAsReplicaSet(rc), nil
		},
		synced: []cache.InformerSynced{rcInf.Informer().HasSynced, podInf.Informer().HasSynced},
		now:    time.Now, workers: 1}
	c.status = func(ctx context.Context, rs *appsv1.ReplicaSet) error {
		rc, err := rcs.ReplicationControllers(rs.Namespace).Get(rs.Name)
		if err != nil {
			return err
		}
		rc = rc.DeepCopy()
		st := rs.Status
		rc.Status.Replicas, rc.Status.FullyLabeledReplicas, rc.Status.ReadyReplicas = st.Replicas, st.FullyLabeledReplicas, st.ReadyReplicas
		rc.Status.AvailableReplicas, rc.Status.ObservedGeneration = st.AvailableReplicas, st.ObservedGeneration
		_, err = c.client.CoreV1().ReplicationControllers(rs.Namespace).UpdateStatus(ctx, rc, metav1.UpdateOptions{})
		return err
	}
	c.loop = NewLoop("replicationcontroller", cfg.Log, c.reconcile)
	rcInf.Informer().AddEventHandler(c.loop.Handler())
	podInf.Informer().AddEventHandler(c.pc.expect.handler())
	podInf.Informer().AddEventHandler(ownerHandler(c.loop, "ReplicationController"))
	return c
}

// rcAsReplicaSet sees a ReplicationController as the ReplicaSet it is.
func rcAsReplicaSet(rc *corev1.ReplicationController) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{ObjectMeta: *rc.ObjectMeta.DeepCopy(), Spec: appsv1.ReplicaSetSpec{Replicas: rc.Spec.Replicas,
		MinReadySeconds: rc.Spec.MinReadySeconds, Selector: &metav1.LabelSelector{MatchLabels: rc.Spec.Selector}},
		Status: appsv1.ReplicaSetStatus{Replicas: rc.Status.Replicas, FullyLabeledReplicas: rc.Status.FullyLabeledReplicas,
			ReadyReplicas: rc.Status.ReadyReplicas, AvailableReplicas: rc.Status.AvailableReplicas, ObservedGeneration: rc.Status.ObservedGeneration}}
	if rc.Spec.Template != nil {
		rs.Spec.Template = *rc.Spec.Template.DeepCopy()
	}
	return rs
}

// Run reconciles until ctx is cancelled.
func (c *ReplicaSet) Run(ctx context.Context) error {
	c.loop.Run(ctx, c.workers, c.synced...)
	return nil
}

// ownerHandler enqueues the controller (of ownerKind) of every object delivered, and
// on a change of hands also the old one.
func ownerHandler(l *Loop, ownerKind string) cache.ResourceEventHandler {
	enqueue := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if o, ok := obj.(metav1.Object); ok {
			if ref := metav1.GetControllerOf(o); ref != nil && ref.Kind == ownerKind {
				l.Enqueue(o.GetNamespace() + "/" + ref.Name)
			}
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: enqueue, DeleteFunc: enqueue,
		UpdateFunc: func(old, obj any) { enqueue(old); enqueue(obj) }}
}

var rsKind = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")

func (c *ReplicaSet) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	rs, err := c.get(ns, name)
	if apierrors.IsNotFound(err) {
		c.pc.expect.forget(key)
		return nil // the garbage collector removes its pods
	}
	if err != nil {
		return err
	}
	owned, synced, err := c.pc.claim(ctx, key, rs, rs.Spec.Selector)
	if err != nil {
		return err
	}
	var active []*corev1.Pod
	for _, p := range owned {
		if isActive(p) {
			active = append(active, p)
		}
	}
	// Scale only on a cache that shows this controller's own last writes (else it
	// would create the pods it has just created once more); report status either way.
	if synced && rs.DeletionTimestamp == nil {
		if err := c.scale(ctx, key, rs, active); err != nil {
			return err
		}
	}
	if err := c.updateStatus(ctx, rs, active); err != nil || synced {
		return err
	}
	return ErrRequeue
}

// podPresentIn says whether the pod cache still holds a live pod of that name and UID.
func podPresentIn(pods corelisters.PodLister, ns string) func(string, types.UID) bool {
	return func(name string, uid types.UID) bool {
		p, err := pods.Pods(ns).Get(name)
		return err == nil && p.UID == uid && p.DeletionTimestamp == nil
	}
}

// claim returns the objects among all (owner's namespace) that owner controls,
// adopting orphans that match sel and releasing its own that no longer do, as
// Kubernetes' ControllerRefManager does; adopt writes one orphan with owner's
// controller reference added, release one of its own with it removed.
func claim[T metav1.Object](owner metav1.Object, sel labels.Selector, all []T, adopt func(T) (T, error), release func(T) error) ([]T, error) {
	var out []T
	for _, o := range all {
		ref := metav1.GetControllerOf(o)
		matches := sel.Matches(labels.Set(o.GetLabels()))
		switch {
		case ref != nil && ref.UID == owner.GetUID() && (matches || owner.GetDeletionTimestamp() != nil):
			out = append(out, o)
		case ref != nil && ref.UID == owner.GetUID():
			if err := release(o); err != nil && !apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("release %s/%s: %w", o.GetNamespace(), o.GetName(), err)
			}
		case ref == nil && o.GetDeletionTimestamp() == nil && matches && owner.GetDeletionTimestamp() == nil:
			adopted, err := adopt(o)
			if err != nil {
				return nil, fmt.Errorf("adopt %s/%s: %w", o.GetNamespace(), o.GetName(), err)
			}
			out = append(out, adopted)
		}
	}
	return out, nil
}

// releasePatch is the strategic merge patch that removes owner's controller reference
// from the object with uid, as the ControllerRefManager writes it.
func releasePatch(owner metav1.Object, uid types.UID) []byte {
	return []byte(fmt.Sprintf(`{"metadata":{"ownerReferences":[{"$patch":"delete","uid":%q}],"uid":%q}}`, owner.GetUID(), uid))
}

// isActive: not finished and not being deleted.
func isActive(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func (c *ReplicaSet) scale(ctx context.Context, key string, rs *appsv1.ReplicaSet, active []*corev1.Pod) error {
	want := int(ptr.Deref(rs.Spec.Replicas, 1))
	for i := len(active); i < want; i++ {
		if err := c.pc.create(ctx, key, rs, podFromTemplate(rs, c.pc.kind)); err != nil {
			return err
		}
	}
	if len(active) <= want {
		return nil
	}
	rankForDeletion(active)
	for _, p := range active[:len(active)-want] {
		if err := c.pc.delete(ctx, key, rs, p); err != nil {
			return err
		}
	}
	return nil
}

func podFromTemplate(rs *appsv1.ReplicaSet, kind schema.GroupVersionKind) *corev1.Pod {
	t := rs.Spec.Template.DeepCopy()
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: rs.Name + "-", Labels: t.Labels, Annotations: t.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, kind)}},
		Spec: t.Spec,
	}
}

// rankForDeletion puts the pods to remove first at the front, as Kubernetes does:
// unscheduled before scheduled, pending before running, not ready before ready, more
// restarts first, newer before older.
func rankForDeletion(pods []*corev1.Pod) {
	score := func(p *corev1.Pod) []int64 {
		return []int64{boolInt(p.Spec.NodeName != ""), boolInt(p.Status.Phase == corev1.PodRunning), boolInt(podReady(p)),
			-restarts(p), -p.CreationTimestamp.UnixNano()}
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

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
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
		next := rs.DeepCopy()
		next.Status = st
		if err := c.status(ctx, next); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if waitForAvailable {
		c.loop.EnqueueAfter(rs.Namespace+"/"+rs.Name, time.Duration(rs.Spec.MinReadySeconds)*time.Second)
	}
	return nil
}
