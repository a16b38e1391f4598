package controllers

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// StatefulSet gives each replica a stable identity, as kube-controller-manager's
// statefulset controller does: pods <name>-0…<name>-(n-1) with hostname and subdomain
// (so <pod>.<serviceName>.<ns>.svc resolves through the headless service), made in
// order, each once the ones before are Running and Ready (OrderedReady) or all at once
// (Parallel), removed from the highest ordinal down, and a RollingUpdate that replaces
// pods of an old template from the highest ordinal down to spec.updateStrategy's
// partition, the ordinals below it staying at (and re-created at) the current revision.
// Its revisions are ControllerRevisions (statefulset_history.go).
type StatefulSet struct {
	client  kubernetes.Interface
	sets    appslisters.StatefulSetLister
	history revisionHistory
	pc      *podControl
	synced  []cache.InformerSynced
	loop    *Loop
	now     func() time.Time
}

var stsKind = appsv1.SchemeGroupVersion.WithKind("StatefulSet")

// NewStatefulSet builds the controller.
func NewStatefulSet(cfg WorkloadConfig) *StatefulSet {
	cfg.defaults()
	sInf, podInf := cfg.Informers.Apps().V1().StatefulSets(), cfg.Informers.Core().V1().Pods()
	revInf := cfg.Informers.Apps().V1().ControllerRevisions()
	pc := newPodControl(cfg.Client, podInf.Lister(), cfg.Recorder, stsKind)
	pc.created = func(set metav1.Object, pod string) string {
		return fmt.Sprintf("create Pod %s in StatefulSet %s successful", pod, set.GetName())
	}
	pc.deleted = func(set metav1.Object, pod string) string {
		return fmt.Sprintf("delete Pod %s in StatefulSet %s successful", pod, set.GetName())
	}
	c := &StatefulSet{client: cfg.Client, sets: sInf.Lister(), history: revisionHistory{client: cfg.Client, revs: revInf.Lister()}, pc: pc, now: time.Now,
		synced: []cache.InformerSynced{sInf.Informer().HasSynced, podInf.Informer().HasSynced, revInf.Informer().HasSynced}}
	c.loop = NewLoop("statefulset", cfg.Log, c.reconcile)
	sInf.Informer().AddEventHandler(c.loop.Handler())
	podInf.Informer().AddEventHandler(c.pc.expect.handler())
	podInf.Informer().AddEventHandler(ownerHandler(c.loop, "StatefulSet"))
	return c
}

// Run reconciles until ctx is cancelled.
func (c *StatefulSet) Run(ctx context.Context) error {
	c.loop.Run(ctx, 1, c.synced...)
	return nil
}

// ordinal is the pod's index in set, -1 when its name is not one of set's.
func ordinal(set *appsv1.StatefulSet, p *corev1.Pod) int {
	if len(p.Name) <= len(set.Name)+1 || p.Name[:len(set.Name)+1] != set.Name+"-" {
		return -1
	}
	i, err := strconv.Atoi(p.Name[len(set.Name)+1:])
	if err != nil || i < 0 {
		return -1
	}
	return i
}

// revisionFor is the revision a pod of ordinal i is made at, as newVersionedStatefulSetPod:
// a rolling update leaves the ordinals below its partition (below status.currentReplicas
// without one) at the current revision, a re-created pod included.
func revisionFor(set *appsv1.StatefulSet, i int, current, update stsRevision) stsRevision {
	if set.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		return update
	}
	ru := set.Spec.UpdateStrategy.RollingUpdate
	if ru == nil && i < int(set.Status.CurrentReplicas) || ru != nil && i < int(ptr.Deref(ru.Partition, 0)) {
		return current
	}
	return update
}

