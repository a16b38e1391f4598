package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/store"
)

// Annotations and labels of Kubernetes' deployment controller.
const (
	revisionAnnotation = "deployment.kubernetes.io/revision"
	desiredAnnotation  = "deployment.kubernetes.io/desired-replicas"
	maxAnnotation      = "deployment.kubernetes.io/max-replicas"
	hashLabel          = appsv1.DefaultDeploymentUniqueLabelKey // pod-template-hash
)

// DeploymentConfig configures the Deployment controller.
type DeploymentConfig struct {
	API *apiserver.API
	// Events, if set, receives ScalingReplicaSet events.
	Events *Events
	Log    *slog.Logger
}

// Deployment rolls a Deployment's pod template out through ReplicaSets.
type Deployment struct {
	api   *apiserver.API
	dRes  *apiserver.Resource
	rsRes *apiserver.Resource
	loop  *Loop
	now   func() time.Time
	rec   *Recorder
}

var deployKind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}

// NewDeployment builds the controller.
func NewDeployment(cfg DeploymentConfig) (*Deployment, error) {
	if cfg.API == nil {
		return nil, errors.New("deployment controller: no API")
	}
	reg := cfg.API.Registry()
	c := &Deployment{api: cfg.API, dRes: reg.Lookup("apps", "deployments"), rsRes: reg.Lookup("apps", "replicasets"), now: time.Now,
		rec: cfg.Events.For("deployment-controller", "")}
	c.loop = NewLoop("deployment", cfg.Log, c.reconcile)
	return c, nil
}

// Run reconciles until ctx is cancelled.
func (c *Deployment) Run(ctx context.Context) error {
	return runOwner(ctx, c.api, c.loop, c.dRes, c.rsRes, "Deployment")
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

func (c *Deployment) reconcile(ctx context.Context, k string) error {
	ns, name := splitKey(k)
	obj, err := c.api.Get(c.dRes, ns, name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	d := obj.(*appsv1.Deployment)
	if d.DeletionTimestamp != nil {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil
	}
	owned, err := ownedBy(ctx, c.api, c.rsRes, d, deployKind, sel)
	if err != nil {
		return err
	}
	var newRS *appsv1.ReplicaSet
	var old []*appsv1.ReplicaSet
	for _, o := range owned {
		rs := o.(*appsv1.ReplicaSet)
		if newRS == nil && sameTemplate(&rs.Spec.Template, &d.Spec.Template) {
			newRS = rs
		} else {
			old = append(old, rs)
		}
	}
	sort.Slice(old, func(i, j int) bool { return revision(old[i]) < revision(old[j]) })
	if !d.Spec.Paused {
		if newRS == nil {
			if newRS, err = c.createNewRS(ctx, d, old); err != nil {
				return err
			}
		}
		if err := c.rollout(ctx, d, newRS, old); err != nil {
			return err
		}
		if err := c.cleanup(ctx, d, old); err != nil {
			return err
		}
	}
	return c.updateStatus(ctx, d, newRS, old)
}

func (c *Deployment) createNewRS(ctx context.Context, d *appsv1.Deployment, old []*appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
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
	labelsCopy := map[string]string{}
	for k, v := range tmpl.Labels {
		labelsCopy[k] = v
	}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-" + hash, Labels: labelsCopy,
			Annotations: map[string]string{revisionAnnotation: strconv.FormatInt(next+1, 10),
				desiredAnnotation: strconv.Itoa(int(replicasOf(d))), maxAnnotation: strconv.Itoa(int(replicasOf(d) + surge(d)))},
			OwnerReferences: []metav1.OwnerReference{*controllerRef(d, deployKind)}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](0), MinReadySeconds: d.Spec.MinReadySeconds, Selector: sel, Template: *tmpl},
	}
	out, err := c.api.Create(ctx, c.rsRes, d.Namespace, rs, false)
	if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		return nil, fmt.Errorf("namespace %s terminating: %w", d.Namespace, ErrRequeue)
	}
	if apierrors.IsAlreadyExists(err) {
		// A name taken by a ReplicaSet with another template: bump collisionCount and retry.
		_, err = c.api.Update(ctx, c.dRes, d.Namespace, d.Name, "status", func(cur store.Object) (store.Object, error) {
			cur.(*appsv1.Deployment).Status.CollisionCount = ptr.To(collisions + 1)
			return cur, nil
		}, false)
		if err == nil {
			err = fmt.Errorf("replicaset name %s taken: %w", rs.Name, ErrRequeue)
		}
	}
	if err != nil {
		return nil, err
	}
	return out.(*appsv1.ReplicaSet), c.setRevision(ctx, d, next+1)
}

