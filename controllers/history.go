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
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
)

// A workload's history is kept as kube-controller-manager keeps it (its history
// package, shared by the statefulset and daemon set controllers): one
// ControllerRevision per distinct pod template, named <owner>-<hash of its data>,
// labelled with that hash, owned by the workload, its data the strategic merge patch
// that puts the template back on the workload, its revision number one above the
// newest when the template changes (or when it goes back to an older one, which is
// renumbered rather than made again).

// revisionHistory reads and writes the ControllerRevisions of workloads.
type revisionHistory struct {
	client kubernetes.Interface
	revs   appslisters.ControllerRevisionLister
}

// revisionOwner is the workload a history belongs to.
type revisionOwner struct {
	obj      metav1.Object
	kind     schema.GroupVersionKind
	selector *metav1.LabelSelector
	template *corev1.PodTemplateSpec
}

// list is the owner's history, oldest first: the revisions it controls that match
// its selector, orphans that match adopted, those that no longer match released.
func (h revisionHistory) list(ctx context.Context, o revisionOwner) ([]*appsv1.ControllerRevision, error) {
	sel, err := metav1.LabelSelectorAsSelector(o.selector)
	if err != nil {
		return nil, nil // invalid selectors never pass validation
	}
	ns := o.obj.GetNamespace()
	all, err := h.revs.ControllerRevisions(ns).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	revs := h.client.AppsV1().ControllerRevisions(ns)
	owned, err := claim(o.obj, sel, all, func(r *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
			"ownerReferences": []metav1.OwnerReference{*metav1.NewControllerRef(o.obj, o.kind)}, "uid": r.UID}})
		if err != nil {
			return nil, err
		}
		return revs.Patch(ctx, r.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	}, func(r *appsv1.ControllerRevision) error {
		_, err := revs.Patch(ctx, r.Name, types.StrategicMergePatchType, releasePatch(o.obj, r.UID), metav1.PatchOptions{})
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

// revisionData is what a revision stores (the daemon controller's getPatch): the
// template as a strategic merge patch that replaces the workload's template whole.
func revisionData(t *corev1.PodTemplateSpec) ([]byte, error) {
	raw, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	var tmpl map[string]any
	if err := json.Unmarshal(raw, &tmpl); err != nil {
		return nil, err
	}
	tmpl["$patch"] = "replace"
	// Kubernetes 1.32's types write an unset creationTimestamp as null, and clients
	// compare revisions byte for byte (the daemon package's Match); ours omit it.
	if md, ok := tmpl["metadata"].(map[string]any); ok {
		if _, set := md["creationTimestamp"]; !set {
			md["creationTimestamp"] = nil
		}
	} else {
		tmpl["metadata"] = map[string]any{"creationTimestamp": nil}
	}
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

// newRevision is the revision of the owner's template, numbered revision, as the
// history package makes it: the template's labels and the owner's annotations.
func newRevision(o revisionOwner, revision int64, collisions int32) (*appsv1.ControllerRevision, error) {
	data, err := revisionData(o.template)
	if err != nil {
		return nil, fmt.Errorf("encode the template of %s/%s: %w", o.obj.GetNamespace(), o.obj.GetName(), err)
	}
	hash := revisionHash(data, collisions)
	lbls := maps.Clone(o.template.Labels)
	if lbls == nil {
		lbls = map[string]string{}
	}
	lbls[appsv1.ControllerRevisionHashLabelKey] = hash
	return &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: revisionName(o.obj.GetName(), hash), Namespace: o.obj.GetNamespace(),
		Labels: lbls, Annotations: maps.Clone(o.obj.GetAnnotations()), OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(o.obj, o.kind)}},
		Data: runtime.RawExtension{Raw: data}, Revision: revision}, nil
}

// revisionName is <owner>-<hash>, the owner's name cut so that the whole is a valid name.
func revisionName(owner, hash string) string {
	if len(owner) > 223 {
		owner = owner[:223]
	}
	return owner + "-" + hash
}

// nextRevision is the number a new newest revision gets: one above those of revs.
func nextRevision(revs []*appsv1.ControllerRevision) int64 {
	next := int64(1)
	for _, r := range revs {
		next = max(next, r.Revision+1)
	}
	return next
}

// create makes rev (CreateControllerRevision). A revision of that name that exists
// already is the one wanted when it holds the same data (the cache had not seen it
// yet); when it holds other data, the names collided, and the next collision count
// gives another.
func (h revisionHistory) create(ctx context.Context, o revisionOwner, rev *appsv1.ControllerRevision, collisions *int32) (*appsv1.ControllerRevision, error) {
	revs := h.client.AppsV1().ControllerRevisions(o.obj.GetNamespace())
	for {
		rev = rev.DeepCopy()
		hash := revisionHash(rev.Data.Raw, *collisions)
		rev.Name, rev.Labels[appsv1.ControllerRevisionHashLabelKey] = revisionName(o.obj.GetName(), hash), hash
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

// renumber makes an older revision the newest, numbered revision, for a workload whose
// template went back to it (UpdateControllerRevision).
func (h revisionHistory) renumber(ctx context.Context, rev *appsv1.ControllerRevision, revision int64) (*appsv1.ControllerRevision, error) {
	if rev.Revision >= revision {
		return rev, nil
	}
	next := rev.DeepCopy()
	next.Revision = revision
	out, err := h.client.AppsV1().ControllerRevisions(rev.Namespace).Update(ctx, next, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("renumber revision %s: %w", rev.Name, err)
	}
	return out, nil
}

// prune deletes the oldest of old (oldest first) that live does not hold until no more
// than keep of old remain, or only live ones are left beyond keep. A negative keep
// (which validation refuses) keeps everything.
func (h revisionHistory) prune(ctx context.Context, old []*appsv1.ControllerRevision, keep int, live func(*appsv1.ControllerRevision) bool) error {
	excess := len(old) - keep
	for _, r := range old {
		if keep < 0 || excess <= 0 {
			return nil
		}
		if live != nil && live(r) {
			continue
		}
		err := h.client.AppsV1().ControllerRevisions(r.Namespace).Delete(ctx, r.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(r.UID))})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete revision %s: %w", r.Name, err)
		}
		excess--
	}
	return nil
}