func (c *StatefulSet) podFor(set *appsv1.StatefulSet, rev stsRevision, i int) *corev1.Pod {
	t := rev.Template.DeepCopy()
	name := fmt.Sprintf("%s-%d", set.Name, i)
	lbls := maps.Clone(t.Labels)
	if lbls == nil {
		lbls = map[string]string{}
	}
	lbls[appsv1.StatefulSetPodNameLabel], lbls[appsv1.PodIndexLabel], lbls[appsv1.ControllerRevisionHashLabelKey] = name, strconv.Itoa(i), rev.Name
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls, Annotations: t.Annotations,
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set, stsKind)}}, Spec: t.Spec}
	pod.Spec.Hostname, pod.Spec.Subdomain = name, set.Spec.ServiceName
	for _, c := range set.Spec.VolumeClaimTemplates {
		v := corev1.Volume{Name: c.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claimName(set, &c, i)}}}
		if j := slices.IndexFunc(pod.Spec.Volumes, func(x corev1.Volume) bool { return x.Name == c.Name }); j >= 0 {
			pod.Spec.Volumes[j] = v
		} else {
			pod.Spec.Volumes = append(pod.Spec.Volumes, v)
		}
	}
	return pod
}

// claimName is the claim of a template for ordinal i: <template>-<set>-<i>.
func claimName(set *appsv1.StatefulSet, c *corev1.PersistentVolumeClaim, i int) string {
	return fmt.Sprintf("%s-%s-%d", c.Name, set.Name, i)
}

// ensureClaims makes the claims of ordinal i that do not exist yet. They outlive the
// pods (the next pod of the ordinal gets the same ones) and, unless the set's retention
// policy says Delete, the set.
func (c *StatefulSet) ensureClaims(ctx context.Context, set *appsv1.StatefulSet, i int) error {
	for _, tmpl := range set.Spec.VolumeClaimTemplates {
		claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: claimName(set, &tmpl, i), Namespace: set.Namespace,
			Labels: maps.Clone(set.Spec.Selector.MatchLabels), Annotations: tmpl.Annotations}, Spec: tmpl.Spec}
		if p := set.Spec.PersistentVolumeClaimRetentionPolicy; p != nil && p.WhenDeleted == appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
			claim.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(set, stsKind)}
		}
		_, err := c.client.CoreV1().PersistentVolumeClaims(set.Namespace).Create(ctx, claim, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			c.pc.rec.Eventf(set, corev1.EventTypeWarning, "FailedCreate", "create Claim %s for Pod %s-%d in StatefulSet %s failed error: %v",
				claim.Name, set.Name, i, set.Name, err)
			return err
		}
	}
	return nil
}

func runningAndReady(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && podReady(p) && p.DeletionTimestamp == nil
}

