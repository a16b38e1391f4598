package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
)

// Annotations and labels of Kubernetes' deployment controller.
const (
	revisionAnnotation        = "deployment.kubernetes.io/revision"
	revisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	desiredAnnotation         = "deployment.kubernetes.io/desired-replicas"
	maxAnnotation             = "deployment.kubernetes.io/max-replicas"
	hashLabel                 = appsv1.DefaultDeploymentUniqueLabelKey // pod-template-hash
)

// notCopied are the Deployment annotations that are not its ReplicaSets' (everything
// else, kubernetes.io/change-cause first, is copied, as kube-controller-manager does).
var notCopied = map[string]bool{corev1.LastAppliedConfigAnnotation: true, revisionAnnotation: true,
	revisionHistoryAnnotation: true, desiredAnnotation: true, maxAnnotation: true, "deprecated.deployment.rollback.to": true}

// copyAnnotations copies d's annotations onto rs and reports whether any changed.
func copyAnnotations(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	changed := false
	for k, v := range d.Annotations {
		if notCopied[k] || rs.Annotations[k] == v {
			continue
		}
		if rs.Annotations == nil {
			rs.Annotations = map[string]string{}
		}
		rs.Annotations[k], changed = v, true
	}
	return changed
}

// Deployment rolls a Deployment's pod template out through ReplicaSets.
type Deployment struct {
	client      kubernetes.Interface
	deployments appslisters.DeploymentLister
	sets        appslisters.ReplicaSetLister
	synced      []cache.InformerSynced
	loop        *Loop
	now         func() time.Time
	rec         record.EventRecorder
}

var deployKind = appsv1.SchemeGroupVersion.WithKind("Deployment")

// NewDeployment builds the controller.
func NewDeployment(cfg WorkloadConfig) *Deployment {
	cfg.defaults()
	dInf, rsInf := cfg.Informers.Apps().V1().Deployments(), cfg.Informers.Apps().V1().ReplicaSets()
	c := &Deployment{client: cfg.Client, deployments: dInf.Lister(), sets: rsInf.Lister(), now: time.Now, rec: cfg.Recorder,
		synced: []cache.InformerSynced{dInf.Informer().HasSynced, rsInf.Informer().HasSynced}}
	c.loop = NewLoop("deployment", cfg.Log, c.reconcile)
	dInf.Informer().AddEventHandler(c.loop.Handler())
	rsInf.Informer().AddEventHandler(ownerHandler(c.loop, "Deployment"))
	return c
}

// Run reconciles until ctx is cancelled.
func (c *Deployment) Run(ctx context.Context) error {
	c.loop.Run(ctx, 2, c.synced...)
	return nil
}

// templateHash is the pod-template-hash of a template (without its own hash label).
func templateHash(t *corev1.PodTemplateSpec, collisions int32) string {
	t = t.DeepCopy()
	delete(t.Labels, hashLabel)
	data, _ := json.Marshal(t)
	h := fnv.New32a()
	h.Write(data)
	if collisions > 0 {
		h.Write([]byte(strconv.Itoa(int(collisions))))
	}
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

func sameTemplate(a, b *corev1.PodTemplateSpec) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	delete(a.Labels, hashLabel)
	delete(b.Labels, hashLabel)
	return apiequality.Semantic.DeepEqual(a, b)
}

func revision(o metav1.Object) int64 {
	n, _ := strconv.ParseInt(o.GetAnnotations()[revisionAnnotation], 10, 64)
	return n
}