func (c *Deployment) setRevision(ctx context.Context, d *appsv1.Deployment, rev int64) error {
	_, err := c.api.Update(ctx, c.dRes, d.Namespace, d.Name, "", func(cur store.Object) (store.Object, error) {
		ann := cur.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		ann[revisionAnnotation] = strconv.FormatInt(rev, 10)
		cur.SetAnnotations(ann)
		return cur, nil
	}, false)
	return err
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
	out, err := c.api.Update(ctx, c.rsRes, rs.Namespace, rs.Name, "", func(cur store.Object) (store.Object, error) {
		r := cur.(*appsv1.ReplicaSet)
		r.Spec.Replicas = ptr.To(n)
		if r.Annotations == nil {
			r.Annotations = map[string]string{}
		}
		r.Annotations[desiredAnnotation] = strconv.Itoa(int(replicasOf(d)))
		r.Annotations[maxAnnotation] = strconv.Itoa(int(replicasOf(d) + surge(d)))
		return r, nil
	}, false)
	if err == nil {
		*rs = *out.(*appsv1.ReplicaSet)
		if from != n {
			c.rec.Event(d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled %s replica set %s from %d to %d",
				map[bool]string{true: "up", false: "down"}[n > from], rs.Name, from, n)
		}
	}
	return err
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
	// Scale old ReplicaSets down while enough pods stay available: their unavailable
	// pods first (they serve nothing), then as far as maxUnavailable allows.
	available := newRS.Status.AvailableReplicas
	for _, rs := range old {
		available += rs.Status.AvailableReplicas
	}
	budget := available - (want - maxUnavailable)
	for _, rs := range old {
		cur := ptr.Deref(rs.Spec.Replicas, 0)
		if cur == 0 {
			continue
		}
		unhealthy := max(0, cur-rs.Status.AvailableReplicas)
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
		if _, _, err := c.api.Delete(ctx, c.rsRes, d.Namespace, empty[i].Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

func (c *Deployment) updateStatus(ctx context.Context, d *appsv1.Deployment, newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) error {
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
	complete := newRS != nil && st.UpdatedReplicas == replicasOf(d) && st.Replicas == replicasOf(d) && st.AvailableReplicas == replicasOf(d)
	progressing := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "ReplicaSetUpdated"}
	if newRS != nil {
		progressing.Message = fmt.Sprintf("ReplicaSet %q is progressing.", newRS.Name)
		if complete {
			progressing.Reason, progressing.Message = "NewReplicaSetAvailable", fmt.Sprintf("ReplicaSet %q has successfully progressed.", newRS.Name)
		}
	}
	st.Conditions = setCondition(st.Conditions, progressing, now)
	if apiequality.Semantic.DeepEqual(st, d.Status) {
		return nil
	}
	_, err := c.api.Update(ctx, c.dRes, d.Namespace, d.Name, "status", func(cur store.Object) (store.Object, error) {
		cur.(*appsv1.Deployment).Status = st
		return cur, nil
	}, false)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func condStatus(b bool) corev1.ConditionStatus {
	if b {
		return corev1.ConditionTrue
	}
	return corev1.ConditionFalse
}

// setCondition replaces the condition of c's type, keeping its transition time when the
// status did not change (and lastUpdateTime when nothing did).
func setCondition(conds []appsv1.DeploymentCondition, c appsv1.DeploymentCondition, now metav1.Time) []appsv1.DeploymentCondition {
	c.LastUpdateTime, c.LastTransitionTime = now, now
	out := []appsv1.DeploymentCondition{}
	for _, old := range conds {
		if old.Type != c.Type {
			out = append(out, old)
			continue
		}
		if old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
			if old.Reason == c.Reason && old.Message == c.Message {
				c.LastUpdateTime = old.LastUpdateTime
			}
		}
	}
	return append(out, c)
}