func (c *StatefulSet) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	set, err := c.sets.StatefulSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.pc.expect.forget(key)
		return nil
	}
	if err != nil || set.DeletionTimestamp != nil {
		return err
	}
	owned, synced, err := c.pc.claim(ctx, key, set, set.Spec.Selector)
	if err != nil || !synced {
		return cmp.Or(err, ErrRequeue)
	}
	revs, err := c.history.list(ctx, stsOwner(set))
	if err != nil {
		return err
	}
	current, update, collisions, err := c.stsRevisions(ctx, set, revs)
	if err != nil {
		return err
	}
	n := int(ptr.Deref(set.Spec.Replicas, 1))
	parallel := set.Spec.PodManagementPolicy == appsv1.ParallelPodManagement
	byOrdinal := map[int]*corev1.Pod{}
	var condemned []*corev1.Pod
	for _, p := range owned {
		if i := ordinal(set, p); i >= 0 && i < n {
			byOrdinal[i] = p
		} else {
			condemned = append(condemned, p)
		}
	}
	// Up: from ordinal 0, each once the ones before are running and ready (in order).
	blocked := false
	for i := 0; i < n && !blocked; i++ {
		p := byOrdinal[i]
		switch {
		case p == nil:
			if err := c.ensureClaims(ctx, set, i); err != nil {
				return err
			}
			if err := c.pc.create(ctx, key, set, c.podFor(set, revisionFor(set, i, current, update), i)); err != nil {
				return err
			}
			blocked = !parallel
		case p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded:
			if err := c.pc.delete(ctx, key, set, p); err != nil {
				return err
			}
			blocked = !parallel
		case !runningAndReady(p):
			blocked = !parallel
		}
	}
	// Down: the highest ordinal first, all at once when Parallel. OrderedReady, as
	// kube-controller-manager's processCondemned: only once the replicas kept are all
	// running and ready (nothing above blocked), one at a time, waiting for a terminating
	// pod, and never a pod that is not running and ready unless it is the set's first
	// unhealthy pod (the lowest-ordinal kept one, else the lowest-ordinal condemned one).
	sort.Slice(condemned, func(i, j int) bool { return ordinal(set, condemned[i]) > ordinal(set, condemned[j]) })
	var firstUnhealthy *corev1.Pod
	for i := 0; i < n && firstUnhealthy == nil; i++ {
		if p := byOrdinal[i]; p != nil && !runningAndReady(p) {
			firstUnhealthy = p
		}
	}
	for i := len(condemned) - 1; i >= 0 && firstUnhealthy == nil; i-- {
		if !runningAndReady(condemned[i]) {
			firstUnhealthy = condemned[i]
		}
	}
	for _, p := range condemned {
		if parallel {
			if p.DeletionTimestamp == nil {
				if err := c.pc.delete(ctx, key, set, p); err != nil {
					return err
				}
			}
			continue
		}
		if blocked || p.DeletionTimestamp != nil || (!runningAndReady(p) && p != firstUnhealthy) {
			break
		}
		if err := c.pc.delete(ctx, key, set, p); err != nil {
			return err
		}
		break
	}
	// Rolling update: once every replica runs, the highest outdated ordinal at or above
	// the partition goes (and comes back with the new template above).
	if set.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType && len(condemned) == 0 {
		partition := 0
		if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil {
			partition = int(ptr.Deref(ru.Partition, 0))
		}
		healthy := len(byOrdinal) == n
		for _, p := range byOrdinal {
			healthy = healthy && runningAndReady(p)
		}
		for i := n - 1; healthy && i >= partition; i-- {
			if p := byOrdinal[i]; p.Labels[appsv1.ControllerRevisionHashLabelKey] != update.Name {
				if err := c.pc.delete(ctx, key, set, p); err != nil {
					return err
				}
				break
			}
		}
	}
	if err := c.updateStatus(ctx, set, owned, current, update, collisions); err != nil {
		return err
	}
	return c.truncateHistory(ctx, set, owned, revs, current.Name, update.Name)
}

func (c *StatefulSet) updateStatus(ctx context.Context, set *appsv1.StatefulSet, owned []*corev1.Pod, current, update stsRevision, collisions int32) error {
	st := appsv1.StatefulSetStatus{ObservedGeneration: set.Generation, CollisionCount: &collisions,
		Conditions: set.Status.Conditions, UpdateRevision: update.Name, CurrentRevision: current.Name}
	for _, p := range owned {
		if p.DeletionTimestamp != nil {
			continue
		}
		st.Replicas++
		if runningAndReady(p) {
			st.ReadyReplicas++
			if podAvailable(p, set.Spec.MinReadySeconds, c.now()) {
				st.AvailableReplicas++
			}
		}
		switch p.Labels[appsv1.ControllerRevisionHashLabelKey] {
		case update.Name:
			st.UpdatedReplicas++
		case st.CurrentRevision:
			st.CurrentReplicas++
		}
	}
	n := ptr.Deref(set.Spec.Replicas, 1)
	if st.UpdatedReplicas == n && st.ReadyReplicas == n && st.Replicas == n {
		st.CurrentRevision, st.CurrentReplicas = update.Name, st.UpdatedReplicas
	} else if st.CurrentRevision == update.Name {
		st.CurrentReplicas = st.UpdatedReplicas
	}
	if apiequality.Semantic.DeepEqual(st, set.Status) {
		return nil
	}
	next := set.DeepCopy()
	next.Status = st
	_, err := c.client.AppsV1().StatefulSets(set.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}