func (c *Deployment) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	d, err := c.deployments.Deployments(ns).Get(name)
	if apierrors.IsNotFound(err) || (err == nil && d.DeletionTimestamp != nil) {
		return nil
	}
	if err != nil {
		return err
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil
	}
	all, err := c.sets.ReplicaSets(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	owned, err := claim(d, sel, all, func(rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
		rs = rs.DeepCopy()
		rs.OwnerReferences = append(rs.OwnerReferences, *metav1.NewControllerRef(d, deployKind))
		return c.client.AppsV1().ReplicaSets(ns).Update(ctx, rs, metav1.UpdateOptions{})
	}, func(rs *appsv1.ReplicaSet) error {
		_, err := c.client.AppsV1().ReplicaSets(ns).Patch(ctx, rs.Name, types.StrategicMergePatchType, releasePatch(d, rs.UID), metav1.PatchOptions{})
		return err
	})
	if err != nil {
		return err
	}
	var newRS *appsv1.ReplicaSet
	var old []*appsv1.ReplicaSet
	for _, rs := range owned {
		if newRS == nil && sameTemplate(&rs.Spec.Template, &d.Spec.Template) {
			newRS = rs.DeepCopy()
		} else {
			old = append(old, rs.DeepCopy())
		}
	}
	sort.Slice(old, func(i, j int) bool { return revision(old[i]) < revision(old[j]) })
	var progress *appsv1.DeploymentCondition
	if !d.Spec.Paused {
		switch {
		case newRS == nil:
			if d, newRS, err = c.createNewRS(ctx, d, old); err != nil {
				return err
			}
			progress = &appsv1.DeploymentCondition{Reason: "NewReplicaSetCreated", Message: fmt.Sprintf("Created new replica set %q", newRS.Name)}
		default:
			if d, newRS, err = c.adoptNewRS(ctx, d, newRS, old); err != nil {
				return err
			}
			if cond := findCondition(d.Status.Conditions, appsv1.DeploymentProgressing); cond == nil {
				progress = &appsv1.DeploymentCondition{Reason: "FoundNewReplicaSet", Message: fmt.Sprintf("Found new replica set %q", newRS.Name)}
			}
		}
		scaled, err := c.scaleProportionally(ctx, d, newRS, old)
		if err != nil {
			return err
		}
		if !scaled {
			if err := c.rollout(ctx, d, newRS, old); err != nil {
				return err
			}
		}
		if err := c.cleanup(ctx, d, old); err != nil {
			return err
		}
	}
	return c.updateStatus(ctx, d, newRS, old, progress)
}

// adoptNewRS makes a ReplicaSet that already has d's template the newest revision (a
// rollback reuses an old one: it gets the next revision, its old ones recorded in
// revision-history), copies d's annotations onto it, and gives d its revision.
func (c *Deployment) adoptNewRS(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) (*appsv1.Deployment, *appsv1.ReplicaSet, error) {
	maxOld := int64(0)
	for _, o := range old {
		maxOld = max(maxOld, revision(o))
	}
	next := rs.DeepCopy()
	changed := copyAnnotations(d, next)
	if cur := revision(rs); cur <= maxOld {
		if next.Annotations == nil {
			next.Annotations = map[string]string{}
		}
		if cur > 0 {
			hist := next.Annotations[revisionHistoryAnnotation]
			if hist != "" {
				hist += ","
			}
			next.Annotations[revisionHistoryAnnotation] = hist + strconv.FormatInt(cur, 10)
		}
		next.Annotations[revisionAnnotation] = strconv.FormatInt(maxOld+1, 10)
		changed = true
	}
	if changed {
		out, err := c.client.AppsV1().ReplicaSets(rs.Namespace).Update(ctx, next, metav1.UpdateOptions{})
		if err != nil {
			return nil, nil, err
		}
		rs = out
	}
	if d.Annotations[revisionAnnotation] != rs.Annotations[revisionAnnotation] {
		var err error
		if d, err = c.setRevision(ctx, d, revision(rs)); err != nil {
			return nil, nil, err
		}
	}
	return d, rs, nil
}

