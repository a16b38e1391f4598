package controllers

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/utils/ptr"
)

// A StatefulSet's history is kept as kube-controller-manager keeps it (its history
// package and the statefulset controller's getStatefulSetRevisions): one
// ControllerRevision per distinct pod template, named <set>-<hash of its data>, owned
// by the set, its data the strategic merge patch that puts the template back on the
// set, its revision number one above the newest when the template changes (or when
// it goes back to an older one, which is renumbered rather than made again).

// stsRevision is a revision of a set's pod template, named as status.currentRevision
// and status.updateRevision name them.
type stsRevision struct {
	Name     string
	Template *corev1.PodTemplateSpec
}

// listRevisions is the set's history, oldest first: the revisions it controls that
// match its selector, orphans that match adopted, those that no longer match released.
func (c *StatefulSet) listRevisions(ctx context.Context, set *appsv1.StatefulSet) ([]*appsv1.ControllerRevision, error) {
	sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	if err != nil {
		return nil, nil // invalid selectors never pass validation
	}
	all, err := c.revs.ControllerRevisions(set.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	revs := c.client.AppsV1().ControllerRevisions(set.Namespace)
	owned, err := claim(set, sel, all, func(r *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
			"ownerReferences": []metav1.OwnerReference{*metav1.NewControllerRef(set, stsKind)}, "uid": r.UID}})
		if err != nil {
			return nil, err
		}
		return revs.Patch(ctx, r.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	}, func(r *appsv1.ControllerRevision) error {
		_, err := revs.Patch(ctx, r.Name, types.StrategicMergePatchType, releasePatch(set, r.UID), metav1.PatchOptions{})
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(owned, compareRevisions)
	return owned, nil
}

// compareRevisions orders by revision number, then creation, then name.
func compareRevisions(a, b *appsv1.ControllerRevision) int {
	return cmp.Or(cmp.Compare(a.Revision, b.Revision),
		a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Name, b.Name))
}

// revisionData is what newRevision stores: spec.template as a strategic merge patch
// that replaces the set's template whole.
func revisionData(set *appsv1.StatefulSet) ([]byte, error) {
	raw, err := json.Marshal(set.Spec.Template)
	if err != nil {
		return nil, err
	}
	var tmpl map[string]any
	if err := json.Unmarshal(raw, &tmpl); err != nil {
		return nil, err
	}
	tmpl["$patch"] = "replace"
	return json.Marshal(map[string]any{"spec": map[string]any{"template": tmpl}})
}

// revisionHash is the history package's HashControllerRevision: FNV-32 of the data and
// the collision count, safely encoded.
func revisionHash(data []byte, collisions int32) string {
	h := fnv.New32()
	h.Write(data)
	h.Write([]byte(strconv.FormatInt(int64(collisions), 10)))
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// newRevision is the revision of set's template, numbered revision, as newRevision
// makes it: the template's labels and the set's annotations.
func newRevision(set *appsv1.StatefulSet, revision int64, collisions int32) (*appsv1.ControllerRevision, error) {
	data, err := revisionData(set)
	if err != nil {
		return nil, fmt.Errorf("encode the template of %s/%s: %w", set.Namespace, set.Name, err)
	}
	hash := revisionHash(data, collisions)
	lbls := maps.Clone(set.Spec.Template.Labels)
	if lbls == nil {
		lbls = map[string]string{}
	}
	lbls[appsv1.ControllerRevisionHashLabelKey] = hash
	return &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: revisionName(set, hash), Namespace: set.Namespace,
		Labels: lbls, Annotations: maps.Clone(set.Annotations), OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set, stsKind)}},
		Data: runtime.RawExtension{Raw: data}, Revision: revision}, nil
}

// revisionName is <set>-<hash>, the set's name cut so that the whole is a valid name.
func revisionName(set *appsv1.StatefulSet, hash string) string {
	prefix := set.Name
	if len(prefix) > 223 {
		prefix = prefix[:223]
	}
	return prefix + "-" + hash
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
	next := int64(1)
	if len(revs) > 0 {
		next = revs[len(revs)-1].Revision + 1
	}
	want, err := newRevision(set, next, collisions)
	if err != nil {
		return current, update, collisions, err
	}
	i := lastIndexFunc(revs, func(r *appsv1.ControllerRevision) bool { return bytes.Equal(r.Data.Raw, want.Data.Raw) })
	var up *appsv1.ControllerRevision
	switch {
	case i == len(revs)-1 && i >= 0:
		up = revs[i]
	case i >= 0:
		up, err = c.renumberRevision(ctx, revs[i], next)
	default:
		up, err = c.createRevision(ctx, set, want, &collisions)
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

// createRevision makes rev (CreateControllerRevision). A revision of that name that
// exists already is the one wanted when it holds the same data (the cache had not seen
// it yet); when it holds other data, the names collided, and the next collision count
// gives another.
func (c *StatefulSet) createRevision(ctx context.Context, set *appsv1.StatefulSet, rev *appsv1.ControllerRevision, collisions *int32) (*appsv1.ControllerRevision, error) {
	revs := c.client.AppsV1().ControllerRevisions(set.Namespace)
	for {
		rev = rev.DeepCopy()
		hash := revisionHash(rev.Data.Raw, *collisions)
		rev.Name, rev.Labels[appsv1.ControllerRevisionHashLabelKey] = revisionName(set, hash), hash
		created, err := revs.Create(ctx, rev, metav1.CreateOptions{})
		if !apierrors.IsAlreadyExists(err) {
			if err != nil {
				return nil, fmt.Errorf("create revision %s: %w", rev.Name, err)
			}
			return created, nil
		}
		exists, err := revs.Get(ctx, rev.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get revision %s: %w", rev.Name, err)
		}
		if bytes.Equal(exists.Data.Raw, rev.Data.Raw) {
			return exists, nil
		}
		*collisions++
	}
}

// renumberRevision makes an older revision the newest, for a set whose template went
// back to it (UpdateControllerRevision).
func (c *StatefulSet) renumberRevision(ctx context.Context, rev *appsv1.ControllerRevision, revision int64) (*appsv1.ControllerRevision, error) {
	if rev.Revision == revision {
		return rev, nil
	}
	next := rev.DeepCopy()
	next.Revision = revision
	out, err := c.client.AppsV1().ControllerRevisions(rev.Namespace).Update(ctx, next, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("renumber revision %s: %w", rev.Name, err)
	}
	return out, nil
}

// truncateHistory deletes the oldest revisions beyond spec.revisionHistoryLimit that
// neither the status nor a pod names (truncateHistory).
func (c *StatefulSet) truncateHistory(ctx context.Context, set *appsv1.StatefulSet, pods []*corev1.Pod, revs []*appsv1.ControllerRevision, current, update string) error {
	live := map[string]bool{current: true, update: true}
	for _, p := range pods {
		live[p.Labels[appsv1.ControllerRevisionHashLabelKey]] = true
	}
	old := slices.DeleteFunc(slices.Clone(revs), func(r *appsv1.ControllerRevision) bool { return live[r.Name] })
	limit := int(ptr.Deref(set.Spec.RevisionHistoryLimit, 10))
	if limit < 0 || len(old) <= limit {
		return nil
	}
	for _, r := range old[:len(old)-limit] {
		err := c.client.AppsV1().ControllerRevisions(r.Namespace).Delete(ctx, r.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(r.UID))})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete revision %s: %w", r.Name, err)
		}
	}
	return nil
}
