package controllers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/utils/ptr"
)

// A StatefulSet keeps its history as kube-controller-manager's statefulset controller
// does (getStatefulSetRevisions, truncateHistory), in ControllerRevisions kept by the
// shared revisionHistory (history.go).

// stsRevision is a revision of a set's pod template, named as status.currentRevision
// and status.updateRevision name them.
type stsRevision struct {
	Name     string
	Template *corev1.PodTemplateSpec
}

func stsOwner(set *appsv1.StatefulSet) revisionOwner {
	return revisionOwner{obj: set, kind: stsKind, selector: set.Spec.Selector, template: &set.Spec.Template}
}

// applyRevision is the template rev restores on set (ApplyRevision).
func applyRevision(set *appsv1.StatefulSet, rev *appsv1.ControllerRevision) (*corev1.PodTemplateSpec, error) {
	cur, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	patched, err := strategicpatch.StrategicMergePatch(cur, rev.Data.Raw, &appsv1.StatefulSet{})
	if err != nil {
		return nil, fmt.Errorf("apply revision %s: %w", rev.Name, err)
	}
	var restored appsv1.StatefulSet
	if err := json.Unmarshal(patched, &restored); err != nil {
		return nil, fmt.Errorf("apply revision %s: %w", rev.Name, err)
	}
	return &restored.Spec.Template, nil
}

// stsRevisions are set's current and update revisions (getStatefulSetRevisions), with
// the collision count to record in its status. The update revision is the newest one
// when it holds spec.template, an older one that does renumbered as the newest, else a
// new one; the current one is status.currentRevision's, the update one when the set
// has none yet or it is gone.
func (c *StatefulSet) stsRevisions(ctx context.Context, set *appsv1.StatefulSet, revs []*appsv1.ControllerRevision) (current, update stsRevision, collisions int32, err error) {
	collisions = ptr.Deref(set.Status.CollisionCount, 0)
	next := nextRevision(revs)
	want, err := newRevision(stsOwner(set), next, collisions)
	if err != nil {
		return current, update, collisions, err
	}
	i := lastIndexFunc(revs, func(r *appsv1.ControllerRevision) bool { return bytes.Equal(r.Data.Raw, want.Data.Raw) })
	var up *appsv1.ControllerRevision
	switch {
	case i == len(revs)-1 && i >= 0:
		up = revs[i]
	case i >= 0:
		up, err = c.history.renumber(ctx, revs[i], next)
	default:
		up, err = c.history.create(ctx, stsOwner(set), want, &collisions)
	}
	if err != nil {
		return current, update, collisions, err
	}
	update = stsRevision{Name: up.Name, Template: &set.Spec.Template}
	cur := slices.IndexFunc(revs, func(r *appsv1.ControllerRevision) bool { return r.Name == set.Status.CurrentRevision })
	if cur < 0 || revs[cur].Name == up.Name {
		return update, update, collisions, nil
	}
	tmpl, err := applyRevision(set, revs[cur])
	if err != nil {
		return current, update, collisions, err
	}
	return stsRevision{Name: revs[cur].Name, Template: tmpl}, update, collisions, nil
}

func lastIndexFunc[T any](s []T, f func(T) bool) int {
	for i := len(s) - 1; i >= 0; i-- {
		if f(s[i]) {
			return i
		}
	}
	return -1
}

// truncateHistory deletes the oldest revisions beyond spec.revisionHistoryLimit of
// those that neither the status nor a pod names (truncateHistory).
func (c *StatefulSet) truncateHistory(ctx context.Context, set *appsv1.StatefulSet, pods []*corev1.Pod, revs []*appsv1.ControllerRevision, current, update string) error {
	live := map[string]bool{current: true, update: true}
	for _, p := range pods {
		live[p.Labels[appsv1.ControllerRevisionHashLabelKey]] = true
	}
	old := slices.DeleteFunc(slices.Clone(revs), func(r *appsv1.ControllerRevision) bool { return live[r.Name] })
	return c.history.prune(ctx, old, int(ptr.Deref(set.Spec.RevisionHistoryLimit, 10)), nil)
}