// createNewRS creates the ReplicaSet of d's current template and records its revision
// on d, which it returns as stored.
func (c *Deployment) createNewRS(ctx context.Context, d *appsv1.Deployment, old []*appsv1.ReplicaSet) (*appsv1.Deployment, *appsv1.ReplicaSet, error) {
	collisions := ptr.Deref(d.Status.CollisionCount, 0)
	hash := templateHash(&d.Spec.Template, collisions)
	tmpl := d.Spec.Template.DeepCopy()
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels[hashLabel] = hash
	sel := d.Spec.Selector.DeepCopy()
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[hashLabel] = hash
	next := int64(0)
	for _, rs := range old {
		next = max(next, revision(rs))
	}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-" + hash, Labels: maps.Clone(tmpl.Labels),
			Annotations: map[string]string{revisionAnnotation: strconv.FormatInt(next+1, 10),
				desiredAnnotation: strconv.Itoa(int(replicasOf(d))), maxAnnotation: strconv.Itoa(int(replicasOf(d) + surge(d)))},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, deployKind)}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](0), MinReadySeconds: d.Spec.MinReadySeconds, Selector: sel, Template: *tmpl},
	}
	copyAnnotations(d, rs)
	sets := c.client.AppsV1().ReplicaSets(d.Namespace)
	out, err := sets.Create(ctx, rs, metav1.CreateOptions{})
	switch {
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return nil, nil, fmt.Errorf("namespace %s terminating: %w", d.Namespace, ErrRequeue)
	case apierrors.IsAlreadyExists(err):
		// Ours, made a moment ago and not in the cache yet; else a name taken by a
		// ReplicaSet with another template: bump collisionCount and try another name.
		cur, getErr := sets.Get(ctx, rs.Name, metav1.GetOptions{})
		if getErr != nil {
			return nil, nil, getErr
		}
		if ref := metav1.GetControllerOf(cur); ref != nil && ref.UID == d.UID && sameTemplate(&cur.Spec.Template, &d.Spec.Template) {
			return nil, nil, fmt.Errorf("replicaset %s not in the cache yet: %w", rs.Name, ErrRequeue)
		}
		bumped := d.DeepCopy()
		bumped.Status.CollisionCount = ptr.To(collisions + 1)
		if _, err = c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, bumped, metav1.UpdateOptions{}); err == nil {
			err = fmt.Errorf("replicaset name %s taken: %w", rs.Name, ErrRequeue)
		}
		return nil, nil, err
	case err != nil:
		return nil, nil, err
	}
	d, err = c.setRevision(ctx, d, next+1)
	return d, out, err
}

func (c *Deployment) setRevision(ctx context.Context, d *appsv1.Deployment, rev int64) (*appsv1.Deployment, error) {
	d = d.DeepCopy()
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	d.Annotations[revisionAnnotation] = strconv.FormatInt(rev, 10)
	return c.client.AppsV1().Deployments(d.Namespace).Update(ctx, d, metav1.UpdateOptions{})
}

func replicasOf(d *appsv1.Deployment) int32 { return ptr.Deref(d.Spec.Replicas, 1) }

// surge and unavailable resolve maxSurge/maxUnavailable as Kubernetes does: surge
// rounds up, unavailable down, and they are never both zero.
func surge(d *appsv1.Deployment) int32 {
	s, _ := resolveFenceposts(d)
	return s
}

func resolveFenceposts(d *appsv1.Deployment) (int32, int32) {
	ru := d.Spec.Strategy.RollingUpdate
	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil {
		return 0, 0
	}
	n := int(replicasOf(d))
	s, _ := intstr.GetScaledValueFromIntOrPercent(ptr.To(ptr.Deref(ru.MaxSurge, intstr.FromString("25%"))), n, true)
	u, _ := intstr.GetScaledValueFromIntOrPercent(ptr.To(ptr.Deref(ru.MaxUnavailable, intstr.FromString("25%"))), n, false)
	if s == 0 && u == 0 {
		u = 1
	}
	return int32(s), int32(u)
}

func (c *Deployment) scaleRS(ctx context.Context, rs *appsv1.ReplicaSet, n int32, d *appsv1.Deployment) error {
	from := ptr.Deref(rs.Spec.Replicas, 1)
	if from == n && rs.Annotations[desiredAnnotation] == strconv.Itoa(int(replicasOf(d))) {
		return nil
	}
	next := rs.DeepCopy()
	next.Spec.Replicas = ptr.To(n)
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	next.Annotations[desiredAnnotation] = strconv.Itoa(int(replicasOf(d)))
	next.Annotations[maxAnnotation] = strconv.Itoa(int(replicasOf(d) + surge(d)))
	out, err := c.client.AppsV1().ReplicaSets(rs.Namespace).Update(ctx, next, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	*rs = *out
	if from != n {
		c.rec.Eventf(d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled %s replica set %s from %d to %d",
			map[bool]string{true: "up", false: "down"}[n > from], rs.Name, from, n)
	}
	return nil
}

// scaleProportionally is Kubernetes' answer to a deployment resized in the middle of a
// rolling update (its scale): with more than one ReplicaSet holding pods and any of them
// sized for another replica count, the difference is shared out in proportion to their
// sizes (against the max-replicas each was sized for), the largest taking what
// rounding leaves. It reports whether it acted; rollout goes on otherwise.
func (c *Deployment) scaleProportionally(ctx context.Context, d *appsv1.Deployment, newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) (bool, error) {
	want := replicasOf(d)
	var active []*appsv1.ReplicaSet
	scaling := false
	for _, rs := range append([]*appsv1.ReplicaSet{newRS}, old...) {
		if ptr.Deref(rs.Spec.Replicas, 0) > 0 {
			active = append(active, rs)
			if desired, err := strconv.Atoi(rs.Annotations[desiredAnnotation]); err == nil && int32(desired) != want {
				scaling = true
			}
		}
	}
	if len(active) <= 1 || !scaling || d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		return false, nil
	}
	allowed := want + surge(d)
	total := int32(0)
	for _, rs := range active {
		total += ptr.Deref(rs.Spec.Replicas, 0)
	}
	toAdd := allowed - total
	// Largest first, newer first among equals when growing, older when shrinking.
	sort.SliceStable(active, func(i, j int) bool {
		a, b := ptr.Deref(active[i].Spec.Replicas, 0), ptr.Deref(active[j].Spec.Replicas, 0)
		if a != b {
			return a > b
		}
		if toAdd > 0 {
			return active[j].CreationTimestamp.Before(&active[i].CreationTimestamp)
		}
		return active[i].CreationTimestamp.Before(&active[j].CreationTimestamp)
	})
	sizes := make([]int32, len(active))
	added := int32(0)
	for i, rs := range active {
		cur := ptr.Deref(rs.Spec.Replicas, 0)
		sizes[i] = cur
		if toAdd == 0 || toAdd == added {
			continue
		}
		// The share: this ReplicaSet's size scaled from the max-replicas it was sized for.
		before, err := strconv.Atoi(rs.Annotations[maxAnnotation])
		if err != nil || before == 0 {
			before = int(d.Status.Replicas)
		}
		share := -cur
		if want > 0 && before > 0 {
			share = int32(math.Round(float64(cur)*float64(allowed)/float64(before))) - cur
		}
		if toAdd > 0 {
			share = min(share, toAdd-added)
		} else {
			share = max(share, toAdd-added)
		}
		sizes[i] += share
		added += share
	}
	sizes[0] = max(0, sizes[0]+toAdd-added)
	for i, rs := range active {
		if err := c.scaleRS(ctx, rs, sizes[i], d); err != nil {
			return true, err
		}
	}
	return true, nil
}

// rollout moves replicas from the old ReplicaSets to the new one within the strategy's bounds.
func (c *Deployment) rollout(ctx context.Context, d *appsv1.Deployment, newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) error {
	want := replicasOf(d)
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		running := int32(0)
		for _, rs := range old {
			if err := c.scaleRS(ctx, rs, 0, d); err != nil {
				return err
			}
			running += rs.Status.Replicas
		}
		if running > 0 {
			return nil // the new pods start once every old pod is gone
		}
		return c.scaleRS(ctx, newRS, want, d)
	}
	maxSurge, maxUnavailable := resolveFenceposts(d)
	total := ptr.Deref(newRS.Spec.Replicas, 0)
	for _, rs := range old {
		total += ptr.Deref(rs.Spec.Replicas, 0)
	}
	// Scale the new ReplicaSet up as far as the surge allows (or down on a scale-down).
	target := min(want, ptr.Deref(newRS.Spec.Replicas, 0)+max(0, want+maxSurge-total))
	if len(old) == 0 || ptr.Deref(newRS.Spec.Replicas, 0) > want {
		target = want
	}
	if err := c.scaleRS(ctx, newRS, target, d); err != nil {
		return err
	}
	// Scale old ReplicaSets down while enough pods stay available, as Kubernetes'
	// reconcileOldReplicaSets: never past what the sizes (not the possibly stale
	// statuses) allow, their unavailable pods first (they serve nothing), then as far
	// as maxUnavailable allows.
	minAvailable := want - maxUnavailable
	newUnavailable := ptr.Deref(newRS.Spec.Replicas, 0) - newRS.Status.AvailableReplicas
	maxScaledDown := ptr.Deref(newRS.Spec.Replicas, 0) - minAvailable - newUnavailable
	for _, rs := range old {
		maxScaledDown += ptr.Deref(rs.Spec.Replicas, 0)
	}
	if maxScaledDown <= 0 {
		return nil
	}
	available := newRS.Status.AvailableReplicas
	for _, rs := range old {
		available += rs.Status.AvailableReplicas
	}
	budget := available - minAvailable
	for _, rs := range old {
		cur := ptr.Deref(rs.Spec.Replicas, 0)
		unhealthy := min(max(0, cur-rs.Status.AvailableReplicas), maxScaledDown)
		maxScaledDown -= unhealthy
		down := min(cur, unhealthy+max(0, budget))
		budget -= max(0, down-unhealthy)
		if down > 0 {
			if err := c.scaleRS(ctx, rs, cur-down, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// cleanup deletes the oldest empty ReplicaSets beyond revisionHistoryLimit.
func (c *Deployment) cleanup(ctx context.Context, d *appsv1.Deployment, old []*appsv1.ReplicaSet) error {
	limit := int(ptr.Deref(d.Spec.RevisionHistoryLimit, 10))
	var empty []*appsv1.ReplicaSet
	for _, rs := range old {
		if ptr.Deref(rs.Spec.Replicas, 0) == 0 && rs.Status.Replicas == 0 && rs.DeletionTimestamp == nil {
			empty = append(empty, rs)
		}
	}
	for i := 0; i < len(empty)-limit; i++ {
		err := c.client.AppsV1().ReplicaSets(d.Namespace).Delete(ctx, empty[i].Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

func (c *Deployment) updateStatus(ctx context.Context, d *appsv1.Deployment, newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet, progress *appsv1.DeploymentCondition) error {
	st := appsv1.DeploymentStatus{ObservedGeneration: d.Generation, CollisionCount: d.Status.CollisionCount}
	for _, rs := range append([]*appsv1.ReplicaSet{newRS}, old...) {
		if rs == nil {
			continue
		}
		st.Replicas += rs.Status.Replicas
		st.ReadyReplicas += rs.Status.ReadyReplicas
		st.AvailableReplicas += rs.Status.AvailableReplicas
	}
	if newRS != nil {
		st.UpdatedReplicas = newRS.Status.Replicas
	}
	st.UnavailableReplicas = max(0, replicasOf(d)-st.AvailableReplicas)
	_, maxUnavailable := resolveFenceposts(d)
	now := metav1.NewTime(c.now().Truncate(time.Second))
	available := st.AvailableReplicas >= replicasOf(d)-maxUnavailable
	st.Conditions = setCondition(d.Status.Conditions, appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable,
		Status: condStatus(available), Reason: map[bool]string{true: "MinimumReplicasAvailable", false: "MinimumReplicasUnavailable"}[available],
		Message: map[bool]string{true: "Deployment has minimum availability.", false: "Deployment does not have minimum availability."}[available]}, now)
	if progress != nil {
		progress.Type, progress.Status = appsv1.DeploymentProgressing, corev1.ConditionTrue
		st.Conditions = setCondition(st.Conditions, *progress, now)
	}
	requeue := c.progressing(d, &st, newRS, now)
	if !apiequality.Semantic.DeepEqual(st, d.Status) {
		next := d.DeepCopy()
		next.Status = st
		_, err := c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	if requeue > 0 {
		c.loop.EnqueueAfter(d.Namespace+"/"+d.Name, requeue)
	}
	return nil
}

// progressing sets the Progressing condition as kube-controller-manager does: true and
// its lastUpdateTime renewed while the rollout makes progress, NewReplicaSetAvailable
// once complete, false with ProgressDeadlineExceeded when progressDeadlineSeconds pass
// without progress. It returns when to look again for a deadline (0: no need).
func (c *Deployment) progressing(d *appsv1.Deployment, st *appsv1.DeploymentStatus, newRS *appsv1.ReplicaSet, now metav1.Time) time.Duration {
	deadline := ptr.Deref(d.Spec.ProgressDeadlineSeconds, 600) // the API's default
	cur := findCondition(st.Conditions, appsv1.DeploymentProgressing)
	if deadline == math.MaxInt32 || (st.Replicas == st.UpdatedReplicas && cur != nil && cur.Reason == "NewReplicaSetAvailable") {
		return 0
	}
	subject := fmt.Sprintf("Deployment %q", d.Name)
	if newRS != nil {
		subject = fmt.Sprintf("ReplicaSet %q", newRS.Name)
	}
	n := replicasOf(d)
	oldBefore, oldNow := d.Status.Replicas-d.Status.UpdatedReplicas, st.Replicas-st.UpdatedReplicas
	switch {
	case st.UpdatedReplicas == n && st.Replicas == n && st.AvailableReplicas == n && st.ObservedGeneration >= d.Generation:
		st.Conditions = setCondition(st.Conditions, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue,
			Reason: "NewReplicaSetAvailable", Message: subject + " has successfully progressed."}, now)
		return 0
	case st.UpdatedReplicas > d.Status.UpdatedReplicas || oldNow < oldBefore || st.ReadyReplicas > d.Status.ReadyReplicas || st.AvailableReplicas > d.Status.AvailableReplicas:
		cond := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "ReplicaSetUpdated",
			Message: subject + " is progressing.", LastUpdateTime: now, LastTransitionTime: now}
		if cur != nil && cur.Status == corev1.ConditionTrue {
			cond.LastTransitionTime = cur.LastTransitionTime
		}
		st.Conditions = append(slices.DeleteFunc(st.Conditions, func(c appsv1.DeploymentCondition) bool { return c.Type == appsv1.DeploymentProgressing }), cond)
		return time.Duration(deadline)*time.Second + time.Second
	case cur == nil:
		return 0
	case cur.Reason == "ProgressDeadlineExceeded":
		return 0
	}
	left := cur.LastUpdateTime.Add(time.Duration(deadline) * time.Second).Sub(now.Time)
	if left >= 0 {
		return left + time.Second
	}
	st.Conditions = setCondition(st.Conditions, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
		Reason: "ProgressDeadlineExceeded", Message: subject + " has timed out progressing."}, now)
	return 0
}

func findCondition(conds []appsv1.DeploymentCondition, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

func condStatus(b bool) corev1.ConditionStatus {
	if b {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

// setCondition replaces the condition of c's type as kube-controller-manager does: one
// with the same status and reason stays as it is; one with the same status keeps its
// transition time.
func setCondition(conds []appsv1.DeploymentCondition, c appsv1.DeploymentCondition, now metav1.Time) []appsv1.DeploymentCondition {
	c.LastUpdateTime, c.LastTransitionTime = now, now
	out := []appsv1.DeploymentCondition{}
	for _, old := range conds {
		if old.Type != c.Type {
			out = append(out, old)
			continue
		}
		if old.Status == c.Status && old.Reason == c.Reason {
			return conds
		}
		if old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		}
	}
	return append(out, c)
}
